"""The `diagnostician` command: demo, consult, chat, parse, bench, pack, serve, keys, mcp."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from diagnostician import __version__
from diagnostician.errors import DiagnosticianError, InputError, SessionError

EXIT_OK, EXIT_INPUT, EXIT_IO = 0, 2, 3
CASES_DIR = Path(__file__).resolve().parents[1] / "cases"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as for every other input error
        self.exit(EXIT_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def _console(stderr: bool = False):  # rich is imported lazily so `bench` workers start fast
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


# ---------------------------------------------------------------- rendering


def _differential_table(assessment: Any, top: int = 10):
    from rich.table import Table

    t = Table(title="Differential (decision support, not a diagnosis)", show_lines=False)
    t.add_column("#", justify="right")
    t.add_column("condition")
    t.add_column("ICD-10")
    t.add_column("probability", justify="right")
    t.add_column("role")
    t.add_column("urgency if this is it")
    for i, e in enumerate(assessment.differential[:top], 1):
        prob = f"{e.posterior:.1%}" if e.posterior >= 0.001 else "<0.1%"
        role = "likely" if e.role == "likely" else "consider / rule out"
        t.add_row(str(i), e.name, e.icd10, prob, role, e.triage.replace("_", " "))
    if len(assessment.differential) > top:
        t.caption = f"{len(assessment.differential) - top} more conditions to consider in the full list (--json)"
    return t


def _print_assessment(con: Any, assessment: Any) -> None:
    con.print()
    con.print(_differential_table(assessment))
    level = assessment.triage.level
    style = {"emergency": "bold white on red", "urgent_24h": "bold red", "see_doctor": "bold yellow", "self_care": "bold green"}[level]
    con.print(f"[{style}]Triage: {level.replace('_', ' ').upper()}[/] — {assessment.triage.advice}")
    for r in assessment.triage.reasons:
        con.print(f"  because: {r}")
    if assessment.explanations:
        con.print("\n[bold]Why[/] (likelihood ratios of your answers):")
        for e in assessment.explanations[:3]:
            con.print(f"  • {e.sentence()}")
    if assessment.tests:
        from diagnostician.engine.workup import basis_of
        from diagnostician.engine.workup import suggestion_lines

        con.print("\n[bold]Tests a doctor may consider[/]:")
        for line in suggestion_lines(assessment.tests)[:5]:
            con.print(f"  • {line}")
        con.print(f"[dim]{basis_of(assessment.tests)}[/]")
    if assessment.plan is not None:
        from rich.markup import escape

        con.print(f"\n[bold]Plan[/]: {escape(assessment.plan.text)}")
        for w in assessment.plan.watch_for:
            con.print(f"  • seek care at once if: {escape(w)}")
        for w in assessment.plan.change:
            con.print(f"  • {escape(w)}")
    if assessment.stop_reason:
        con.print(f"\n[dim]Inquiry ended: {assessment.stop_reason}; {assessment.questions_asked} questions asked.[/]")
    con.print(f"\n[italic]{assessment.notice}[/]")


def _top5_line(assessment: Any) -> str:
    return " | ".join(f"{e.name} {e.posterior:.0%}" for e in assessment.differential[:5])


def _answer_words(pack: Any, code: str, value: Any) -> str:
    from diagnostician.engine.explain import answer_text
    from diagnostician.engine.posterior import Answer

    text = answer_text(pack, Answer(code, tuple(value) if isinstance(value, list) else value))
    return text.split(": ", 1)[-1]


# ---------------------------------------------------------------- case play (demo, consult --case)


def _play_case(case: Any, pack: Any, policy: Any, show: bool, con: Any) -> tuple[dict[str, Any], Any]:
    from diagnostician.consult import Consultation
    from diagnostician.dialogue.render import reason

    c = Consultation.begin(case.age, case.sex, case.complaints, pack=pack, policy=policy)
    transcript = []
    if show:
        said = "; ".join(f"{pack.finding(k).question} — {_answer_words(pack, k, v)}" for k, v in case.complaints.items())
        con.print(f"[bold]Patient[/]: {case.title or ''} age {case.age:g}, sex {case.sex}. Comes with: {said}")
        for r in c.red_flags:
            con.print(f"[bold white on red] DANGER SIGN [/] {r.advice}")
    while (q := c.next_question()) is not None:
        value = case.answer(pack, q.code)
        turn = c.answer(q.code, value)
        a = c.assessment(explain_top=0)
        step = {
            "n": c.questions_asked,
            "code": q.code,
            "question": pack.finding(q.code).question,
            "phase": q.phase,
            "reason": reason(pack, q),
            "answer": list(turn.answer.value) if isinstance(turn.answer.value, tuple) else turn.answer.value,
            "top5": [{"name": e.name, "posterior": round(e.posterior, 4)} for e in a.differential[:5]],
            "red_flags": [r.id for r in turn.new_red_flags],
        }
        transcript.append(step)
        if show:
            con.print(f"\n[bold cyan]Q{step['n']}[/] [dim]({q.phase})[/] {step['question']}")
            con.print(f"   [dim]why: {step['reason']}[/]")
            con.print(f"   [bold]A:[/] {_answer_words(pack, q.code, turn.answer.value)}")
            con.print(f"   top-5: {_top5_line(a)}")
            for r in turn.new_red_flags:
                con.print(f"   [bold white on red] DANGER SIGN [/] {r.advice}")
    final = c.assessment()
    if show:
        _print_assessment(con, final)
    return {"case": case.title, "transcript": transcript, "assessment": final.to_dict()}, c


def cmd_demo(args: argparse.Namespace) -> int:
    """Play a shipped case and show the whole consultation."""
    from diagnostician.consult.cases import load_case
    from diagnostician.knowledge.schema import load_pack

    _policy(args)
    pack = load_pack(args.pack)
    path = CASES_DIR / f"{args.case}.json"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in CASES_DIR.glob("*.json")))
        raise InputError(f"no demo case {args.case!r}; available: {names}")
    case = load_case(path, pack)
    con = _console(stderr=args.json)
    con.print(f"[bold]diagnostician {__version__}[/] — demo consultation on the {pack.name} pack {pack.version}\n")
    out, _ = _play_case(case, pack, _policy(args), show=not args.json, con=con)
    if args.json:
        print(json.dumps(out, indent=1))
    return EXIT_OK


# ---------------------------------------------------------------- interactive consult


def _atomic_save(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a crash leaves either the old or the new file, never half of one."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise InputError(f"cannot save the consultation to {path}: {exc}") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _policy(args: argparse.Namespace) -> Any:
    """The inquiry policy from --max-questions, --confidence and --no-review (validated)."""
    from diagnostician.engine import InquiryPolicy

    if not 1 <= args.max_questions <= 223:
        raise InputError("--max-questions must lie between 1 and 223")
    if not 0.5 <= args.confidence < 1.0:
        raise InputError("--confidence must lie in [0.5, 1)")
    return InquiryPolicy(max_questions=args.max_questions, confidence=args.confidence, review=not args.no_review)


def _add_policy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-questions", type=int, default=30, help="question budget (default 30)")
    parser.add_argument("--confidence", type=float, default=0.99, help="top probability that may end the diagnostic phase (default 0.99)")
    parser.add_argument("--no-review", action="store_true", help="stop after the diagnostic phase (no review questions)")


def _ask(con: Any, prompt: str) -> str | None:
    try:
        return con.input(prompt)
    except EOFError:
        return None


def _ask_valid(con: Any, prompt: str, parse: Any) -> Any:
    """Ask until parse accepts the text; None at end of input."""
    while True:
        text = _ask(con, prompt)
        if text is None:
            return None
        try:
            return parse(text)
        except InputError as exc:
            con.print(f"[yellow]{exc}[/]")


def _choose_complaint(con: Any, pack: Any) -> str | None:
    """Let the person name the main complaint: a menu of common ones, or a word to search questions."""
    from diagnostician.dialogue.intake import COMPLAINT_PROMPT, common_complaints, pick_complaint

    menu = common_complaints(pack)
    con.print(f"\n[bold]{COMPLAINT_PROMPT}[/] Pick a number, or type a word to search (e.g. 'throat').")
    while True:
        for i, code in enumerate(menu, 1):
            con.print(f"  {i:2d}. {pack.finding(code).question}")
        text = _ask(con, "> ")
        if text is None:
            return None
        try:
            pick = pick_complaint(pack, menu, text)
        except InputError as exc:
            con.print(f"[yellow]{exc}[/]")
            continue
        if pick.code is not None:
            return pick.code
        menu = list(pick.matches)
        con.print("Matching questions:")


def _prompt_answer(con: Any, pack: Any, c: Any, q: Any) -> str:
    """Ask one question until a valid answer or a command comes; return 'answered', 'undo', 'quit' or 'eof'."""
    from diagnostician.dialogue.render import answer_hint, options, reason

    f = pack.finding(q.code)
    con.print(f"\n[bold cyan]Q{c.questions_asked + 1}.[/] {f.question}")
    opts = options(f)
    if opts:
        width = max(len(lab) for _, _, lab in opts) + 6
        cols = max(1, 100 // width)
        for i in range(0, len(opts), cols):
            con.print("".join(f"{n:3d}. {lab}".ljust(width) for n, _, lab in opts[i : i + cols]))
    con.print(f"[dim]   answer: {answer_hint(f)}; or 'why', 'undo', 'quit'[/]")
    while True:
        text = _ask(con, "> ")
        if text is None:
            return "eof"
        t = text.strip().lower()
        if t in ("quit", "q", "exit"):
            return "quit"
        if t in ("undo", "u", "back"):
            return "undo"
        if t in ("why", "why?", "w"):
            con.print(f"[dim]{reason(pack, q)}[/]")
            continue
        try:
            turn = c.answer(q.code, text)
        except InputError as exc:
            con.print(f"[yellow]{exc}[/]")
            continue
        for r in turn.new_red_flags:
            con.print(f"\n[bold white on red] DANGER SIGN [/] [bold]{r.advice}[/]\n[dim]({r.basis}) The questions continue, but this advice stands.[/]")
        return "answered"


def cmd_consult(args: argparse.Namespace) -> int:
    """Run a consultation: interactively, or from a case file with --case."""
    from diagnostician.consult import Consultation
    from diagnostician.consult.cases import load_case
    from diagnostician.engine.posterior import check_age, normalise_sex
    from diagnostician.knowledge.schema import load_pack

    _policy(args)
    _check_export_paths(args)
    pack = load_pack(args.pack)
    con = _console(stderr=args.json)
    if args.case:
        case = load_case(args.case, pack)
        out, c = _play_case(case, pack, _policy(args), show=not args.json, con=con)
        if args.results:
            _enter_results(con, c, args.results)
            out["assessment"] = c.assessment().to_dict()
            if not args.json:
                _print_assessment(con, c.assessment())
        _write_exports(args, c)
        if args.json:
            print(json.dumps(out, indent=1))
        return EXIT_OK

    save = Path(args.save) if args.save else None
    policy = _policy(args)
    if args.resume:
        try:
            data = json.loads(Path(args.resume).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot resume from {args.resume}: {exc}") from exc
        c = Consultation.from_dict(data, pack)
        save = save or Path(args.resume)
        con.print(f"Resumed consultation with {len(c.state.answers)} answers.")
    else:
        con.print("[bold]diagnostician[/] — a consultation to help you decide what to do next.")
        con.print(f"[italic]{_notice()}[/]")
        age = args.age if args.age is not None else _ask_valid(con, "Age in years: ", check_age)
        sex = args.sex if args.sex is not None else _ask_valid(con, "Sex (F/M): ", normalise_sex)
        if age is None or sex is None:
            return EXIT_OK
        complaints = list(args.complaint or [])
        if not complaints:
            chosen = _choose_complaint(con, pack)
            if chosen is None:
                return EXIT_OK
            complaints = [chosen]
        c = Consultation.begin(age, sex, {code: True for code in complaints}, pack=pack, policy=policy)
        for r in c.red_flags:
            con.print(f"[bold white on red] DANGER SIGN [/] [bold]{r.advice}[/]")
    if save:
        _atomic_save(save, c.to_dict())
    while (q := c.next_question()) is not None:
        outcome = _prompt_answer(con, pack, c, q)
        if outcome in ("quit", "eof"):
            con.print("[dim]Stopped before the end of the inquiry; this is the assessment so far.[/]")
            break
        if outcome == "undo":
            try:
                undone = c.undo()
                con.print(f"[dim]Took back: {pack.finding(undone.code).question}[/]")
            except SessionError as exc:
                con.print(f"[yellow]{exc}[/]")
        if save:
            _atomic_save(save, c.to_dict())
    if args.results:
        _enter_results(con, c, args.results)
    assessment = c.assessment()
    if not args.json:
        _print_assessment(con, assessment)
    if not args.json and not args.results and sys.stdin.isatty() and assessment.tests:
        # In the clinic the results come after the questions: enter them and see the assessment move.
        while True:
            text = con.input("\nExamination or test results (e.g. 'troponin raised'; empty to finish): ").strip()
            if not text:
                break
            if _enter_results(con, c, text):
                _print_assessment(con, c.assessment())
        if save:
            _atomic_save(save, c.to_dict())
    _write_exports(args, c)
    if args.json:
        print(json.dumps({"consultation": c.to_dict(), "assessment": c.assessment().to_dict()}, indent=1))
    return EXIT_OK


def _enter_results(con: Any, c: Any, text: str) -> bool:
    """Read results in words and enter them; say what was entered and what cannot be interpreted. Whether any was."""
    from rich.markup import escape

    from diagnostician.engine.explain import answer_text

    taken = c.take_results(text)
    for t in taken.observed:
        con.print(f"[green]Examination finding entered:[/] {escape(answer_text(c.pack, t.answer))}")
    for r, _ in taken.entered:
        con.print(f"[green]Result entered:[/] {escape(r.text)} → {'positive / abnormal' if r.value else 'negative / normal'}")
    for what in taken.uninterpreted:
        con.print(f"[yellow]Recorded, cannot interpret[/] (no likelihood in the knowledge pack): {escape(what)}")
    if not taken:
        con.print("[yellow]No examination or test result recognised; name the test and its result (e.g. 'troponin raised').[/]")
    return bool(taken)


def _check_export_paths(args: argparse.Namespace) -> None:
    for path in (args.report, args.fhir):
        if path and (Path(path).is_dir() or not Path(path).resolve().parent.is_dir()):
            raise InputError(f"cannot write {path}: not a file in an existing folder")


def _write_exports(args: argparse.Namespace, c: Any) -> None:
    """Write the clinician report (.md or .html by suffix) and the FHIR bundle if asked for."""
    from diagnostician.consult.export import clinician_report_html, clinician_report_markdown, fhir_bundle

    try:
        if args.report:
            html = Path(args.report).suffix.lower() in (".html", ".htm")
            text = clinician_report_html(c) if html else clinician_report_markdown(c)
            Path(args.report).write_text(text, encoding="utf-8")
        if args.fhir:
            Path(args.fhir).write_text(json.dumps(fhir_bundle(c), indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write an export: {exc}") from exc


def _notice() -> str:
    from diagnostician.engine import NOTICE

    return NOTICE


# ---------------------------------------------------------------- bench


def cmd_bench_ddxplus(args: argparse.Namespace) -> int:
    """Run the interactive DDXPlus benchmark on one or more patient files."""
    from diagnostician.bench.ddxplus import BenchConfig, markdown, run_file, write_report

    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be at least 1")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError(f"--out {args.out} exists and is not a folder")
    _policy(args)
    if args.agent != "engine":
        return _bench_ddxplus_chat_model(args)
    config = BenchConfig(
        pack=args.pack, max_questions=args.max_questions, ceiling=not args.no_ceiling, confidence=args.confidence, review=not args.no_review
    )
    summaries = {}
    for path in args.cases:
        if not Path(path).is_file():
            raise InputError(f"case file not found: {path}")
        report = run_file(path, config, limit=args.limit, workers=args.workers, progress=not args.quiet and sys.stderr.isatty())
        summaries[Path(path).name] = {"summary": report["summary"], "held_out": report["held_out"]}
        if args.out:
            js, md = write_report(report, args.out)
            print(f"wrote {js} and {md}", file=sys.stderr)
        if not args.json:
            print(markdown(report))
    if args.json:
        print(json.dumps(summaries, indent=1))
    if args.out and len(args.cases) > 1:
        Path(args.out, "ddxplus_summary.json").write_text(json.dumps(summaries, indent=1) + "\n", encoding="utf-8")
    return EXIT_OK


def _bench_ddxplus_chat_model(args: argparse.Namespace) -> int:
    """A chat model as the doctor on DDXPlus patients: free-text questions answered from each record; GTPA@1/@5 and turns."""
    import random

    from diagnostician.bench.agents import run_llm_ddxplus
    from diagnostician.bench.ddxplus import read_cases
    from diagnostician.bench.jsonl import run_logged
    from diagnostician.bench.scoring import icd10_map, pack_synonyms, top_k_hit
    from diagnostician.cli.talk import _llm_client, progress_bar
    from diagnostician.knowledge.schema import load_pack

    if args.agent != "openai":
        raise InputError(f"--agent {args.agent}: choose engine (the default) or openai (any OpenAI-compatible chat model)")
    pack = load_pack(args.pack)
    client = _llm_client(args, "--agent openai")
    syn, icd = pack_synonyms(pack), icd10_map(pack)
    summaries = {}
    try:
        for path in args.cases:
            if not Path(path).is_file():
                raise InputError(f"case file not found: {path}")
            records = list(read_cases(pack, path, args.limit or 50))  # a chat model is slow: 50 cases unless --limit says
            out = Path(args.out) / Path(path).stem if args.out else None
            with progress_bar(args.quiet, Path(path).name, len(records)) as progress:
                rows, _ = run_logged(
                    records, lambda r: f"row{r.row}", lambda r: run_llm_ddxplus(client, pack, r, random.Random(f"0:{r.row}"), max_turns=args.max_questions or 20),
                    out, redo=lambda row: bool(row.get("error")), progress=progress, workers=args.workers or 1,
                )  # fmt: skip
            hits = [top_k_hit(r.get("differential") or [], r["diagnosis"], 5, synonyms=syn, icd10=icd) for r in rows]
            n = len(rows) or 1
            summary = {
                "cases": len(rows), "agent": f"openai:{client.config.model}",
                "gtpa@1": round(sum(bool(h[0] and h[1] == 1) for h in hits) / n, 4), "gtpa@5": round(sum(bool(h[0]) for h in hits) / n, 4),
                "turns": round(sum(r.get("turns") or 0 for r in rows) / n, 2),
                "malformed": sum(bool(r.get("malformed")) for r in rows), "errors": sum(bool(r.get("error")) for r in rows),
            }  # fmt: skip
            summaries[Path(path).name] = summary
            if out:
                from diagnostician.bench.vignettes import iter_markdown

                (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
                (out / "summary.md").write_text("\n".join(iter_markdown(summary, tuple(summary))) + "\n", encoding="utf-8")
    finally:
        client.close()
    print(json.dumps(summaries, indent=1))
    return EXIT_OK


# ---------------------------------------------------------------- pack


def cmd_pack_info(args: argparse.Namespace) -> int:
    """Describe the loaded pack."""
    from diagnostician.knowledge.schema import load_pack

    pack = load_pack(args.pack)
    info = {
        "name": pack.name,
        "version": pack.version,
        "conditions": len(pack.conditions),
        "findings": int(pack.history_mask.sum()),
        "results": int((~pack.history_mask).sum()),  # examination and test results of known accuracy (entered, never asked)
        "likelihood_columns": int(pack.p.shape[1]),
        "red_flags": len(pack.red_flags),
        "tests": len(pack.tests),
        "body_systems": dict(sorted(Counter(c.system for c in pack.conditions if c.system).items())),
        "triage_levels": dict(Counter(c.triage for c in pack.conditions)),
        "differential_model": bool(pack.differential_model),
        "review_status": pack.meta.get("review_status"),
        "license": pack.meta.get("license"),
    }
    print(json.dumps(info, indent=1))
    return EXIT_OK


def cmd_pack_build(args: argparse.Namespace) -> int:
    """Rebuild a shipped pack (ddxplus or broad) from the shared data and its curated sources."""
    out = args.out or str(Path(__file__).resolve().parents[1] / "knowledge" / "packs" / args.pack)
    if args.pack == "ddxplus":
        from diagnostician.knowledge.build_ddxplus import write

        if not Path(args.data, "ddxplus", "release_evidences.json").exists():
            raise InputError(f"{args.data} does not hold ddxplus/ and ddxplus-fr/")
        write(args.data, out)
    elif args.pack == "broad":
        from diagnostician.knowledge import build_broad

        if not Path(args.data, "symcat", "symcat_conditions_801.json").exists() or not Path(args.data, "medlineplus").is_dir():
            raise InputError(f"{args.data} does not hold symcat/ and medlineplus/")
        build_broad.write(build_broad.build(args.data, leak=args.leak), out)
    else:
        raise InputError(f"--pack {args.pack}: only ddxplus and broad are built from shared data")
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def cmd_pack_train(args: argparse.Namespace) -> int:
    """Retrain the differential model (and its fold models) from DDXPlus patients with reference differentials."""
    from diagnostician.bench.train_differential import train

    if not Path(args.cases).is_file():
        raise InputError(f"case file not found: {args.cases}")
    model, folds = train(args.out, args.cases)
    Path(args.out, "differential_model.json").write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    Path(args.out, "differential_folds.json").write_text(json.dumps(folds) + "\n", encoding="utf-8")
    best = model["cross_fitted_ddf1"][str(model["threshold"])]
    print(f"wrote {args.out}: threshold {model['threshold']}, cross-fitted DDF1 {best}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- serve


def _check_listen(host: str, port: int) -> None:
    """Refuse a non-loopback host (the MCP server has no API keys) and an impossible port."""
    from diagnostician.api.settings import is_loopback

    if not is_loopback(host):
        raise InputError(
            f"refusing to listen on {host}: the MCP server has no API keys, so it only listens on loopback "
            "(127.0.0.1, ::1 or localhost)"
        )
    _check_port(port)


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise InputError("--port must lie between 1 and 65535")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the HTTP API with uvicorn; API keys are required beyond loopback (and on loopback with --require-keys)."""
    from diagnostician.api.settings import DATABASE_URL_ENV, PACK_ENV, REQUIRE_KEYS_ENV, Settings, is_loopback
    from diagnostician.consult.store import DATA_DIR_ENV, open_store, redact_url
    from diagnostician.knowledge.schema import load_pack

    _check_port(args.port)
    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    # Worker processes read their settings from the environment (uvicorn starts them from an import string).
    if args.data_dir:
        os.environ[DATA_DIR_ENV] = str(Path(args.data_dir).expanduser().resolve())
        os.environ.pop(DATABASE_URL_ENV, None)  # an explicit --data-dir wins over a URL in the environment
    if args.pack:
        os.environ[PACK_ENV] = args.pack
    if args.require_keys or not is_loopback(args.host):
        os.environ[REQUIRE_KEYS_ENV] = "1"  # beyond loopback, keys are not optional
    settings = Settings.from_env()
    load_pack(settings.pack)
    store = open_store(settings.store_url)  # a bad folder or URL is a one-line error now, not a worker traceback
    try:
        active = [k for k in store.list_keys() if k.revoked_at is None] if settings.require_keys else []
    finally:
        store.close()
    if settings.require_keys and not active:
        where = f"listen on {args.host}" if not is_loopback(args.host) else "require API keys"
        raise InputError(f"refusing to {where} without an API key: create one with `diagnostician keys create --name CLIENT`")
    import uvicorn

    print(f"diagnostician {__version__}: serving http://{args.host}:{args.port} (docs at /docs); consultations in {redact_url(settings.store_url)}", file=sys.stderr)
    uvicorn.run(
        "diagnostician.api.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        server_header=False,
    )
    return EXIT_OK


