"""The family health record on the command line: `family …` (members, diary, plots, export/import) and `followup …`."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from diagnostician.errors import InputError

EXIT_OK = 0
MAX_IMPORT_BYTES = 20_000_000


def _passphrase(args: argparse.Namespace) -> str | None:
    path = getattr(args, "passphrase_file", None)
    if not path:
        return None  # the store falls back to $DIAGNOSTICIAN_PASSPHRASE
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the passphrase file {path}: {exc}") from exc
    if not text:
        raise InputError(f"the passphrase file {path} is empty")
    return text


@contextmanager
def household(args: argparse.Namespace) -> Iterator[Any]:
    """The family record in the database of --data-dir (or the environment's, as for `serve`), closed after use."""
    from diagnostician.cli.main import _store_url
    from diagnostician.consult.household import Household
    from diagnostician.consult.store import open_store

    store = open_store(_store_url(args), passphrase=_passphrase(args))
    try:
        yield Household(store)
    finally:
        store.close()


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=1, ensure_ascii=False))


def _emit(args: argparse.Namespace, view: Any, line: str) -> int:
    """Print the JSON view with --json, else the line for people."""
    if args.json:
        _print_json(view)
    else:
        print(line)
    return EXIT_OK


def _history(args: argparse.Namespace) -> list[Any]:
    from diagnostician.consult.household import history_item

    items = []
    for kind in ("condition", "medication", "allergy", "antecedent"):
        for text in getattr(args, kind) or ():
            items.append(history_item(kind, text))
    return items


def _member_line(m: Any) -> str:
    age = m.age_at()
    shown = f"{int(age)} y" if age >= 2 else f"{int(age * 12)} mo"  # completed years, as ages are said
    extra = ", pregnant" if m.pregnant else ""
    return f"{m.id}  {m.name} ({m.sex}, {shown}{extra})"


def cmd_family_add(args: argparse.Namespace) -> int:
    """Add a household member."""
    with household(args) as hh:
        m = hh.add_member(args.name, args.sex, birth_date=args.born, age=args.age, pregnant=args.pregnant, history=_history(args))
    return _emit(args, m.view(), f"added {_member_line(m)}")


def cmd_family_list(args: argparse.Namespace) -> int:
    """List household members."""
    with household(args) as hh:
        members = hh.members()
    if args.json:
        _print_json([m.view() for m in members])
    elif not members:
        print("no household members yet: add one with `diagnostician family add NAME --sex F --born YYYY-MM-DD`")
    for m in [] if args.json else members:
        print(_member_line(m))
    return EXIT_OK


def cmd_family_show(args: argparse.Namespace) -> int:
    """Show one member: profile, history, recent diary entries, consultations and open follow-ups."""
    with household(args) as hh:
        m = hh.member(args.member)
        diary = hh.diary(m.id)
        fups = hh.followups(member=m.id, status=None)
        consultations = hh.store.list(member_id=m.id)
    if args.json:
        _print_json({
            "member": m.view(),
            "diary": [e.view() for e in diary],
            "consultations": [{"id": c.id, "pack": c.pack_name, "created_at": c.created_at.isoformat()} for c in consultations],
            "followups": [f.view() for f in fups],
        })  # fmt: skip
        return EXIT_OK
    print(_member_line(m))
    print(f"  born {m.birth_date.isoformat()}" if m.birth_date else f"  age {m.age:g} on {m.age_on_date}")
    for h in m.history:
        print(f"  {h.kind}: {h.text}")
    if diary:
        print(f"  diary ({len(diary)} entries, latest 10):")
        for e in diary[-10:]:
            print(f"    {e.at.isoformat(timespec='minutes')}  {e.text()}")
    for c in consultations:
        print(f"  consultation {c.id} ({c.pack_name}) {c.created_at.isoformat(timespec='minutes')}")
    for f in fups:
        print(f"  follow-up {f.id}: {f.status}, due {f.due_at.isoformat(timespec='minutes')}")
    return EXIT_OK


