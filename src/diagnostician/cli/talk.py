"""Free-text commands: `parse` (what the intake understood), `chat` (a consultation in plain words), `bench intake`."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from diagnostician.errors import InputError

EXIT_OK = 0


def _read_text_arg(parts: list[str]) -> str:
    """The TEXT argument: words joined, or standard input when it is '-' or absent."""
    if not parts or parts == ["-"]:
        if sys.stdin.isatty():
            raise InputError("give the text to parse as an argument, or pipe it on standard input")
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError("the text on standard input is not UTF-8") from exc
    return " ".join(parts)


def cmd_parse(args: argparse.Namespace) -> int:
    """Print what the free-text intake understood: demographics and each finding with polarity, value, confidence, span."""
    from diagnostician.dialogue.nlu import CONFIRM_BELOW, read_text
    from diagnostician.knowledge.schema import load_pack

    pack = load_pack(args.pack)
    text = _read_text_arg(args.text)
    reading = read_text(pack, text, max_chars=args.max_chars)
    if args.llm:
        from diagnostician.dialogue.llm import llm_reader

        # The model only adds what the lexicon did not read; its findings are validated and always confirmed.
        reading = llm_reader(_llm_client(args), shortlist=16)(pack, text)
    if args.json:
        out = reading.to_dict()
        for item in out["findings"]:
            item["question"] = pack.finding(item["code"]).question
            item["confirm"] = item["confidence"] < CONFIRM_BELOW or item["polarity"] == "uncertain"
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False)
    demo = []
    if reading.age is not None:
        demo.append(f"age {reading.age:g} years")
    if reading.sex:
        demo.append(f"sex {reading.sex}")
    if reading.proxy:
        demo.append(f"written about: {reading.relation or 'someone else'}")
    if reading.pregnant:
        demo.append("pregnant")
    if reading.duration_days is not None:
        demo.append(f"duration about {reading.duration_days:g} days")
    con.print("Understood: " + (", ".join(demo) if demo else "no age, sex or duration"))
    t = Table(show_lines=False)
    for col in ("code", "polarity", "value", "confidence", "text", "finding"):
        t.add_column(col)
    for m in reading.mentions:
        f = pack.finding(m.code)
        vals = m.value if isinstance(m.value, tuple) else (() if m.value is None else (m.value,))
        value = ", ".join(f.label_of(v) for v in vals) if vals else ""
        conf = f"{m.confidence:.2f}" + (" (confirm)" if m.confidence < CONFIRM_BELOW or m.polarity == "uncertain" else "")
        t.add_row(m.code, m.polarity, value, conf, repr(m.text), f.question)
    if reading.mentions:
        con.print(t)
    else:
        con.print("No finding of the knowledge pack was recognised.")
    for note in reading.notes:
        con.print(f"[dim]note: {note}[/]")
    return EXIT_OK


def cmd_chat(args: argparse.Namespace) -> int:
    """A free-text consultation in the terminal, from the first complaint to the assessment."""
    from diagnostician.knowledge.schema import load_pack

    if args.max_questions is not None and args.max_questions < 1:
        raise InputError("--max-questions must be at least 1")
    factory = conversation_factory(args)
    if args.member:
        from diagnostician.cli.family import run_member_chat

        return run_member_chat(args, factory)
    conv = factory(load_pack(args.pack))
    chat_loop(conv, args.plain)
    return EXIT_OK


def conversation_factory(args: argparse.Namespace) -> Any:
    """A function making Conversations with the command line's policy and phrasing (pack, then Conversation fields)."""
    from diagnostician.consult.conversation import Conversation
    from diagnostician.engine import InquiryPolicy

    max_q = getattr(args, "max_questions", None)
    policy = InquiryPolicy(max_questions=max_q) if max_q else InquiryPolicy()

    def make(pack: Any, **fields: Any) -> Any:
        phrase = _llm_phraser(pack, args) if getattr(args, "llm", False) else None
        return Conversation(pack, policy=policy, phrase=phrase, **fields)

    return make


def chat_loop(conv: Any, plain: bool) -> None:
    from diagnostician.consult.conversation import ENDED

    """Feed standard input to a conversation line by line and print each reply, until the input ends."""
    show = _printer(plain)
    show(conv.reply(""))
    while True:
        try:
            line = input("you> " if sys.stdin.isatty() else "")
        except EOFError:
            if conv.c is not None and conv.stage == "inquiry":
                show(conv.reply("stop"))
            break
        except UnicodeDecodeError:
            show("I could not read that line (not UTF-8); please type it again.")
            continue
        ended = conv.stage == "ended"
        reply = conv.reply(line)
        if ended and not sys.stdin.isatty() and reply.startswith(ENDED):
            continue  # scripted input past the assessment: results are read, anything else would only repeat it
        show(reply)