# ---------------------------------------------------------------- database


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Migrate the consultation database (PostgreSQL, or a SQLite file) to the newest schema."""
    from diagnostician.consult.migrations import upgrade
    from diagnostician.consult.store import open_store, redact_url

    url = _store_url(args)
    if url.lower().startswith("sqlite:"):
        # SQLiteStore creates the file private (0600) with the same schema; the migration then only stamps it.
        open_store(url).close()
    _migrating(url, lambda: upgrade(url))
    if not url.lower().startswith("sqlite:"):
        open_store(url).close()  # proves the schema is now what the server expects
    print(f"{redact_url(url)}: schema at the newest revision", file=sys.stderr)
    return EXIT_OK


def _store_url(args: argparse.Namespace) -> str:
    """The database named by --url, else the SQLite file of --data-dir, else the environment's, as for `serve`."""
    from dataclasses import replace

    from diagnostician.api.settings import Settings

    settings = Settings.from_env()
    if args.data_dir:
        settings = replace(settings, data_dir=Path(args.data_dir).expanduser().resolve(), database_url=None)
    return getattr(args, "url", None) or settings.store_url


def _migrating(url: str, step: Callable[[], Any]) -> Any:
    """Run one migration step; driver, SQLAlchemy and Alembic errors become one line naming the database, never a traceback."""
    from diagnostician.consult.store import StoreError, redact_url

    try:
        return step()
    except DiagnosticianError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot migrate {redact_url(url)}: {first}") from exc


