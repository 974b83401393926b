"""The family health record on real SQLite files: members, diary, consultations, follow-ups over days, encryption, kills."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from diagnostician.cli.main import main
from diagnostician.consult import Consultation
from diagnostician.consult.conversation import Conversation
from diagnostician.consult.crypto import RecordLockedError
from diagnostician.consult.household import Household, history_item, parse_when
from diagnostician.consult.store import LoggedAnswer, MemberNotFoundError, open_store
from diagnostician.engine.plan import course_flags
from diagnostician.errors import InputError
from diagnostician.knowledge.followup import load_followup
from diagnostician.knowledge.schema import load_pack

URTI = {"E_97": True, "E_201": True, "E_181": True}  # sore throat, cough, runny nose (DDXPlus pack)


def _open(path: Path, passphrase: str | None = None) -> Household:
    return Household(open_store(f"sqlite:///{path}", passphrase=passphrase))


@pytest.fixture()
def hh(tmp_path):
    h = _open(tmp_path / "record.sqlite3")
    yield h
    h.store.close()


def _finish(c: Consultation) -> Consultation:
    while (q := c.next_question()) is not None:
        c.answer(q.code, c.pack.finding(q.code).absent_value())
    return c


def test_members_are_checked_before_they_are_stored(hh) -> None:
    ana = hh.add_member("Ana", "female", birth_date="1990-05-02", history=[history_item("antecedent", "smoker")])
    sam = hh.add_member("Sam", "M", age="8 months")
    assert [m.name for m in hh.members()] == ["Ana", "Sam"]
    assert hh.member("ana").id == ana.id and hh.member(sam.id).sex == "M"
    assert 0.6 < sam.age_at() < 0.7 and ana.history[0].text == "smoker"
    bad = [
        dict(name="", sex="F", age=3),
        dict(name="Bo", sex="X", age=3),
        dict(name="Bo", sex="F"),  # no age or birth date
        dict(name="Bo", sex="F", birth_date="2090-01-01"),
        dict(name="Bo", sex="F", birth_date="14/03/2019"),
        dict(name="Bo", sex="F", age=130),
        dict(name="Bo", sex="M", age=30, pregnant=True),
        dict(name="ana", sex="F", age=30),  # the name is taken (case-insensitive)
    ]
    for kw in bad:
        with pytest.raises(InputError):
            hh.add_member(**kw)
    assert len(hh.members()) == 2
    with pytest.raises(InputError):
        history_item("hobby", "chess")
    with pytest.raises(MemberNotFoundError):
        hh.member("nobody")


def test_diary_converts_units_and_refuses_bad_readings(hh) -> None:
    sam = hh.add_member("Sam", "M", age=4)
    t0 = datetime(2026, 11, 20, 20, 0, tzinfo=timezone.utc)
    e = hh.record_vital("Sam", "temp", "101.3 F", at=t0)
    assert e.value == 38.5 and e.unit == "°C" and e.view()["outside_normal"] is True
    hh.record_vital("Sam", "bp", "100/65", at=t0 + timedelta(hours=1))
    hh.record_symptom("Sam", "Cough", severity="6", at=t0)
    hh.record_symptom("Sam", "cough", severity=4, at=t0 + timedelta(days=1))
    for args in (("temp", "52"), ("temp", "abc"), ("bp", "65/100"), ("glucose", "5", "kg"), ("height", "100")):
        with pytest.raises(InputError):
            hh.record_vital("Sam", *args)
    for sev in ("11", "-1", "high"):
        with pytest.raises(InputError):
            hh.record_symptom("Sam", "cough", severity=sev)
    for when in ("yesterday", "2026-13-01", "2999-01-01"):
        with pytest.raises(InputError):
            parse_when(when)
    entries = hh.diary(sam.id)
    assert [x.kind for x in entries] == ["vital", "symptom", "vital", "symptom"]  # ordered by when, not by typing
    titles = sorted(s.title for s in hh.series("Sam"))
    assert titles == ["Cough (severity)", "Diastolic blood pressure", "Systolic blood pressure", "Temperature"]


def test_consultation_for_a_member_confirms_the_record_instead_of_asking_again(hh) -> None:
    pack = load_pack("ddxplus")
    ana = hh.add_member("Ana", "F", birth_date="1990-05-02", history=[history_item("antecedent", "smoker")])
    record = hh.record_mentions(ana, pack)
    assert [m.code for m in record] == ["E_79"]  # "Do you smoke cigarettes?"
    conv = Conversation(pack, age=ana.age_at(), sex=ana.sex, record=record)
    conv.reply("")
    text = conv.reply("I have a sore throat and a runny nose")
    assert "Your family record says “smoker”" in text and "still right" in text
    conv.reply("yes")
    assert conv.c is not None and conv.c.state.answered["E_79"].value is True
    asked = []
    while conv.stage == "inquiry":
        asked.append(conv.c.next_question().code)
        conv.reply("no")
    assert "E_79" not in asked  # confirmed once, never asked again


def test_follow_up_moves_the_advice_with_the_course_of_the_illness(hh) -> None:
    pack = load_pack("ddxplus")
    ana = hh.add_member("Ana", "F", birth_date="1990-05-02")
    day0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    c = _finish(Consultation.begin(ana.age_at(day0), "F", {**URTI, "E_91": True}, pack=pack))
    first = c.assessment()
    assert first.triage.level != "emergency" and first.plan.recheck_hours == 72
    assert any("fever" in line.lower() for line in first.plan.change)
    stored, fu = hh.save(c, ana, now=day0)
    assert fu is not None and fu.due_at == day0 + timedelta(hours=72)
    assert hh.followups(due_only=True, now=day0 + timedelta(hours=71)) == []
    assert [f.id for f in hh.followups(due_only=True, now=day0 + timedelta(hours=73))] == [fu.id]

    # Four days later the fever is still there: the adult course rule (3 days) fires.
    day4 = day0 + timedelta(days=4)
    start = hh.begin_followup(fu.id, pack, now=day4)
    assert set(start.ongoing) >= {"E_91", "E_97"} and start.days["E_91"] == pytest.approx(4.0)
    conv = Conversation(pack, age=start.age, sex=start.sex, found=dict(start.answers), intro="Follow-up", ongoing=start.ongoing,
                        days=start.days, news_pending=True)  # fmt: skip
    text = conv.reply("")
    assert "Is it still the case?" in text
    for code in start.ongoing:
        text = conv.reply("yes" if code == "E_91" else "no")
    assert "anything new" in text.lower()
    text = conv.reply("nothing new")
    assert conv.c is not None and [r.id for r in conv.c.course] == ["course-fever-adult-3d"]
    assert "A fever that has lasted 3 days or more" in text  # shown as a danger sign at once
    while conv.stage == "inquiry":
        conv.reply("no")
    later = conv.c.assessment()
    assert later.triage.rank <= 2 and any(r.id == "course-fever-adult-3d" for r in later.triage.red_flags)
    stored2, fu2 = hh.finish_followup(start, conv.c, now=day4)
    assert hh.followup(fu.id).status == "done" and hh.followup(fu.id).next_consultation_id == stored2.id
    assert fu2 is not None and fu2.due_at == day4 + timedelta(hours=72)
    # The symptom's first report is kept: the next follow-up counts from day 0, not from day 4.
    assert hh.begin_followup(fu2.id, pack, now=day4 + timedelta(days=3)).days["E_91"] == pytest.approx(7.0)
    assert Consultation.from_dict(hh.store.get(stored2.id).data, pack).course == conv.c.course  # the floor survives a reload


def test_course_rules_depend_on_age_and_duration() -> None:
    pack = load_pack("broad")
    kn = load_followup()
    child = Consultation.begin(2, "M", {"fever": True}, pack=pack)
    adult = Consultation.begin(30, "M", {"fever": True}, pack=pack)
    assert course_flags(pack, child.state, {"fever": 4}, kn) == ()
    assert [r.id for r in course_flags(pack, child.state, {"fever": 5}, kn)] == ["course-fever-child-5d"]
    assert [r.id for r in course_flags(pack, adult.state, {"fever": 3.2}, kn)] == ["course-fever-adult-3d"]
    assert course_flags(pack, adult.state, {"fever": 2.9}, kn) == ()


def test_deleting_a_member_deletes_all_their_data(tmp_path) -> None:
    path = tmp_path / "r.sqlite3"
    hh = _open(path)
    try:
        ana = hh.add_member("Ana", "F", age=36)
        bo = hh.add_member("Bo", "M", age=40)
        hh.record_vital("Ana", "weight", "62 kg")
        c = _finish(Consultation.begin(36, "F", URTI, pack="ddxplus"))
        hh.save(c, ana)
        hh.save(_finish(Consultation.begin(40, "M", URTI, pack="ddxplus")), bo)
        hh.delete_member("Ana")
        with pytest.raises(MemberNotFoundError):
            hh.member(ana.id)
    finally:
        hh.store.close()
    with sqlite3.connect(path) as db:
        for table in ("diary", "followups", "consultations", "answers", "audit"):
            rows = db.execute(f"SELECT * FROM {table}").fetchall()
            assert all(ana.id not in str(r) for r in rows), table
        assert db.execute("SELECT COUNT(*) FROM consultations").fetchone()[0] == 1  # Bo's stays
        assert db.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 1


def test_encryption_at_rest_with_a_passphrase(tmp_path) -> None:
    path = tmp_path / "r.sqlite3"
    hh = _open(path)
    hh.add_member("Zelda Plaintext", "F", age=33, history=[history_item("condition", "asthma")])
    hh.store.close()
    assert b"Zelda Plaintext" in path.read_bytes() or b"Zelda Plaintext" in (tmp_path / "r.sqlite3-wal").read_bytes()

    hh = _open(path, passphrase="correct horse")  # a plain record given a passphrase is encrypted then and there
    assert hh.store.encrypted
    hh.record_vital("Zelda Plaintext", "temp", "38.2")
    c = _finish(Consultation.begin(33, "F", URTI, pack="ddxplus"))
    stored, _ = hh.save(c, hh.member("Zelda Plaintext"))
    hh.store.save_answer(stored.id, 0, c.to_dict(), LoggedAnswer("E_91@0", "E_91", True, {"reply": "asthma noted"}))
    hh.store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")  # drop freed pages that may still hold the old plain rows
        for table, col in (("members", "data"), ("diary", "data"), ("consultations", "data"), ("followups", "data"), ("answers", "result")):
            values = [r[0] for r in db.execute(f"SELECT {col} FROM {table}")]
            assert values and all(v.startswith("enc1:") for v in values), table
    assert b"Zelda" not in path.read_bytes() and b"asthma" not in path.read_bytes()

    with pytest.raises(RecordLockedError, match="encrypted"):
        _open(path)
    with pytest.raises(RecordLockedError, match="wrong passphrase"):
        _open(path, passphrase="wrong")
    hh = _open(path, passphrase="correct horse")
    try:
        (m,) = hh.members()
        assert m.name == "Zelda Plaintext" and m.history[0].text == "asthma" and hh.diary(m.id)[0].value == 38.2
    finally:
        hh.store.close()


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta, timezone
    from diagnostician.consult.household import Household
    from diagnostician.consult.store import open_store
    hh = Household(open_store("sqlite:///" + sys.argv[1]))
    m = hh.add_member("Kim", "F", age=30)
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(100000):
        e = hh.record_vital(m.id, "heart_rate", str(60 + i % 40), at=t + timedelta(minutes=i))
        print("ACK", e.id, flush=True)
    """
)