@contextmanager
def progress_bar(quiet: bool, label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A transient progress bar on a terminal's stderr, as a callback (cases done → bar); None when quiet or piped."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    task = bar.add_task(label, total=total)
    try:
        yield lambda n: bar.update(task, completed=n)
    finally:
        bar.stop()


def _printer(plain: bool) -> Any:
    if plain or not sys.stdout.isatty():
        return lambda text: print(text + "\n", flush=True)
    from rich.console import Console
    from rich.markdown import Markdown

    con = Console(highlight=False)
    return lambda text: con.print(Markdown(text), "")


def _llm_client(args: argparse.Namespace, flag: str = "--llm") -> Any:
    """A client for the configured OpenAI-compatible server; a one-line error naming `flag` when none is configured."""
    from diagnostician.dialogue.llm import LLMClient, LLMConfig

    config = LLMConfig.from_env(getattr(args, "llm_config", None))
    if config is None:
        raise InputError(f"{flag} needs a server: set DIAGNOSTICIAN_LLM_BASE_URL and DIAGNOSTICIAN_LLM_MODEL, or pass --llm-config FILE")
    return LLMClient(config)


def _llm_phraser(pack: Any, args: argparse.Namespace) -> Any:
    """Question rewording by an OpenAI-compatible server, checked for grounding, falling back to the template."""
    from diagnostician.dialogue.grounding import Grounding
    from diagnostician.dialogue.llm import phrase_question
    from diagnostician.dialogue.nlu import read_text

    client = _llm_client(args)

    def detect(text: str) -> list[Any]:
        try:
            return read_text(pack, text).mentions
        except InputError:
            return []

    def phrase(text: str, audience: Any) -> str:
        # Only what the template itself says is allowed: the reworded question may name nothing else.
        return phrase_question(client, pack, text, Grounding(pack=pack), proxy=audience.proxy, detect=detect).text

    return phrase


def cmd_bench_intake(args: argparse.Namespace) -> int:
    """Score the free-text intake on a labelled utterance set: findings, polarity and values."""
    from diagnostician.bench.intake import coverage, load_intake_set, run_intake, vignette_recovery
    from diagnostician.knowledge.schema import load_pack

    pack = load_pack(args.pack)
    items = load_intake_set(args.cases)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError("--limit must be at least 1")
        items = items[: args.limit]
    if args.llm:
        from diagnostician.dialogue.llm import llm_reader

        report = run_intake(pack, items, reader=llm_reader(_llm_client(args)), min_confidence=args.min_confidence)
        report["llm"] = True
    else:
        report = run_intake(pack, items, min_confidence=args.min_confidence)
    report["coverage"] = coverage(pack, items)
    report["set"] = str(args.cases or "built-in intake_en.jsonl")
    for path in args.vignettes or []:
        if not Path(path).is_file():
            raise InputError(f"vignette file not found: {path}")
        report.setdefault("vignettes", {})[Path(path).name] = vignette_recovery(pack, path)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "intake_summary.json").write_text(json.dumps({k: v for k, v in report.items() if k != "errors"}, indent=1) + "\n", encoding="utf-8")
        (out / "intake_errors.jsonl").write_text("".join(json.dumps(e) + "\n" for e in report["errors"]), encoding="utf-8")
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "errors"}, indent=1))
        return EXIT_OK
    print(intake_markdown(report))
    return EXIT_OK


def intake_markdown(report: dict[str, Any]) -> str:
    """The intake benchmark's figures as a Markdown table."""
    rows = ["| measure | precision | recall | F1 |", "|---|---|---|---|"]
    for key in ("findings", "findings_with_polarity", "values"):
        r = report[key]
        rows.append(f"| {key.replace('_', ' ')} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |")
    lines = [
        f"Intake benchmark: {report['utterances']} utterances, {report['labels']} labelled findings ({report['set']}).",
        "",
        *rows,
        "",
        f"- polarity accuracy on findings found: {report['polarity_accuracy']}",
        f"- negation polarity accuracy (denied findings found, read as denied): {report['negation_polarity_accuracy']}",
        f"- denied findings found at all: {report['denied_findings_found']}",
        "- demographics: " + ", ".join(f"{k} {v['accuracy']} (n={v['n']})" for k, v in report["demographics"].items()),
        f"- time: first call {report['timing']['first_call_s']} s (builds the reader), {report['timing']['per_utterance_ms']} ms per utterance",
        f"- coverage: {report['coverage']['labelled']} of {report['coverage']['findings']} pack findings labelled at least once",
        "",
        "| tag | utterances | findings F1 | with polarity F1 |",
        "|---|---|---|---|",
    ]
    for tag, r in report["by_tag"].items():
        lines.append(f"| {tag} | {r['n_utterances']} | {r['findings']['f1']:.3f} | {r['findings_with_polarity']['f1']:.3f} |")
    for name, v in report.get("vignettes", {}).items():
        lines += [
            "",
            f"Vignettes {name} ({v['vignettes']}): stated findings recovered {v['stated']['recovered']}/{v['stated']['in_pack']} "
            f"({v['stated']['recovered_share']}), denied {v['denied']['recovered']}/{v['denied']['in_pack']} ({v['denied']['recovered_share']}); "
            f"items the pack has no finding for: {v['stated']['items'] - v['stated']['in_pack']} stated, {v['denied']['items'] - v['denied']['in_pack']} denied.",
        ]
    return "\n".join(lines)