def cmd_family_edit(args: argparse.Namespace) -> int:
    """Change a member's profile or history."""
    changes: dict[str, Any] = {}
    if args.new_name:
        changes["name"] = args.new_name
    if args.sex:
        changes["sex"] = args.sex
    if args.born:
        changes["birth_date"] = args.born
    if args.age is not None:
        changes["age"] = args.age
    if args.pregnant is not None:
        changes["pregnant"] = args.pregnant == "yes"
    with household(args) as hh:
        m = hh.member(args.member)
        if changes:
            m = hh.update_member(m.id, **changes)
        for item in _history(args):
            m = hh.add_history(m.id, item.kind, item.text)
        for spec in args.remove or ():
            kind, _, text = spec.partition(":")
            if not text:
                raise InputError(f"--remove takes KIND:TEXT, e.g. medication:ibuprofen, not {spec!r}")
            m = hh.remove_history(m.id, kind, text)
    return _emit(args, m.view(), f"updated {_member_line(m)}")


def cmd_family_delete(args: argparse.Namespace) -> int:
    """Delete a member and all their data."""
    if not args.yes:
        raise InputError("deleting a member deletes all their consultations, diary and follow-ups for good: add --yes to confirm")
    with household(args) as hh:
        m = hh.delete_member(args.member)
    print(f"deleted {m.name} and all their data")
    return EXIT_OK


def _at(args: argparse.Namespace) -> Any:
    from diagnostician.consult.household import parse_when

    return parse_when(args.at) if args.at else None


def cmd_family_record(args: argparse.Namespace) -> int:
    """Record a vital-sign reading in a member's diary."""
    with household(args) as hh:
        e = hh.record_vital(args.member, args.vital, " ".join(args.value), unit=args.unit, at=_at(args), note=args.note or "")
    flag = "  (outside the usual range)" if e.view().get("outside_normal") else ""
    return _emit(args, e.view(), f"recorded {e.text()} at {e.at.isoformat(timespec='minutes')}{flag}")


def cmd_family_symptom(args: argparse.Namespace) -> int:
    """Record a symptom (with its severity 0–10) in a member's diary."""
    with household(args) as hh:
        e = hh.record_symptom(args.member, " ".join(args.symptom), severity=args.severity, at=_at(args), note=args.note or "")
    return _emit(args, e.view(), f"recorded {e.text()} at {e.at.isoformat(timespec='minutes')}")


def cmd_family_diary(args: argparse.Namespace) -> int:
    """Print a member's diary."""
    with household(args) as hh:
        entries = hh.diary(args.member)
    if args.json:
        _print_json([e.view() for e in entries])
        return EXIT_OK
    if not entries:
        print("the diary is empty: add readings with `diagnostician family record NAME temperature 38.2`")
    for e in entries:
        view = e.view()
        flag = "  !" if view.get("outside_normal") else ""
        print(f"{e.at.isoformat(timespec='minutes')}  {e.text()}{flag}")
    return EXIT_OK


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-").replace("--", "-")


def cmd_family_plot(args: argparse.Namespace) -> int:
    """Write one SVG plot per diary series of a member."""
    from diagnostician.consult.plot import series_svg

    out = Path(args.out)
    with household(args) as hh:
        m = hh.member(args.member)
        series = hh.series(m.id)
    if not series:
        raise InputError(f"{m.name}'s diary has no readings or scored symptoms to plot")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for s in series:
            path = out / f"{_slug(m.name)}-{_slug(s.title)}.svg"
            path.write_text(series_svg(s), encoding="utf-8")
            print(path)
    except OSError as exc:
        raise InputError(f"cannot write plots to {out}: {exc}") from exc
    return EXIT_OK