def test_a_writer_killed_mid_write_loses_nothing_it_acknowledged(tmp_path) -> None:
    path = tmp_path / "r.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acked = []
    assert proc.stdout is not None
    for line in proc.stdout:
        acked.append(line.split()[1])
        if len(acked) >= 150:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    acked += [line.split()[1] for line in proc.stdout if line.startswith("ACK")]  # acknowledged before the kill landed
    hh = _open(path)
    try:
        assert hh.store._read("PRAGMA integrity_check", ())[0][0] == "ok"
        stored = {e.id for e in hh.diary("Kim")}
        assert set(acked) <= stored and len(stored) - len(acked) <= 1  # at most the write in flight, committed but not yet printed
        hh.record_vital("Kim", "heart_rate", "70")  # the file still takes writes
    finally:
        hh.store.close()


def _cli(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return int(done.value.code or 0)


def test_cli_household_flow_and_clear_errors(tmp_path, capsys, monkeypatch) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert _cli("family", "add", "Mia", "--sex", "F", "--born", "2022-02-01", "--condition", "eczema", *data) == 0
    assert _cli("family", "record", "Mia", "temperature", "38.9", "--at", "2026-11-24T21:30", *data) == 0
    assert _cli("family", "symptom", "Mia", "cough", "--severity", "3", *data) == 0
    capsys.readouterr()
    for argv in (
        ("family", "record", "Mia", "temperature", "389"),
        ("family", "record", "Mia", "temperature", "38", "--at", "24/11/2026"),
        ("family", "record", "Nobody", "temperature", "38"),
        ("family", "add", "Leo", "--sex", "M", "--born", "2031-01-01"),
        ("family", "symptom", "Mia", "cough", "--severity", "12"),
        ("family", "delete", "Mia"),  # needs --yes
        ("followup", "start", "nope"),
    ):
        assert _cli(*argv, *data) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert _cli("family", "diary", "Mia", "--json", *data) == 0
    import json

    diary = json.loads(capsys.readouterr().out)
    assert [d["text"] for d in diary] == ["38.9 °C", "cough: severity 3/10"]
    assert _cli("family", "plot", "Mia", "--out", str(tmp_path / "plots"), *data) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["mia-cough-severity.svg", "mia-temperature.svg"]
    assert _cli("family", "report", "Mia", "--out", str(tmp_path / "mia.html"), *data) == 0
    assert (tmp_path / "mia.html").read_text().count("<svg") == 2
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("I have a sore throat and a runny nose\n" + "no\n" * 40))
    assert _cli("chat", "--member", "Mia", "--pack", "ddxplus", "--plain", *data) == 0
    out, err = capsys.readouterr()
    assert "Plan:" in out and "saved for Mia" in err
    assert _cli("followup", "list", "--all", "--json", *data) == 0
    fups = json.loads(capsys.readouterr().out)
    if fups:  # none when the assessment was an emergency (no home re-check)
        assert fups[0]["member"] == "Mia" and fups[0]["status"] == "open"
    assert _cli("family", "delete", "Mia", "--yes", *data) == 0
    assert "deleted Mia" in capsys.readouterr().out
    assert _cli("family", "list", "--json", *data) == 0
    assert json.loads(capsys.readouterr().out) == []