def cmd_bench_freetext(args: argparse.Namespace) -> int:
    """DDXPlus consultations opened with a sentence and answered in words, beside the coded benchmark on the same cases."""
    from diagnostician.bench.freetext import run
    from diagnostician.knowledge.schema import load_pack

    if not Path(args.cases).is_file():
        raise InputError(f"case file not found: {args.cases}")
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    pack = load_pack(args.pack)
    report = run(pack, args.cases, limit=args.limit, seed=args.seed, held_out_only=args.held_out)
    detail = report.pop("cases_detail")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "freetext_summary.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        (out / "freetext_cases.jsonl").write_text("".join(json.dumps(d) + "\n" for d in detail), encoding="utf-8")
    print(json.dumps(report, indent=1))
    return EXIT_OK


def _case_bench_inputs(args: argparse.Namespace, what: str) -> tuple[Any, Path | None]:
    """What the case-file benches check and load alike: --limit, the case file, the pack, the --out folder."""
    from diagnostician.knowledge.schema import load_pack

    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    if not Path(args.cases).is_file():
        raise InputError(f"{what} file not found: {args.cases}")
    return load_pack(args.pack), (Path(args.out) if args.out else None)


def _repeated(args: argparse.Namespace, kind: str) -> int:
    """Run a vignette bench `--repeats` times (run1/, run2/… under --out) and report each metric's mean and spread."""
    import statistics

    if args.repeats < 2 or args.repeats > 20:
        raise InputError("--repeats must lie between 2 and 20")
    if not args.out:
        raise InputError("--repeats needs --out (each run is kept in its own folder)")
    runs = []
    for i in range(1, args.repeats + 1):
        one = argparse.Namespace(**{**vars(args), "repeats": 1, "out": str(Path(args.out) / f"run{i}"), "json": True, "seed": args.seed + i - 1})
        _vignette_bench(one, kind)
        runs.append(json.loads((Path(one.out) / "summary.json").read_text(encoding="utf-8")))
    keys = ("accuracy", "under_triage", "over_triage", "emergency_recall") if kind == "triage" else ("top1", "top3", "top5", "turns")
    spread = {}
    for k in keys:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
        if vals:
            spread[k] = {"mean": round(statistics.fmean(vals), 4), "sd": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0, "runs": vals}
    out = {"repeats": args.repeats, "agent": runs[0].get("agent"), "metrics": spread}
    (Path(args.out) / "repeats.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1))
    return EXIT_OK


def _vignette_bench(args: argparse.Namespace, kind: str) -> int:
    """Run the engine or a chat model on a vignette file with the deterministic vignette patient; print and write the summary."""
    if getattr(args, "repeats", 1) > 1:
        return _repeated(args, kind)
    from diagnostician.bench.ddxplus import PEDIATRIC_AGE
    from diagnostician.bench.vignettes import UNMENTIONED, diagnosis_summary, iter_markdown, load_vignettes, run_cases, triage_summary

    if args.agent not in ("engine", "openai"):
        raise InputError(
            f"--agent {args.agent}: unknown agent; choose engine (only the built-in engine, the default) "
            "or openai (any OpenAI-compatible chat model: DIAGNOSTICIAN_LLM_BASE_URL and DIAGNOSTICIAN_LLM_MODEL, or --llm-config FILE)"
        )
    if args.patient not in ("deterministic", "llm"):
        raise InputError(f"--patient {args.patient}: choose deterministic (the default) or llm")
    args.unmentioned = args.unmentioned or UNMENTIONED
    if args.unmentioned not in ("absent", "unknown"):
        raise InputError(f"--unmentioned {args.unmentioned}: choose unknown (the default) or absent")
    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    if not 0.0 <= args.temperature <= 2.0:
        raise InputError("--temperature must lie between 0 and 2")
    pack, out = _case_bench_inputs(args, "vignette")
    vignettes = load_vignettes(args.cases)[: args.limit]
    client: Any = None
    consult: Any = None  # run_cases' default: the engine
    agent = "engine"
    if args.agent == "openai":
        from diagnostician.bench.agents import run_llm_agent
        from diagnostician.dialogue.llm import LLMClient, LLMConfig

        client = _llm_client(args, "--agent openai")
        config = client.config
        agent = f"openai:{config.model}"

        patient_client: Any = None
        if args.patient == "llm":
            from diagnostician.bench.agents import llm_patient

            patient_config = LLMConfig.from_env(args.patient_config, prefix="DIAGNOSTICIAN_PATIENT_") or config
            patient_client = LLMClient(patient_config)

        def llm_consult(v: Any) -> dict[str, Any]:
            answer = llm_patient(patient_client, v) if patient_client is not None else None
            return run_llm_agent(client, pack, v, patient_answer=answer, temperature=args.temperature, unmentioned=args.unmentioned)

        consult = llm_consult
    elif args.patient == "llm":
        # The engine asks in words and reads the played patient's free-text answers, as in the chat.
        import random as _random

        from diagnostician.bench.agents import leak_check, llm_patient
        from diagnostician.bench.ddxplus import BenchConfig
        from diagnostician.bench.vignettes import consult_with_patient
        from diagnostician.dialogue.llm import LLMClient, LLMConfig, LLMUnavailable

        patient_config = LLMConfig.from_env(args.patient_config, prefix="DIAGNOSTICIAN_PATIENT_") or LLMConfig.from_env(getattr(args, "llm_config", None))
        if patient_config is None:
            raise InputError("--patient llm needs a server: set DIAGNOSTICIAN_PATIENT_BASE_URL/_MODEL (or DIAGNOSTICIAN_LLM_*), or pass --patient-config FILE")
        client = LLMClient(patient_config)
        bench_config = BenchConfig()

        def engine_with_played_patient(v: Any) -> dict[str, Any]:
            played = llm_patient(client, v)
            leaks: list[dict[str, Any]] = []

            def answer(question: str) -> str:
                text = played(question)
                flags = leak_check(pack, v, text)
                if flags:
                    leaks.append({"question": question, "flags": flags})
                return text

            try:
                row = consult_with_patient(pack, v, bench_config, _random.Random(f"0:{v.id}"), args.unmentioned, in_words=answer)[0]
            except LLMUnavailable as exc:  # counted, and run again on the next run (run_logged redoes rows with an error)
                return {"id": v.id, "diagnosis": v.diagnosis, "urgency": v.urgency, "ended": False, "differential": [], "triage": None, "error": str(exc)}
            row["leaks"] = leaks
            return row

        consult = engine_with_played_patient

    try:
        with progress_bar(args.quiet, Path(args.cases).name, len(vignettes)) as progress:
            results = run_cases(
                pack, vignettes, out, progress=progress, consult=consult, workers=args.workers, unmentioned=args.unmentioned, seed=args.seed
            )
    finally:
        if client is not None:
            client.close()
    judge: Any = None
    if kind != "triage" and getattr(args, "judge", False):
        from diagnostician.dialogue.llm import LLMClient, LLMConfig

        judge_config = LLMConfig.from_env(args.judge_config, prefix="DIAGNOSTICIAN_JUDGE_") or LLMConfig.from_env(None, prefix=GRADER_ENV)
        if judge_config is None:
            raise InputError("--judge needs a model: set DIAGNOSTICIAN_JUDGE_BASE_URL and _MODEL (or DIAGNOSTICIAN_GRADER_*), or pass --judge-config FILE")
        judge = LLMClient(judge_config)
    try:
        summarise = (lambda rows: triage_summary(rows)) if kind == "triage" else (lambda rows: diagnosis_summary(pack, rows, judge=judge))
        summary = summarise(results)
    finally:
        if judge is not None:
            judge.close()
    if kind == "triage":
        from diagnostician.bench.vignettes import elicitation

        summary.update(elicitation(results))  # did the inquiry ask for danger signs, and elicit what the vignette states
    decisions = summary.pop("decisions", [])  # the matcher's judgement on every case, kept beside the summary
    # The paediatric slice: the same metrics on the vignettes of patients under 18.
    ages = {v.id: v.age for v in vignettes}
    kids = [r for r in results if (age := ages.get(r["id"])) is not None and age < PEDIATRIC_AGE]
    summary["pediatric"] = {k: v for k, v in summarise(kids).items() if k != "decisions"} if kids else {"cases": 0}
    summary.update(agent=agent, patient=args.patient, pack=f"{pack.name} {pack.version}", file=str(args.cases), unmentioned=args.unmentioned)
    if args.patient == "llm":
        # Dialogues where the played patient named the diagnosis or used clinical terms the vignette does not.
        summary["leaky_dialogues"] = [r["id"] for r in results if r.get("leaks")]
    if client is not None:
        summary.update(malformed=sum(bool(r.get("malformed")) for r in results), errors=sum(bool(r.get("error")) for r in results))
    keys = ("cases", "accuracy", "under_triage", "over_triage", "emergency_recall", "red_flag_questions") if kind == "triage" else (
        "cases", "coverage", "top1", "top3", "top5", "turns", "key_findings_elicited", "red_flag_questions", "ended", "judged")  # fmt: skip
    keys += ("malformed", "errors")  # only in a chat model's summary
    table = "\n".join(iter_markdown(summary, keys))
    if summary["pediatric"].get("cases"):
        kid = summary["pediatric"]
        table += "\n\npatients under 18: " + ", ".join(f"{k} {kid[k]}" for k in keys if k in kid)
    if out:
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        if decisions:
            (out / "decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions), encoding="utf-8")
        (out / "summary.md").write_text(table + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=1) if args.json else table)
    return EXIT_OK


def cmd_bench_triage(args: argparse.Namespace) -> int:
    """Triage bench on vignettes with gold urgency (em / ne / sc)."""
    return _vignette_bench(args, "triage")


def cmd_bench_vignettes(args: argparse.Namespace) -> int:
    """Diagnosis bench on vignettes: top-1/3/5 of the engine's differential."""
    return _vignette_bench(args, "vignettes")


def cmd_bench_osce(args: argparse.Namespace) -> int:
    """OSCE-style bench on AgentClinic case scripts: history, the tests the engine suggests (answered from the script), diagnosis."""
    from diagnostician.bench.osce import load_osce, osce_summary, run_osce
    from diagnostician.bench.vignettes import iter_markdown

    if args.agent not in ("engine", "openai"):
        raise InputError(f"--agent {args.agent}: choose engine (the default) or openai (any OpenAI-compatible chat model)")
    if args.patient not in ("deterministic", "llm") or args.measurement not in ("deterministic", "llm"):
        raise InputError("--patient and --measurement are deterministic (the default) or llm")
    if args.agent == "engine" and (args.patient == "llm" or args.measurement == "llm"):
        raise InputError("--patient llm and --measurement llm answer free text: use them with --agent openai (the engine asks by finding code)")
    if not 4 <= args.turns <= 100:
        raise InputError("--turns must lie between 4 and 100")
    if not 1 <= args.history <= 100 or not 0 <= args.tests <= 100:
        raise InputError("--history must lie between 1 and 100, --tests between 0 and 100")
    pack, out = _case_bench_inputs(args, "OSCE case")
    cases = load_osce(args.cases)[: args.limit]
    agent, client = "engine", None
    consult: Any = None  # run_osce's default: the engine
    if args.agent == "openai":
        from diagnostician.bench.agents import llm_patient
        from diagnostician.bench.osce import llm_measurement, run_llm_osce

        client = _llm_client(args, "--agent openai")
        agent = f"openai:{client.config.model}"

        def llm_consult(case: Any) -> dict[str, Any]:
            answer = llm_patient(client, case.vignette) if args.patient == "llm" else None
            measure = llm_measurement(client, case) if args.measurement == "llm" else None
            return run_llm_osce(client, pack, case, args.turns, patient_answer=answer, measurement=measure)

        consult = llm_consult

    try:
        results = run_osce(pack, cases, out, turns=args.turns, history=args.history, tests=args.tests, consult=consult)
    finally:
        if client is not None:
            client.close()
    summary = osce_summary(pack, results)
    summary.update(agent=agent, patient=args.patient, measurement=args.measurement, pack=f"{pack.name} {pack.version}", file=str(args.cases), turn_budget=args.turns)
    if args.agent == "engine":
        summary.update(history_budget=args.history, tests_budget=args.tests)
    if client is not None:
        summary.update(malformed=sum(bool(r.get("malformed")) for r in results), errors=sum(bool(r.get("error")) for r in results))
    keys = ("cases", "coverage", "top1", "top5", "turns", "turns_median", "turns_history", "tests_ordered", "informative_share", "over_testing", "emergency_recall", "ended",
            "malformed", "errors")  # fmt: skip
    table = "\n".join(iter_markdown(summary, keys))
    if out:
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        (out / "summary.md").write_text(table + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=1) if args.json else table)
    return EXIT_OK