def cmd_family_report(args: argparse.Namespace) -> int:
    """Write a member's health summary (HTML with plots, or Markdown by the file's suffix)."""
    from diagnostician.consult.record_report import member_report_html, member_report_markdown

    with household(args) as hh:
        m = hh.member(args.member)
        html = Path(args.out).suffix.lower() in (".html", ".htm")
        text = member_report_html(hh, m) if html else member_report_markdown(hh, m)
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {args.out}: {exc}") from exc
    print(args.out)
    return EXIT_OK


def cmd_family_export(args: argparse.Namespace) -> int:
    """Export one member's record, or the whole household's, as a FHIR R4 Bundle."""
    from diagnostician.consult.fhir_record import export_bundle

    with household(args) as hh:
        members = [hh.member(args.member)] if args.member else hh.members()
        bundle = export_bundle(hh, members)
    text = json.dumps(bundle, indent=1, ensure_ascii=False) + "\n"
    if args.out in (None, "-"):
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {args.out}: {exc}") from exc
    print(f"exported {len(members)} member(s) to {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_family_import(args: argparse.Namespace) -> int:
    """Import members from a FHIR R4 Bundle (as `family export` writes it)."""
    from diagnostician.consult.fhir_record import import_bundle

    try:
        raw = sys.stdin.buffer.read(MAX_IMPORT_BYTES + 1) if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {args.file}: {exc}") from exc
    if len(raw) > MAX_IMPORT_BYTES:
        raise InputError(f"{args.file} is larger than {MAX_IMPORT_BYTES // 1_000_000} MB")
    try:
        bundle = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{args.file} is not JSON: {exc}") from exc
    with household(args) as hh:
        added = import_bundle(hh, bundle)
    for m in added:
        print(f"imported {_member_line(m)}")
    return EXIT_OK


# ---------------------------------------------------------------- consultations and follow-ups


def run_member_chat(args: argparse.Namespace, conv_factory: Any) -> int:
    """A chat consultation for a member: record pre-filled, stored with its follow-up at the end."""
    from diagnostician.consult.household import now_utc
    from diagnostician.knowledge.schema import load_pack

    pack = load_pack(args.pack)
    with household(args) as hh:
        m = hh.member(args.member)
        age = m.age_at(now_utc())
        conv = conv_factory(pack, age=age, sex=m.sex, record=hh.record_mentions(m, pack))
        _chat_loop(conv, args)
        _store_result(hh, conv, m, args, None)
    return EXIT_OK


def _chat_loop(conv: Any, args: argparse.Namespace) -> None:
    from diagnostician.cli.talk import chat_loop

    chat_loop(conv, args.plain)


def _store_result(hh: Any, conv: Any, member: Any, args: argparse.Namespace, start: Any) -> None:
    if conv.c is None:
        print("Nothing was stored: the consultation did not get far enough for an assessment.", file=sys.stderr)
        return
    if start is None:
        stored, fu = hh.save(conv.c, member)
    else:
        stored, fu = hh.finish_followup(start, conv.c)
    who = f" for {member.name}" if member else ""
    print(f"Consultation {stored.id} saved{who}.", file=sys.stderr)
    if fu is not None:
        print(f"Follow-up {fu.id} due {fu.due_at.isoformat(timespec='minutes')}: run `diagnostician followup start {fu.id}` then.", file=sys.stderr)


def cmd_followup_list(args: argparse.Namespace) -> int:
    """List follow-ups: those due now (default), or all open ones with --all."""
    from diagnostician.consult.household import now_utc

    with household(args) as hh:
        fups = hh.followups(due_only=not args.all, member=args.member)
        names = {m.id: m.name for m in hh.members()}
    now = now_utc()
    if args.json:
        _print_json([{**f.view(now), "member": names.get(f.member_id or "")} for f in fups])
        return EXIT_OK
    if not fups:
        print("no follow-ups due" if not args.all else "no open follow-ups")
    for f in fups:
        state = "DUE" if f.due_at <= now else "planned"
        who = names.get(f.member_id or "", "anonymous")
        print(f"{f.id}  {state:7}  {f.due_at.isoformat(timespec='minutes')}  {who}  ({f.plan.get('level', '?')}: {f.plan.get('text', '')})")
    return EXIT_OK


def cmd_followup_start(args: argparse.Namespace, conv_factory: Any) -> int:
    """Run a follow-up consultation: from the previous state, asking what changed."""
    from diagnostician.consult.household import now_utc
    from diagnostician.knowledge.schema import load_pack

    with household(args) as hh:
        fu = hh.followup(args.id)
        pack = load_pack(args.pack or (fu.plan and hh.store.get_followup(fu.id).data.get("pack")) or "broad")
        start = hh.begin_followup(fu.id, pack, now_utc())
        when = start.previous.created_at.date().isoformat()
        who = start.member.name if start.member else "you"
        intro = (
            f"**Follow-up** of the consultation of {when} for {who} (triage then: {fu.plan.get('level', '?')}). "
            "I will ask whether the symptoms are still there and what has changed, then update the assessment."
        )
        conv = conv_factory(pack, age=start.age, sex=start.sex, found=dict(start.answers), intro=intro, ongoing=start.ongoing,
                            days=start.days, news_pending=True)  # fmt: skip
        _chat_loop(conv, args)
        _store_result(hh, conv, start.member, args, start)
    return EXIT_OK


def cmd_followup_cancel(args: argparse.Namespace) -> int:
    """Close a follow-up without a consultation."""
    with household(args) as hh:
        f = hh.cancel_followup(args.id)
    print(f"follow-up {f.id} cancelled")
    return EXIT_OK


def _common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--data-dir", help="folder of the database (default $DIAGNOSTICIAN_DATA_DIR or the per-user data folder)")
    p.add_argument("--passphrase-file", metavar="FILE", help="passphrase of an encrypted record (default $DIAGNOSTICIAN_PASSPHRASE); a plain record given one is encrypted")
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output")


def _history_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--condition", action="append", metavar="TEXT", help="a chronic condition (repeatable), e.g. asthma")
    p.add_argument("--medication", action="append", metavar="TEXT", help="a regular medication (repeatable)")
    p.add_argument("--allergy", action="append", metavar="TEXT", help="an allergy (repeatable)")
    p.add_argument("--antecedent", action="append", metavar="TEXT", help="another antecedent (repeatable), e.g. smoker")


def add_commands(sub: Any, chat_factory: Any) -> None:
    """Register `family` and `followup` on the main parser."""
    f = sub.add_parser("family", help="the family health record: members, diary of symptoms and vitals, plots, FHIR export/import")
    fs = f.add_subparsers(dest="family_command", required=True, metavar="COMMAND")
    a = fs.add_parser("add", help="add a household member")
    a.add_argument("name")
    a.add_argument("--sex", required=True, help="F or M")
    a.add_argument("--born", metavar="YYYY-MM-DD", help="birth date (or give --age)")
    a.add_argument("--age", help="age, e.g. 34 or '8 months' (when the birth date is not known)")
    a.add_argument("--pregnant", action="store_true", help="currently pregnant")
    _history_flags(a)
    _common(a)
    a.set_defaults(func=cmd_family_add)
    ls = fs.add_parser("list", help="list members")
    _common(ls)
    ls.set_defaults(func=cmd_family_list)
    sh = fs.add_parser("show", help="one member's profile, diary, consultations and follow-ups")
    sh.add_argument("member", help="name or id")
    _common(sh)
    sh.set_defaults(func=cmd_family_show)
    e = fs.add_parser("edit", help="change a member's profile or history")
    e.add_argument("member", help="name or id")
    e.add_argument("--name", dest="new_name", help="new name")
    e.add_argument("--sex")
    e.add_argument("--born", metavar="YYYY-MM-DD")
    e.add_argument("--age")
    e.add_argument("--pregnant", choices=["yes", "no"])
    e.add_argument("--remove", action="append", metavar="KIND:TEXT", help="take a history item off (repeatable)")
    _history_flags(e)
    _common(e)
    e.set_defaults(func=cmd_family_edit)
    d = fs.add_parser("delete", help="delete a member and all their data")
    d.add_argument("member", help="name or id")
    d.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    _common(d, json_flag=False)
    d.set_defaults(func=cmd_family_delete)
    r = fs.add_parser("record", help="record a vital sign: temperature, heart_rate, blood_pressure, blood_glucose, peak_flow, weight, respiratory_rate, oxygen_saturation")
    r.add_argument("member", help="name or id")
    r.add_argument("vital", help="which vital sign (aliases: temp, pulse, bp, glucose, pef, spo2, …)")
    r.add_argument("value", nargs="+", help="the reading, e.g. 38.4, '101.3 F', 120/80, '5.6 mmol/L'")
    r.add_argument("--unit", help="unit, when not written with the value")
    r.add_argument("--at", metavar="TIME", help="when it was measured (ISO 8601, default now)")
    r.add_argument("--note", help="a short note")
    _common(r)
    r.set_defaults(func=cmd_family_record)
    s = fs.add_parser("symptom", help="record a symptom with its severity 0–10")
    s.add_argument("member", help="name or id")
    s.add_argument("symptom", nargs="+", help="the symptom in a few words, e.g. cough")
    s.add_argument("--severity", help="0 (none) to 10 (worst)")
    s.add_argument("--at", metavar="TIME", help="when (ISO 8601, default now)")
    s.add_argument("--note", help="a short note")
    _common(s)
    s.set_defaults(func=cmd_family_symptom)
    dy = fs.add_parser("diary", help="print a member's diary")
    dy.add_argument("member", help="name or id")
    _common(dy)
    dy.set_defaults(func=cmd_family_diary)
    pl = fs.add_parser("plot", help="write an SVG plot of each diary series")
    pl.add_argument("member", help="name or id")
    pl.add_argument("--out", required=True, metavar="DIR", help="folder for the SVG files")
    _common(pl, json_flag=False)
    pl.set_defaults(func=cmd_family_plot)
    rp = fs.add_parser("report", help="a member's health summary with plots (.html, or .md)")
    rp.add_argument("member", help="name or id")
    rp.add_argument("--out", required=True, metavar="FILE")
    _common(rp, json_flag=False)
    rp.set_defaults(func=cmd_family_report)
    ex = fs.add_parser("export", help="export as a FHIR R4 Bundle (one member, or the whole household)")
    ex.add_argument("member", nargs="?", help="name or id (default: everyone)")
    ex.add_argument("--out", metavar="FILE", help="output file (default standard output)")
    _common(ex, json_flag=False)
    ex.set_defaults(func=cmd_family_export)
    im = fs.add_parser("import", help="import members from a FHIR R4 Bundle")
    im.add_argument("file", help="the bundle (JSON), or - for standard input")
    _common(im, json_flag=False)
    im.set_defaults(func=cmd_family_import)

    fu = sub.add_parser("followup", help="follow-ups of earlier consultations: list what is due, start one")
    fus = fu.add_subparsers(dest="followup_command", required=True, metavar="COMMAND")
    fl = fus.add_parser("list", help="follow-ups due now (--all: every open one)")
    fl.add_argument("--all", action="store_true", help="also those not yet due")
    fl.add_argument("--member", help="only this member's")
    _common(fl)
    fl.set_defaults(func=cmd_followup_list)
    st = fus.add_parser("start", help="run a follow-up consultation in plain words")
    st.add_argument("id", help="the follow-up's id")
    st.add_argument("--pack", help="knowledge pack (default: the one of the first consultation)")
    st.add_argument("--plain", action="store_true", help="plain text instead of formatted Markdown")
    _common(st, json_flag=False)
    st.set_defaults(func=lambda args: cmd_followup_start(args, chat_factory(args)))
    cc = fus.add_parser("cancel", help="close a follow-up without a consultation")
    cc.add_argument("id")
    _common(cc, json_flag=False)
    cc.set_defaults(func=cmd_followup_cancel)