def cmd_db_current(args: argparse.Namespace) -> int:
    """Print the schema revision of the consultation database and the newest one this program ships."""
    from diagnostician.consult.migrations import current_revision, head_revision
    from diagnostician.consult.store import redact_url

    url = _store_url(args)
    current = _migrating(url, lambda: current_revision(url))
    head = head_revision()
    state = "up to date" if current == head else "needs `diagnostician db upgrade`"
    print(f"{redact_url(url)}: revision {current or 'none'}, newest {head} ({state})")
    return EXIT_OK


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    """Migrate a PostgreSQL consultation database back to an older schema revision."""
    from diagnostician.consult.migrations import downgrade
    from diagnostician.consult.store import redact_url

    url = _store_url(args)
    _migrating(url, lambda: downgrade(url, args.to))
    print(f"{redact_url(url)}: schema at revision {args.to}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- keys


def _key_store(args: argparse.Namespace) -> Any:
    """The store named by --data-dir, or by the environment as for `serve`."""
    from diagnostician.consult.store import open_store

    return open_store(_store_url(args))


def cmd_keys_create(args: argparse.Namespace) -> int:
    """Create an API key, print it once (only its hash is stored)."""
    from diagnostician.api.auth import check_key_name, hash_key, new_key, parse_rate_limit

    name = check_key_name(args.name)
    rate = parse_rate_limit(args.rate_limit) if args.rate_limit else None
    key = new_key()
    store = _key_store(args)
    try:
        store.create_key(name, hash_key(key), rate)
    finally:
        store.close()
    print(key)
    print(f"API key {name!r} created; it is shown only this once, keep it secret", file=sys.stderr)
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    """List API keys: names, creation and revocation times, rate limits; never the keys."""
    store = _key_store(args)
    try:
        keys = store.list_keys()
    finally:
        store.close()
    if args.json:
        rows = [
            {"name": k.name, "created_at": k.created_at.isoformat(), "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None, "rate_limit": k.rate_limit}
            for k in keys
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for k in keys:
        state = f"revoked {k.revoked_at.isoformat(timespec='seconds')}" if k.revoked_at else "active"
        rate = f"{k.rate_limit}/min" if k.rate_limit else "default rate"
        print(f"{k.name}\tcreated {k.created_at.isoformat(timespec='seconds')}\t{state}\t{rate}")
    return EXIT_OK


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """Revoke an API key by name, for good."""
    store = _key_store(args)
    try:
        store.revoke_key(args.name)
    finally:
        store.close()
    print(f"API key {args.name!r} revoked", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- mcp


def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve the consultation as MCP tools over stdio or streamable HTTP (loopback only: no API keys)."""
    from dataclasses import replace

    from diagnostician.api.settings import Settings
    from diagnostician.consult.service import ConsultationService
    from diagnostician.consult.store import open_store, redact_url
    from diagnostician.knowledge.schema import load_pack

    if args.transport == "http":
        _check_listen(args.host, args.port)
    # The same settings as `serve`, so one data folder holds the consultations of both servers.
    settings = Settings.from_env()
    if args.data_dir:
        settings = replace(settings, data_dir=Path(args.data_dir).expanduser().resolve(), database_url=None)
    if args.pack:
        settings = replace(settings, pack=args.pack)
    pack = load_pack(settings.pack)
    store = open_store(settings.store_url)  # a bad folder or URL is a one-line error now
    try:
        from diagnostician.consult import Consultation
        from diagnostician.mcp_server import create_server, run_http, run_stdio

        # Warm the engine's per-pack caches so the first call does not wait for them.
        warm = Consultation.begin(40, "F", pack=pack)
        warm.next_question()
        warm.assessment()
        server = create_server(ConsultationService(store, pack))
        if args.transport == "stdio":
            # stdout carries the protocol: everything else goes to stderr.
            print(f"diagnostician {__version__}: MCP over stdio; consultations in {redact_url(settings.store_url)}", file=sys.stderr)
            run_stdio(server)
        else:
            print(
                f"diagnostician {__version__}: MCP over streamable HTTP at http://{args.host}:{args.port}/mcp; "
                f"consultations in {redact_url(settings.store_url)}",
                file=sys.stderr,
            )
            run_http(server, args.host, args.port, max_body_bytes=settings.max_body_bytes)
    finally:
        store.close()
    return EXIT_OK


# ---------------------------------------------------------------- entry


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `diagnostician` command."""
    ap = _Parser(prog="diagnostician", description="Evidence-based clinical inquiry engine (decision support, not a diagnosis).")
    ap.add_argument("--version", action="version", version=f"diagnostician {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="play a scripted consultation and show each step")
    d.add_argument("--case", default="chest_pain", help="name of a shipped demo case")
    d.add_argument("--pack", default="ddxplus")
    _add_policy_args(d)
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("consult", help="a consultation in the terminal (or --case FILE to play a case)")
    c.add_argument("--case", help="play this case file non-interactively")
    c.add_argument("--age", type=float)
    c.add_argument("--sex")
    c.add_argument("--complaint", action="append", metavar="CODE", help="finding code of the main complaint (repeatable)")
    c.add_argument("--pack", default="ddxplus")
    _add_policy_args(c)
    c.add_argument("--save", help="save the consultation to this file after every answer")
    c.add_argument("--resume", help="continue a consultation saved with --save")
    c.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    c.add_argument("--report", metavar="FILE", help="write the clinician report (SOAP) to FILE: .md or .html")
    c.add_argument("--fhir", metavar="FILE", help="write the consultation as a FHIR R4 Bundle (JSON) to FILE")
    c.add_argument("--results", metavar="TEXT", help="examination and test results after the inquiry, e.g. 'troponin raised, d-dimer normal'")
    c.set_defaults(func=cmd_consult)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    bd = bsub.add_parser("ddxplus", help="interactive DDXPlus benchmark")
    bd.add_argument("--cases", nargs="+", required=True, metavar="PATH", help="DDXPlus patient CSV files (English or French codes)")
    _add_policy_args(bd)
    bd.add_argument("--limit", type=int, help="first N cases of each file")
    bd.add_argument("--out", help="folder for JSON, JSONL and Markdown reports")
    bd.add_argument("--workers", type=int, help="processes (default: all cores, at most 8)")
    bd.add_argument("--pack", default="ddxplus")
    bd.add_argument("--no-ceiling", action="store_true", help="skip the all-evidence-known ceiling")
    bd.add_argument("--json", action="store_true", help="print summaries as JSON instead of Markdown")
    bd.add_argument("--quiet", action="store_true", help="no progress bar")
    bd.add_argument("--agent", default="engine", help="the doctor: engine, or openai (a chat model; its free-text questions are answered from each record)")
    bd.add_argument("--llm-config", metavar="FILE", help="TOML file with an [llm] table (with --agent openai)")
    bd.set_defaults(func=cmd_bench_ddxplus)

    from diagnostician.cli.talk import add_commands

    add_commands(sub, bsub, _Parser)

    p = sub.add_parser("pack", help="knowledge packs")
    psub = p.add_subparsers(dest="pack_command", required=True, parser_class=_Parser)
    pi = psub.add_parser("info", help="describe a pack")
    pi.add_argument("--pack", default="ddxplus")
    pi.set_defaults(func=cmd_pack_info)
    pb = psub.add_parser("build", help="rebuild a shipped pack (ddxplus, or broad from SymCAT/MedlinePlus/DDXPlus and the curated tables)")
    pb.add_argument("--pack", default="ddxplus", choices=("ddxplus", "broad"))
    pb.add_argument("--data", default="../shared/data")
    pb.add_argument("--out", help="output folder (default: the shipped pack's folder)")
    pb.add_argument("--leak", type=float, help="broad pack: one constant P(symptom | condition) for symptoms no source lists, instead of the base-rate model")
    pb.set_defaults(func=cmd_pack_build)
    pt = psub.add_parser("train", help="retrain the differential model from DDXPlus patients (English dev file)")
    pt.add_argument("--cases", default="../shared/data/ddxplus/patients_test_en_dev.csv")
    pt.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "knowledge" / "packs" / "ddxplus"), help="pack folder")
    pt.set_defaults(func=cmd_pack_train)

    sv = sub.add_parser("serve", help="serve the HTTP API (API keys required beyond loopback)")
    sv.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1; any other needs an API key to exist)")
    sv.add_argument("--require-keys", action="store_true", help="require API keys on loopback too (or DIAGNOSTICIAN_REQUIRE_KEYS=1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    sv.add_argument("--data-dir", help="folder of the consultation database (default $DIAGNOSTICIAN_DATA_DIR or the per-user data folder)")
    sv.add_argument("--pack", help="knowledge pack (default $DIAGNOSTICIAN_PACK or ddxplus)")
    sv.set_defaults(func=cmd_serve)

    data_help = "folder of the consultation database (default $DIAGNOSTICIAN_DATA_DIR or the per-user data folder)"
    k = sub.add_parser("keys", help="API keys of the HTTP API (stored hashed, in the consultation database)")
    ksub = k.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    kc = ksub.add_parser("create", help="create a key for a client and print it once")
    kc.add_argument("--name", required=True, help="the client's name (letters, digits, '.', '_', '-')")
    kc.add_argument("--rate-limit", metavar="N/min", help="requests per minute for this key (default: the server's, 120/min)")
    kc.add_argument("--data-dir", help=data_help)
    kc.set_defaults(func=cmd_keys_create)
    kl = ksub.add_parser("list", help="list keys: names, created, revoked (never the keys)")
    kl.add_argument("--data-dir", help=data_help)
    kl.add_argument("--json", action="store_true", help="machine-readable output")
    kl.set_defaults(func=cmd_keys_list)
    kr = ksub.add_parser("revoke", help="revoke a key by name")
    kr.add_argument("name")
    kr.add_argument("--data-dir", help=data_help)
    kr.set_defaults(func=cmd_keys_revoke)

    db = sub.add_parser("db", help="the consultation database")
    dbsub = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    du = dbsub.add_parser("upgrade", help="migrate the database to the newest schema (Alembic; needed before serving from PostgreSQL)")
    du.add_argument("--url", help="database URL, e.g. postgresql://USER@HOST/DB (default $DIAGNOSTICIAN_DATABASE_URL or the SQLite file)")
    du.add_argument("--data-dir", help=data_help)
    du.set_defaults(func=cmd_db_upgrade)
    dc = dbsub.add_parser("current", help="the database's schema revision and the newest one shipped")
    dc.add_argument("--url", help="database URL (default: as for `serve`)")
    dc.add_argument("--data-dir", help=data_help)
    dc.set_defaults(func=cmd_db_current)
    dd = dbsub.add_parser("downgrade", help="migrate a PostgreSQL database back to an older revision (e.g. --to 0001)")
    dd.add_argument("--to", required=True, metavar="REVISION", help="target revision ('base' for none)")
    dd.add_argument("--url", help="database URL (default: as for `serve`)")
    dd.add_argument("--data-dir", help=data_help)
    dd.set_defaults(func=cmd_db_downgrade)

    m = sub.add_parser("mcp", help="serve the consultation as MCP tools for LLM agents (stdio or streamable HTTP)")
    m.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="stdio (default) or http (streamable HTTP at /mcp)")
    m.add_argument("--host", default="127.0.0.1", help="listen address for http (default 127.0.0.1; loopback only)")
    m.add_argument("--port", type=int, default=8001, help="port for http (default 8001)")
    m.add_argument("--data-dir", help="folder of the consultation database (default $DIAGNOSTICIAN_DATA_DIR or the per-user data folder)")
    m.add_argument("--pack", help="knowledge pack (default $DIAGNOSTICIAN_PACK or ddxplus)")
    m.set_defaults(func=cmd_mcp)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command; input errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except DiagnosticianError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = 0
    except OSError as exc:  # a file or folder gone or unwritable mid-run (e.g. a bench --out deleted): one line, no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        code = EXIT_IO
    sys.exit(code)


if __name__ == "__main__":
    main()