def cmd_bench_compare(args: argparse.Namespace) -> int:
    """McNemar's paired test of two benchmark runs (their --out folders) on the cases both have."""
    from diagnostician.bench.jsonl import read_jsonl
    from diagnostician.bench.vignettes import compare_runs
    from diagnostician.knowledge.schema import load_pack

    runs = []
    for folder in (args.a, args.b):
        log = Path(folder) / "cases.jsonl"
        if not log.is_file():
            raise InputError(f"no cases.jsonl in {folder} (the --out folder of a triage or vignettes run)")
        runs.append([row for _, row in read_jsonl(log, "a logged case") if isinstance(row, dict) and "id" in row])
    result = compare_runs(load_pack(args.pack), runs[0], runs[1], args.kind)
    print(json.dumps(result, indent=1))
    return EXIT_OK


def cmd_bench_factcheck(args: argparse.Namespace) -> int:
    """Check each claim of an answer against the knowledge pack: supported, contradicted, unverifiable."""
    from diagnostician.bench.factcheck import fact_check
    from diagnostician.knowledge.schema import load_pack

    pack = load_pack(args.pack)
    text = _read_text_arg(args.text)
    if not text.strip():
        raise InputError("the answer to check is empty")
    if len(text) > 100_000:
        raise InputError("the answer is over 100,000 characters")
    report = fact_check(pack, text)
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
        return EXIT_OK
    for c in report["claims"]:
        print(f"[{c['verdict']}] {c['text']}")
        for check in c["checks"]:
            print(f"    {check}")
    print(f"supported {report['supported']}, contradicted {report['contradicted']}, unverifiable {report['unverifiable']}; "
          f"hallucination rate {report['hallucination_rate']}")  # fmt: skip
    return EXIT_OK


GRADER_ENV = "DIAGNOSTICIAN_GRADER_"


def _grader_config(args: argparse.Namespace) -> Any:
    """The grader's LLMConfig: --grader-config FILE ([llm] table) or DIAGNOSTICIAN_GRADER_* variables (default timeout 120 s)."""
    import os
    from dataclasses import replace

    from diagnostician.dialogue.llm import LLMConfig

    config = LLMConfig.from_env(args.grader_config, prefix=GRADER_ENV)
    if config is None:
        raise InputError(
            f"bench healthbench needs a grader model (an OpenAI-compatible server): set {GRADER_ENV}BASE_URL and "
            f"{GRADER_ENV}MODEL (and {GRADER_ENV}API_KEY if it needs one), or pass --grader-config FILE with an [llm] table"
        )
    return config if os.environ.get(GRADER_ENV + "TIMEOUT") else replace(config, timeout_s=max(config.timeout_s, 120.0))


def cmd_bench_healthbench(args: argparse.Namespace) -> int:
    """Grade the engine's (or a chat model's) replies to HealthBench-format prompts with a grader model."""
    from diagnostician.bench.healthbench import engine_reply, llm_reply, load_healthbench, run_healthbench
    from diagnostician.dialogue.llm import LLMClient

    if args.agent not in ("engine", "openai"):
        raise InputError(f"--agent {args.agent}: unknown agent; choose engine (the built-in engine, the default) or openai (the configured OpenAI-compatible chat model)")
    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    if not Path(args.data).is_file():
        raise InputError(f"HealthBench file not found: {args.data}")
    grader_config = _grader_config(args)
    examples = load_healthbench(args.data)
    clients: list[Any] = []
    try:
        if args.agent == "openai":
            agent_client = _llm_client(args, "--agent openai")
            clients.append(agent_client)
            agent = f"openai:{agent_client.config.model}"

            def reply_fn(messages: Any) -> str:
                return llm_reply(agent_client, messages)

        else:
            from diagnostician.knowledge.schema import load_pack

            pack = load_pack(args.pack)
            agent = f"engine:{pack.name} {pack.version}"

            def reply_fn(messages: Any) -> str:
                return engine_reply(pack, messages)

        grader = LLMClient(grader_config)
        clients.append(grader)
        summary = run_healthbench(examples, reply_fn, grader, out_dir=args.out, limit=args.limit, workers=args.workers)
    finally:
        for c in clients:
            c.close()
    summary.update(agent=agent, grader=grader_config.model, file=str(args.data))
    if args.out:
        (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(summary, indent=1))
        return EXIT_OK
    score = "n/a" if summary["score"] is None else f"{summary['score']:.3f} (SE {summary['se']:.3f})"
    lines = [
        f"HealthBench grading of {agent} by {summary['grader']}: {summary['examples']} examples, {summary['rubric_items']} rubric items.",
        "",
        f"- score: {score}",
        f"- unparseable verdicts (counted as not met): {summary['unparseable_verdicts']}; grader errors: {summary['grader_errors']}; agent errors: {summary['agent_errors']}",
        "",
        "| group | mean | SE | n |",
        "|---|---|---|---|",
    ]
    for group in ("by_theme", "by_axis"):
        for tag, v in summary[group].items():
            mean = "n/a" if v["mean"] is None else f"{v['mean']:.3f}"
            se = "n/a" if v["se"] is None else f"{v['se']:.3f}"
            lines.append(f"| {tag} | {mean} | {se} | {v['n']} |")
    print("\n".join(lines))
    return EXIT_OK


def add_commands(sub: Any, bench_sub: Any, parser_class: Any) -> None:
    """Register parse, chat and bench intake on the main parser."""
    p = sub.add_parser("parse", help="show what the free-text intake understands in TEXT")
    p.add_argument("text", nargs="*", metavar="TEXT", help="the text (or '-' / nothing to read standard input)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--pack", default="broad", help="knowledge pack (default broad: free text; ddxplus, broad+ddxplus or a folder)")
    p.add_argument("--max-chars", type=int, default=5000, help="refuse longer text (default 5000)")
    p.add_argument("--llm", action="store_true", help="also ask the configured OpenAI-compatible server (validated; to be confirmed)")
    p.add_argument("--llm-config", metavar="FILE", help="TOML file with an [llm] table (base_url, model, api_key)")
    p.set_defaults(func=cmd_parse)

    c = sub.add_parser("chat", help="a consultation in plain words in the terminal")
    c.add_argument("--pack", default="broad", help="knowledge pack (default broad: it beats ddxplus on the Avey vignettes; ddxplus, broad+ddxplus or a folder)")
    c.add_argument("--max-questions", type=int, help="at most this many questions (default 30)")
    c.add_argument("--plain", action="store_true", help="plain text instead of formatted Markdown")
    c.add_argument("--llm", action="store_true", help="reword questions with the configured OpenAI-compatible server (grounded; falls back to templates)")
    c.add_argument("--llm-config", metavar="FILE", help="TOML file with an [llm] table (base_url, model, api_key)")
    c.add_argument("--member", help="a member of the family record (name or id): history pre-filled and confirmed; stored with a follow-up")
    c.add_argument("--data-dir", help="folder of the family record's database (with --member)")
    c.add_argument("--passphrase-file", metavar="FILE", help="passphrase of an encrypted record (with --member; default $DIAGNOSTICIAN_PASSPHRASE)")
    c.set_defaults(func=cmd_chat)

    from diagnostician.cli.family import add_commands as add_family

    add_family(sub, conversation_factory)

    bi = bench_sub.add_parser("intake", help="score the free-text intake on a labelled utterance set")
    bi.add_argument("--cases", help="JSONL utterance set (default: the built-in intake_en.jsonl)")
    bi.add_argument("--pack", default="ddxplus")
    bi.add_argument("--min-confidence", type=float, default=0.0, help="count only mentions at or above this confidence")
    bi.add_argument("--out", help="folder for intake_summary.json and intake_errors.jsonl")
    bi.add_argument("--limit", type=int, help="first N utterances")
    bi.add_argument("--llm", action="store_true", help="add what the configured OpenAI-compatible model extracts (to compare with offline)")
    bi.add_argument("--llm-config", metavar="FILE", help="TOML file with an [llm] table")
    bi.add_argument("--vignettes", nargs="*", metavar="FILE", help="also: share of stated/denied findings recovered from Avey-format vignettes")
    bi.add_argument("--json", action="store_true")
    bi.set_defaults(func=cmd_bench_intake)

    cp = bench_sub.add_parser("compare", help="McNemar's paired test of two triage or vignettes runs (agents, or repeats)")
    cp.add_argument("a", metavar="DIR_A", help="--out folder of the first run")
    cp.add_argument("b", metavar="DIR_B", help="--out folder of the second run")
    cp.add_argument("--kind", choices=("triage", "vignettes"), default="triage", help="what 'right' means: the triage level, or the top-1 diagnosis")
    cp.add_argument("--pack", default="ddxplus")
    cp.set_defaults(func=cmd_bench_compare)

    fc = bench_sub.add_parser("factcheck", help="check an agent's answer against the knowledge pack, claim by claim")
    fc.add_argument("text", nargs="*", metavar="TEXT", help="the answer (or '-' / nothing to read standard input)")
    fc.add_argument("--pack", default="ddxplus")
    fc.add_argument("--json", action="store_true")
    fc.set_defaults(func=cmd_bench_factcheck)

    bf = bench_sub.add_parser("freetext", help="DDXPlus consultations opened in a sentence and answered in words, vs coded")
    bf.add_argument("--cases", required=True, help="DDXPlus patient CSV file")
    bf.add_argument("--limit", type=int, help="first N cases")
    bf.add_argument("--held-out", action="store_true", help="only rows the differential model never saw")
    bf.add_argument("--seed", type=int, default=0, help="seed of the sentence and reply wording")
    bf.add_argument("--pack", default="ddxplus")
    bf.add_argument("--out", help="folder for freetext_summary.json and freetext_cases.jsonl")
    bf.set_defaults(func=cmd_bench_freetext)

    for name, func, help_text in (
        ("triage", cmd_bench_triage, "triage bench on vignettes with gold urgency (Semigran format)"),
        ("vignettes", cmd_bench_vignettes, "diagnosis bench on vignettes (Avey format): top-1/3/5"),
    ):
        bv = bench_sub.add_parser(name, help=help_text)
        bv.add_argument("--cases", required=True, help="vignette JSONL file")
        bv.add_argument("--agent", default="engine", help="the agent under test: engine, or openai (the configured OpenAI-compatible chat model)")
        bv.add_argument("--llm-config", metavar="FILE", help="with --agent openai: TOML file with an [llm] table (base_url, model, api_key)")
        bv.add_argument("--patient", default="deterministic", help="the simulated patient: deterministic, or llm (a chat model plays it from the vignette; the engine asks it in words)")
        bv.add_argument("--patient-config", metavar="FILE", help="TOML [llm] table of the patient model (else DIAGNOSTICIAN_PATIENT_*, else the agent's)")
        bv.add_argument("--limit", type=int, help="first N vignettes")
        bv.add_argument("--unmentioned", help="deterministic patient: what it answers about findings the vignette does not mention, unknown (\"don't know\", the default) or absent (\"no\")")
        bv.add_argument("--workers", type=int, default=1, help="cases at once (threads; for agents behind a server), default 1")
        bv.add_argument("--judge", action="store_true", help="where the matcher's rules find no match, ask a judge model (DIAGNOSTICIAN_JUDGE_* or _GRADER_*); every judgement is logged in decisions.jsonl")
        bv.add_argument("--judge-config", metavar="FILE", help="TOML [llm] table of the judge model")
        bv.add_argument("--repeats", type=int, default=1, help="run the bench N times (run1/…/runN under --out) and report mean and SD of each metric")
        bv.add_argument("--seed", type=int, default=0, help="seed of the simulated patient's wording (repeats use seed, seed+1, …)")
        bv.add_argument("--temperature", type=float, default=0.0, help="sampling temperature of a chat-model doctor (repeats differ only above 0)")
        bv.add_argument("--out", help="folder for cases.jsonl (transcripts; a rerun resumes), summary.json, summary.md and decisions.jsonl (the matcher's judgement per case)")
        bv.add_argument("--pack", default="broad", help="knowledge pack (default broad; ddxplus, broad+ddxplus or a folder)")
        bv.add_argument("--json", action="store_true")
        bv.add_argument("--quiet", action="store_true", help="no progress bar")
        bv.set_defaults(func=func)

    bo = bench_sub.add_parser("osce", help="OSCE-style bench on AgentClinic case scripts: history, tests, diagnosis (engine)")
    bo.add_argument("--cases", required=True, help="AgentClinic JSONL file (OSCE_Examination objects)")
    bo.add_argument("--agent", default="engine", help="the doctor: engine, or openai (the configured OpenAI-compatible chat model)")
    bo.add_argument("--patient", default="deterministic", help="the patient side: deterministic (from the script) or llm (a chat model plays it; with --agent openai)")
    bo.add_argument("--measurement", default="deterministic", help="the examination/test side: deterministic (script entries by words) or llm")
    bo.add_argument("--llm-config", metavar="FILE", help="TOML file with an [llm] table (base_url, model, api_key)")
    bo.add_argument("--pack", default="broad", help="knowledge pack (default broad)")
    bo.add_argument("--turns", type=int, default=20, help="turn budget in all: questions plus ordered tests (default 20, as in AgentClinic)")
    bo.add_argument("--history", type=int, default=8, help="questions to the patient at most, for the engine (default 8, the first an open question)")
    bo.add_argument("--tests", type=int, default=3, help="tests the engine orders at most, after one general examination (default 3)")
    bo.add_argument("--limit", type=int, help="first N cases")
    bo.add_argument("--out", help="folder for cases.jsonl (transcripts with the orders; a rerun resumes), summary.json and summary.md")
    bo.add_argument("--json", action="store_true")
    bo.set_defaults(func=cmd_bench_osce)

    bh = bench_sub.add_parser("healthbench", help="grade replies to HealthBench-format prompts with a grader model (rubric items)")
    bh.add_argument("--data", required=True, metavar="FILE", help="HealthBench JSONL file (prompt, rubrics, example_tags)")
    bh.add_argument("--agent", default="engine", help="the agent under test: engine, or openai (the configured OpenAI-compatible chat model)")
    bh.add_argument("--grader-config", metavar="FILE", help="TOML file with an [llm] table for the grader (else DIAGNOSTICIAN_GRADER_BASE_URL, _MODEL, _API_KEY)")
    bh.add_argument("--llm-config", metavar="FILE", help="with --agent openai: TOML file with an [llm] table (base_url, model, api_key)")
    bh.add_argument("--limit", type=int, help="first N examples")
    bh.add_argument("--workers", type=int, default=1, help="examples at once (threads), default 1")
    bh.add_argument("--out", help="folder for cases.jsonl (replies and verdicts; a rerun resumes) and summary.json")
    bh.add_argument("--pack", default="ddxplus", help="with --agent engine: the knowledge pack")
    bh.add_argument("--json", action="store_true")
    bh.set_defaults(func=cmd_bench_healthbench)
