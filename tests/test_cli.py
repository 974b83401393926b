"""The `diagnostician` command run as a real subprocess: demo, consult (case file and interactive), save/resume,
and the one-line exit-2 contract for bad input.

Interactive tests do not hard-code the engine's question order: they replay the same answers in-process on a
Consultation to learn which question comes next and what kind of answer it takes, then feed the resulting script
to the CLI through stdin and compare what the CLI recorded with the in-process consultation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EN_DEV, needs_shared

from diagnostician.consult import Consultation
from diagnostician.dialogue.render import is_scale, reason
from diagnostician.engine import NOTICE, InquiryPolicy
from diagnostician.knowledge.schema import BINARY, CATEGORICAL, TRIAGE_LEVELS

CASES_DIR = Path(__file__).resolve().parents[1] / "src" / "diagnostician" / "cases"
SESSION_FORMAT = "diagnostician-consultation/1"
BAD_TOKEN = "definitely-not-an-answer"


# ---------------------------------------------------------------- helpers


def run_cli(*args: str, input: str | None = "", timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m diagnostician.cli.main ARGS` with stdin `input`; never inherits the terminal."""
    env = {**os.environ, "COLUMNS": "200", "LINES": "50", "PYTHONIOENCODING": "utf-8"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "diagnostician.cli.main", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def flat(text: str) -> str:
    """Whitespace-normalised text, so that terminal wrapping does not matter."""
    return " ".join(text.split())


def no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stdout + p.stderr, p.stdout[-2000:] + p.stderr[-4000:]


def assert_ok(p: subprocess.CompletedProcess) -> None:
    no_traceback(p)
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])


def assert_input_error(p: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, exactly one line `error: ...` on stderr, no traceback anywhere; returns the message."""
    no_traceback(p)
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: "), lines[0]
    for frag in fragments:
        assert frag.lower() in lines[0].lower(), (frag, lines[0])
    return lines[0]


def write_case(path: Path, **fields: Any) -> Path:
    data = {"format": "diagnostician-case/1", "title": "test case", "age": 40, "sex": "F", "complaints": {"E_53": True}}
    data.update(fields)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def shipped_case(name: str) -> dict[str, Any]:
    return json.loads((CASES_DIR / f"{name}.json").read_text(encoding="utf-8"))


def pick(f: Any, i: int) -> str:
    """A valid typed answer for finding f, varied with i: yes/no/?, a number on a scale, a label, menu numbers."""
    if f.kind == BINARY:
        return ["yes", "no", "?"][i % 3]
    if is_scale(f):
        return f.values[len(f.values) // 2]
    if f.kind == CATEGORICAL:
        return f.labels[min(1, len(f.labels) - 1)] if i % 2 == 0 else "?"
    # multi: menu numbers, or 'no' for none (its default value)
    return "2, 3" if i % 2 == 0 and len(f.values) >= 3 else "no"


def new_consultation(pack: Any, complaint: str = "E_53", age: float = 40, sex: str = "F") -> Consultation:
    return Consultation.begin(age, sex, {complaint: True}, pack=pack, policy=InquiryPolicy(max_questions=30))


def scripted(pack: Any, c: Consultation, n: int, start: int = 0, undo_after: int | None = None) -> list[str]:
    """Answer n more questions on c in-process; return the typed lines that do the same on the CLI."""
    lines: list[str] = []
    i = start
    target = c.questions_asked + n
    undone = False
    while c.questions_asked < target:
        q = c.next_question()
        assert q is not None, "the inquiry ended earlier than the test expected"
        text = pick(pack.finding(q.code), i)
        i += 1
        c.answer(q.code, text)
        lines.append(text)
        if undo_after is not None and not undone and c.questions_asked == undo_after:
            c.undo()
            lines.append("undo")
            undone = True
    return lines


def stdin(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def json_after_text(out: str) -> Any:
    """The JSON document in out, tolerating text printed before it (used where the text is checked elsewhere)."""
    m = re.search(r"^[{\[]", out, flags=re.M)
    assert m, out[:2000]
    return json.loads(out[m.start() :])


def check_assessment(a: dict[str, Any]) -> None:
    assert a["differential"], "the differential is empty"
    probs = [e["probability"] for e in a["differential"]]
    assert probs == sorted(probs, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probs) and sum(probs) <= 1.0 + 1e-6
    assert all({"code", "name", "icd10", "probability", "posterior", "severity", "triage"} <= set(e) for e in a["differential"])
    assert a["triage"]["level"] in TRIAGE_LEVELS
    assert a["triage"]["advice"]
    assert a["notice"] == NOTICE


TRIAGE_LINE = re.compile(r"Triage: (EMERGENCY|URGENT 24H|SEE DOCTOR|SELF CARE)\b")


# ---------------------------------------------------------------- demo


def test_demo_shows_whole_consultation() -> None:
    p = run_cli("demo")
    assert_ok(p)
    out = p.stdout
    questions = re.findall(r"^Q(\d+) \((?:diagnostic|review|\w+)\) .+", out, flags=re.M)
    assert len(questions) >= 3
    assert [int(n) for n in questions] == list(range(1, len(questions) + 1))
    assert len(re.findall(r"^\s+A: \S", out, flags=re.M)) == len(questions)
    assert len(re.findall(r"^\s+why: \S", out, flags=re.M)) == len(questions)
    top5 = re.findall(r"^\s+top-5: (.+)$", out, flags=re.M)
    assert len(top5) == len(questions)
    assert all(re.match(r".+ \d+%( \| |$)", line) for line in top5), top5  # "name NN% | name NN% | ..." (may wrap)
    assert TRIAGE_LINE.search(out)
    assert flat(NOTICE) in flat(out)
    # the shipped chest-pain patient comes with significant breathlessness, a danger sign
    assert "DANGER SIGN" in out
    assert re.search(r"Triage: (EMERGENCY|URGENT 24H)", out)


@pytest.mark.parametrize("name", sorted(p.stem for p in CASES_DIR.glob("*.json")))
def test_demo_every_shipped_case(name: str) -> None:
    p = run_cli("demo", "--case", name)
    assert_ok(p)
    assert TRIAGE_LINE.search(p.stdout)
    assert flat(NOTICE) in flat(p.stdout)


def test_demo_json_stdout_is_pure_json() -> None:
    """`--json` is machine-readable: stdout must hold nothing but the JSON document."""
    p = run_cli("demo", "--json")
    assert_ok(p)
    json.loads(p.stdout)


def test_demo_json_transcript_and_assessment() -> None:
    p = run_cli("demo", "--json")
    assert_ok(p)
    out = json_after_text(p.stdout)
    assert set(out) >= {"case", "transcript", "assessment"}
    steps = out["transcript"]
    assert steps and [s["n"] for s in steps] == list(range(1, len(steps) + 1))
    for s in steps:
        assert {"code", "question", "phase", "reason", "answer", "top5", "red_flags"} <= set(s)
        assert 1 <= len(s["top5"]) <= 5 and all(0.0 <= t["posterior"] <= 1.0 for t in s["top5"])
    assert len({s["code"] for s in steps}) == len(steps), "a question was asked twice"
    check_assessment(out["assessment"])
    assert out["assessment"]["questions_asked"] == len(steps)


def test_demo_unknown_case_is_input_error() -> None:
    msg = assert_input_error(run_cli("demo", "--case", "no_such_case"), "no_such_case")
    assert "chest_pain" in msg  # lists what is available


# ---------------------------------------------------------------- consult --case


def test_consult_case_text(tmp_path: Path) -> None:
    path = tmp_path / "runny.json"
    path.write_text(json.dumps(shipped_case("runny_nose")), encoding="utf-8")
    p = run_cli("consult", "--case", str(path))
    assert_ok(p)
    assert "Patient" in p.stdout
    assert re.search(r"^Q1 \(", p.stdout, flags=re.M)
    assert TRIAGE_LINE.search(p.stdout)
    assert flat(NOTICE) in flat(p.stdout)


def test_consult_case_json_follows_the_case(tmp_path: Path, pack) -> None:
    data = shipped_case("chest_pain")
    path = tmp_path / "chest.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    p = run_cli("consult", "--case", str(path), "--json")
    assert_ok(p)
    out = json.loads(p.stdout)  # consult --json keeps stdout pure JSON
    a = out["assessment"]
    check_assessment(a)
    assert {"differential", "triage", "notice"} <= set(a)
    # every answer in the transcript is the case's answer: listed findings as written, others absent/default
    for s in out["transcript"]:
        f = pack.finding(s["code"])
        if s["code"] in data["findings"]:
            want = data["findings"][s["code"]]
        elif f.kind == BINARY:
            want = False
        elif f.kind == CATEGORICAL:
            want = f.default
        else:
            want = [f.default]
        got = s["answer"]
        if isinstance(want, list):
            assert sorted(map(str, got)) == sorted(map(str, want)), s
        else:
            assert got == want, s
        assert s["code"] not in data["complaints"]
    assert a["questions_asked"] == len(out["transcript"])
    # E_14 (chest pain at rest) is in this case and is a danger sign: if it was asked, triage is emergency
    if any(s["code"] == "E_14" for s in out["transcript"]):
        assert a["triage"]["level"] == "emergency"


def test_consult_case_unlisted_unknown(tmp_path: Path) -> None:
    path = write_case(tmp_path / "c.json", findings={"E_91": True}, unlisted="unknown")
    p = run_cli("consult", "--case", str(path), "--json", "--max-questions", "8")
    assert_ok(p)
    out = json.loads(p.stdout)
    assert 1 <= len(out["transcript"]) <= 8
    for s in out["transcript"]:
        assert s["answer"] is (True if s["code"] == "E_91" else None), s


def test_consult_case_respects_max_questions(tmp_path: Path) -> None:
    path = tmp_path / "chest.json"
    path.write_text(json.dumps(shipped_case("chest_pain")), encoding="utf-8")
    out = json.loads(run_cli("consult", "--case", str(path), "--json", "--max-questions", "3").stdout)
    assert len(out["transcript"]) == 3
    assert out["assessment"]["questions_asked"] == 3
    assert "budget" in out["assessment"]["stop_reason"]


def _red_flag_params():
    from diagnostician.knowledge.schema import load_pack

    return [pytest.param(r.id, tuple(code for code, _ in r.when), r.level, id=r.id) for r in load_pack("ddxplus").red_flags]


@pytest.mark.parametrize("max_questions", ["1", "30"])
def test_chest_pain_at_rest_is_always_emergency(tmp_path: Path, max_questions: str) -> None:
    """A patient with chest pain at rest is triaged 'emergency', whatever else the case says and however short the inquiry."""
    runny = shipped_case("runny_nose")
    path = write_case(tmp_path / "c.json", age=26, sex="M", complaints={"E_14": True}, findings=runny["findings"])
    p = run_cli("consult", "--case", str(path), "--json", "--max-questions", max_questions)
    assert_ok(p)
    triage = json.loads(p.stdout)["assessment"]["triage"]
    assert triage["level"] == "emergency"
    assert "chest_pain_at_rest" in {r["id"] for r in triage["red_flags"]}


@pytest.mark.parametrize("flag_id,codes,level", _red_flag_params())
def test_every_red_flag_sets_triage_floor(tmp_path: Path, flag_id: str, codes: tuple[str, ...], level: str) -> None:
    """Each danger sign of the pack, present on arrival in an otherwise mild case, fixes triage at its level or more urgent."""
    runny = shipped_case("runny_nose")
    findings = {k: v for k, v in runny["findings"].items() if k not in codes}
    path = write_case(tmp_path / "c.json", age=26, sex="M", complaints={c: True for c in codes}, findings=findings)
    p = run_cli("consult", "--case", str(path), "--json", "--max-questions", "5")
    assert_ok(p)
    triage = json.loads(p.stdout)["assessment"]["triage"]
    assert flag_id in {r["id"] for r in triage["red_flags"]}
    assert TRIAGE_LEVELS.index(triage["level"]) <= TRIAGE_LEVELS.index(level), triage


# ---------------------------------------------------------------- interactive consult


def test_interactive_consult_commands(pack) -> None:
    c = new_consultation(pack)
    q1 = c.next_question()
    why_text = reason(pack, q1)
    lines = ["why", BAD_TOKEN] + scripted(pack, c, 5, undo_after=2) + ["quit"]
    p = run_cli("consult", "--age", "40", "--sex", "F", "--complaint", "E_53", input=stdin(lines))
    assert_ok(p)
    out = p.stdout
    assert flat(why_text) in flat(out), "'why' did not print the reason for the question"
    assert f"'{BAD_TOKEN}'" in out, "an invalid answer was not reported"
    assert "Took back:" in out
    assert "Stopped before the end of the inquiry" in out
    assert TRIAGE_LINE.search(out)
    assert flat(NOTICE) in flat(out)
    # Q1 was asked once, re-asked only by prompt (no crash); after the undo the question number goes back
    assert re.findall(r"^Q(\d+)\.", out, flags=re.M) == ["1", "2", "3", "2", "3", "4", "5", "6"]


def test_interactive_consult_json_matches_engine(pack) -> None:
    c = new_consultation(pack)
    lines = [BAD_TOKEN, "why"] + scripted(pack, c, 6, undo_after=3) + ["quit"]
    p = run_cli("consult", "--age", "40", "--sex", "F", "--complaint", "E_53", "--json", input=stdin(lines))
    assert_ok(p)
    out = json.loads(p.stdout)
    assert out["consultation"]["answers"] == c.to_dict()["answers"]
    assert out["consultation"]["answers"][0] == {"code": "E_53", "value": True}
    assert out["assessment"]["questions_asked"] == 6
    check_assessment(out["assessment"])


def test_interactive_answer_kinds_are_parsed(pack) -> None:
    """Typed yes/no/?, numbers and labels land as structured values of the right kind."""
    c = new_consultation(pack)
    lines = scripted(pack, c, 8) + ["quit"]
    p = run_cli("consult", "--age", "40", "--sex", "F", "--complaint", "E_53", "--json", input=stdin(lines))
    assert_ok(p)
    answers = json.loads(p.stdout)["consultation"]["answers"][1:]
    assert len(answers) == 8
    for a in answers:
        f = pack.finding(a["code"])
        v = a["value"]
        if v is None:
            continue
        if f.kind == BINARY:
            assert isinstance(v, bool)
        elif f.kind == CATEGORICAL:
            assert v in f.values
        else:
            assert isinstance(v, list) and v and set(v) <= set(f.values)


def test_interactive_eof_ends_cleanly(pack) -> None:
    c = new_consultation(pack)
    lines = scripted(pack, c, 3)  # no 'quit': stdin simply ends
    p = run_cli("consult", "--age", "40", "--sex", "F", "--complaint", "E_53", input=stdin(lines))
    assert_ok(p)
    assert "Stopped before the end of the inquiry" in p.stdout
    assert TRIAGE_LINE.search(p.stdout)
    assert flat(NOTICE) in flat(p.stdout)
    pj = run_cli("consult", "--age", "40", "--sex", "F", "--complaint", "E_53", "--json", input=stdin(scripted(pack, new_consultation(pack), 3)))
    assert_ok(pj)
    assert len(json.loads(pj.stdout)["consultation"]["answers"]) == 4


def test_interactive_undo_with_nothing_to_undo() -> None:
    p = run_cli("consult", "--age", "40", "--sex", "F", "--complaint", "E_53", input="undo\nquit\n")
    assert_ok(p)
    assert "nothing to undo" in p.stdout
    assert TRIAGE_LINE.search(p.stdout)


@pytest.mark.parametrize("stdin_text", ["", "40\n", "40\nF\n"])
def test_fully_interactive_eof_at_each_prompt(stdin_text: str) -> None:
    p = run_cli("consult", input=stdin_text)
    assert_ok(p)


def test_fully_interactive_start(pack) -> None:
    common = [code for code in pack.meta.get("common_complaints", []) if code in pack.finding_index]
    assert common
    c = new_consultation(pack, complaint=common[0])
    lines = ["150", "abc", "40", "X", "F", "1"] + scripted(pack, c, 2) + ["quit"]
    p = run_cli("consult", "--json", input=stdin(lines))
    assert_ok(p)
    out = json.loads(p.stdout)
    cons = out["consultation"]
    assert cons["age"] == 40 and cons["sex"] == "F" and cons["initial"] == 1
    assert cons["answers"] == c.to_dict()["answers"]
    # the invalid age and sex were refused and asked again (prompts go to stderr with --json)
    assert "age must lie between" in p.stderr
    assert "sex must be F or M" in p.stderr


def test_fully_interactive_complaint_search(pack) -> None:
    lines = ["40", "M", "zzqxqz", "999", "throat", "1", "quit"]
    p = run_cli("consult", "--json", input=stdin(lines))
    assert_ok(p)
    assert "Nothing matched" in p.stderr
    first = json.loads(p.stdout)["consultation"]["answers"][0]
    assert first["value"] is True
    assert "throat" in pack.finding(first["code"]).question.lower()


# ---------------------------------------------------------------- save / resume


def test_save_then_resume(tmp_path: Path, pack) -> None:
    save = tmp_path / "sessions" / "s.json"  # parent folder does not exist yet
    c = new_consultation(pack)
    lines = scripted(pack, c, 4) + ["quit"]
    p = run_cli("consult", "--age", "40", "--sex", "F", "--complaint", "E_53", "--save", str(save), input=stdin(lines))
    assert_ok(p)
    data = json.loads(save.read_text(encoding="utf-8"))
    assert data["format"] == SESSION_FORMAT
    assert data["answers"] == c.to_dict()["answers"] and len(data["answers"]) == 5
    assert data["initial"] == 1 and data["age"] == 40 and data["sex"] == "F"
    assert sorted(x.name for x in save.parent.iterdir()) == ["s.json"], "a temporary file was left behind"

    # resume and stop at once: same answers, same number of questions
    p = run_cli("consult", "--resume", str(save), "--json", input="quit\n")
    assert_ok(p)
    out = json.loads(p.stdout)
    assert out["consultation"]["answers"] == data["answers"]
    assert out["assessment"]["questions_asked"] == 4
    assert "Resumed consultation with 5 answers" in p.stderr

    # resume and answer one more: the resumed file itself is updated
    more = scripted(pack, c, 1, start=4)
    p = run_cli("consult", "--resume", str(save), input=stdin(more + ["quit"]))
    assert_ok(p)
    assert re.search(r"^Q5\.", p.stdout, flags=re.M), "the resumed consultation did not continue at question 5"
    again = json.loads(save.read_text(encoding="utf-8"))
    assert again["answers"] == c.to_dict()["answers"] and len(again["answers"]) == 6


def test_save_is_written_after_every_answer(tmp_path: Path, pack) -> None:
    save = tmp_path / "s.json"
    c = new_consultation(pack)
    lines = scripted(pack, c, 2)  # stdin ends without quit
    assert_ok(run_cli("consult", "--age", "40", "--sex", "F", "--complaint", "E_53", "--save", str(save), input=stdin(lines)))
    assert json.loads(save.read_text(encoding="utf-8"))["answers"] == c.to_dict()["answers"]


CORRUPT_SAVES = {
    "truncated": b'{"format": "diagnostician-consultation/1", "age": 40',
    "not_utf8": b"\xff\xfe\x00garbage",
    "list": b"[]",
    "other_format": b'{"format": "something-else/9", "age": 40, "sex": "F", "initial": 1, "answers": []}',
    "missing_answers": b'{"format": "diagnostician-consultation/1", "age": 40, "sex": "F", "initial": 1}',
    "unknown_code": b'{"format": "diagnostician-consultation/1", "age": 40, "sex": "F", "initial": 1, "answers": [{"code": "E_9999", "value": true}]}',
    "bad_value": b'{"format": "diagnostician-consultation/1", "age": 40, "sex": "F", "initial": 1, "answers": [{"code": "E_53", "value": "zz"}]}',
    "bad_age": b'{"format": "diagnostician-consultation/1", "age": 400, "sex": "F", "initial": 1, "answers": [{"code": "E_53", "value": true}]}',
    "answers_not_objects": b'{"format": "diagnostician-consultation/1", "age": 40, "sex": "F", "initial": 1, "answers": [1, 2]}',
}


@pytest.mark.parametrize("kind", sorted(CORRUPT_SAVES))
def test_resume_corrupted_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(CORRUPT_SAVES[kind])
    p = run_cli("consult", "--resume", str(path), input="yes\nquit\n")
    assert_input_error(p)
    assert path.read_bytes() == CORRUPT_SAVES[kind], "the corrupted save file was overwritten"
    assert [x.name for x in tmp_path.iterdir()] == ["s.json"], "a file was created beside the corrupted save"


def test_resume_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    assert_input_error(run_cli("consult", "--resume", str(path), input="quit\n"), "nope.json")
    assert not path.exists()


@pytest.mark.parametrize("where", ["directory", "under_a_file"])
def test_save_to_unwritable_path_is_input_error(tmp_path: Path, where: str) -> None:
    if where == "directory":
        target = tmp_path / "adir"
        target.mkdir()
    else:
        (tmp_path / "afile").write_text("x", encoding="utf-8")
        target = tmp_path / "afile" / "s.json"
    p = run_cli("consult", "--age", "40", "--sex", "F", "--complaint", "E_53", "--save", str(target), input="quit\n")
    assert_input_error(p)
    assert not [x for x in tmp_path.rglob("*.tmp")], "a temporary file was left behind"


# ---------------------------------------------------------------- bad input: exit 2, one line, no traceback


def _case_files(tmp_path: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    t = tmp_path
    files: dict[str, tuple[Path, tuple[str, ...]]] = {
        "unknown_finding": (write_case(t / "u.json", complaints={"E_9999": True}), ("E_9999",)),
        "unknown_finding_in_findings": (write_case(t / "u2.json", findings={"E_8888": True}), ("E_8888",)),
        "age_150": (write_case(t / "age.json", age=150), ("age", "150")),
        "age_negative": (write_case(t / "ageneg.json", age=-1), ("age",)),
        "age_text": (write_case(t / "agetxt.json", age="old"), ("age",)),
        "sex_bad": (write_case(t / "sex.json", sex="Q"), ("sex",)),
        "bad_answer_value": (write_case(t / "val.json", findings={"E_56": "99"}), ("99",)),
        "binary_answer_object": (write_case(t / "obj.json", complaints={"E_53": {"a": 1}}), ("E_53",)),
        "empty_complaints": (write_case(t / "empty.json", complaints={}), ("complaints",)),
        "bad_unlisted": (write_case(t / "unl.json", unlisted="sometimes"), ("unlisted",)),
        "other_format": (write_case(t / "fmt.json", format="diagnostician-case/99"), ("format",)),
    }
    nofield = {"format": "diagnostician-case/1", "sex": "F", "complaints": {"E_53": True}}
    (t / "noage.json").write_text(json.dumps(nofield), encoding="utf-8")
    files["missing_age"] = (t / "noage.json", ("age",))
    (t / "broken.json").write_text('{"age": 40, "sex": ', encoding="utf-8")
    files["broken_json"] = (t / "broken.json", ("broken.json",))
    (t / "list.json").write_text("[1, 2, 3]", encoding="utf-8")
    files["json_list"] = (t / "list.json", ("object",))
    (t / "bin.json").write_bytes(b"\xff\xfe\x00\x01")
    files["not_utf8"] = (t / "bin.json", ("bin.json",))
    big = {"format": "diagnostician-case/1", "age": 40, "sex": "F", "complaints": {"E_53": True}, "title": "x" * 1_100_000}
    (t / "big.json").write_text(json.dumps(big), encoding="utf-8")
    files["oversized"] = (t / "big.json", ("big.json",))
    files["missing"] = (t / "missing.json", ("missing.json",))
    files["directory"] = (t, ())
    return files


CASE_ERRORS = [
    "unknown_finding",
    "unknown_finding_in_findings",
    "age_150",
    "age_negative",
    "age_text",
    "sex_bad",
    "bad_answer_value",
    "binary_answer_object",
    "empty_complaints",
    "bad_unlisted",
    "other_format",
    "missing_age",
    "broken_json",
    "json_list",
    "not_utf8",
    "oversized",
    "missing",
    "directory",
]


JSON_TOO = {"unknown_finding", "age_150", "bad_answer_value", "broken_json", "json_list", "oversized", "missing"}


@pytest.mark.parametrize(
    "kind,json_flag", [(k, False) for k in CASE_ERRORS] + [(k, True) for k in CASE_ERRORS if k in JSON_TOO], ids=lambda v: {False: "text", True: "json"}.get(v, v) if isinstance(v, bool) else v
)
def test_bad_case_file(tmp_path: Path, kind: str, json_flag: bool) -> None:
    path, fragments = _case_files(tmp_path)[kind]
    args = ["consult", "--case", str(path)] + (["--json"] if json_flag else [])
    p = run_cli(*args)
    assert_input_error(p, *fragments)
    if json_flag:
        assert p.stdout == ""


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["frobnicate"], "frobnicate"),
        (["demo", "--bogus"], "--bogus"),
        (["consult", "--bogus-flag", "1"], "--bogus-flag"),
        ([], "command"),
        (["bench"], ""),
        (["pack"], ""),
        (["consult", "--age", "abc"], "--age"),
        (["demo", "--max-questions", "many"], "--max-questions"),
    ],
    ids=["subcommand", "demo_flag", "consult_flag", "no_command", "bench_no_sub", "pack_no_sub", "age_not_number", "max_q_not_int"],
)
def test_bad_arguments(args: list[str], fragment: str) -> None:
    assert_input_error(run_cli(*args), fragment)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--complaint", "E_9999"], "E_9999"),
        (["--complaint", "E_53", "--complaint", "E_9999"], "E_9999"),
        (["--age", "150"], "age"),
        (["--age", "-5"], "age"),
        (["--sex", "X"], "sex"),
    ],
    ids=["unknown_complaint", "second_complaint_unknown", "age_150", "age_negative", "sex_bad"],
)
def test_bad_interactive_arguments(args: list[str], fragment: str) -> None:
    base = {"--age": "40", "--sex": "F", "--complaint": "E_53"}
    given = set(args[::2])
    full = [x for k, v in base.items() if k not in given for x in (k, v)] + args
    assert_input_error(run_cli("consult", *full, input="yes\nquit\n"), fragment)


@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize(
    "cmd",
    [["demo"], ["consult", "--case", str(CASES_DIR / "runny_nose.json")], ["consult", "--age", "40", "--sex", "F", "--complaint", "E_53"]],
    ids=["demo", "consult_case", "consult_interactive"],
)
def test_max_questions_below_one(cmd: list[str], value: str) -> None:
    """A question budget below 1 is refused like the bench refuses it (exit 2), not silently run with no questions."""
    assert_input_error(run_cli(*cmd, "--max-questions", value, input="quit\n"), "--max-questions")


def test_bench_max_questions_zero(tmp_path: Path) -> None:
    csv = tmp_path / "x.csv"
    csv.write_text("AGE,SEX,PATHOLOGY,INITIAL_EVIDENCE,EVIDENCES,DIFFERENTIAL_DIAGNOSIS\n", encoding="utf-8")
    assert_input_error(run_cli("bench", "ddxplus", "--cases", str(csv), "--max-questions", "0"), "--max-questions")
    assert_input_error(run_cli("bench", "ddxplus", "--cases", str(csv), "--max-questions", "224"), "--max-questions")


def test_bench_missing_cases_file(tmp_path: Path) -> None:
    assert_input_error(run_cli("bench", "ddxplus", "--cases", str(tmp_path / "missing.csv"), "--quiet"), "missing.csv")


def test_bench_cases_is_a_directory(tmp_path: Path) -> None:
    assert_input_error(run_cli("bench", "ddxplus", "--cases", str(tmp_path), "--quiet"))


HEADER = "AGE,SEX,PATHOLOGY,INITIAL_EVIDENCE,EVIDENCES,DIFFERENTIAL_DIAGNOSIS\n"
GOOD_DIFF = "\"[['Pneumonia', 1.0]]\""
MALFORMED_CSV: dict[str, bytes] = {
    "wrong_columns": b"a,b,c\n1,2,3\n",
    "empty_file": b"",
    "unclosed_list": (HEADER + "40,M,Pneumonia,E_66,\"['E_66'\"," + GOOD_DIFF + "\n").encode(),
    "age_not_a_number": (HEADER + "abc,M,Pneumonia,E_66,\"['E_66']\"," + GOOD_DIFF + "\n").encode(),
    "unknown_pathology": (HEADER + "40,M,No such disease,E_66,\"['E_66']\"," + GOOD_DIFF + "\n").encode(),
    "unknown_evidence": (HEADER + "40,M,Pneumonia,E_66,\"['E_66', 'E_9999']\"," + GOOD_DIFF + "\n").encode(),
    "age_150": (HEADER + "150,M,Pneumonia,E_66,\"['E_66']\"," + GOOD_DIFF + "\n").encode(),
    "sex_bad": (HEADER + "40,X,Pneumonia,E_66,\"['E_66']\"," + GOOD_DIFF + "\n").encode(),
    "evidences_not_a_list": (HEADER + "40,M,Pneumonia,E_66,\"5\"," + GOOD_DIFF + "\n").encode(),
    "evidence_token_not_text": (HEADER + "40,M,Pneumonia,E_66,\"[5]\"," + GOOD_DIFF + "\n").encode(),
    "differential_entry_not_a_pair": (HEADER + "40,M,Pneumonia,E_66,\"['E_66']\",\"[1]\"\n").encode(),
    "differential_probability_text": (HEADER + "40,M,Pneumonia,E_66,\"['E_66']\",\"[['Pneumonia', 'x']]\"\n").encode(),
    "not_utf8": HEADER.encode() + b"40,M,Pneumonia,E_66,\"['E_66']\",\xff\xfe\n",
    "truncated_row": (HEADER + "40,M,Pneumonia,E_66\n").encode(),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED_CSV))
def test_bench_malformed_csv(tmp_path: Path, kind: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_bytes(MALFORMED_CSV[kind])
    p = run_cli("bench", "ddxplus", "--cases", str(csv), "--quiet", "--workers", "1")
    assert_input_error(p)


@needs_shared
def test_bench_out_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("x", encoding="utf-8")
    p = run_cli("bench", "ddxplus", "--cases", str(EN_DEV), "--limit", "3", "--out", str(target), "--workers", "1", "--quiet")
    assert_input_error(p)
    assert target.read_text(encoding="utf-8") == "x"


@needs_shared
def test_bench_limit_zero() -> None:
    assert_input_error(run_cli("bench", "ddxplus", "--cases", str(EN_DEV), "--limit", "0"), "--limit")


# ---------------------------------------------------------------- pack info, version


def test_pack_info_and_version() -> None:
    p = run_cli("pack", "info")
    assert_ok(p)
    info = json.loads(p.stdout)
    assert info["name"] == "ddxplus" and info["conditions"] == 49 and info["findings"] == 223 and info["results"] > 0
    v = run_cli("--version")
    assert_ok(v)
    assert v.stdout.startswith("diagnostician ")


def test_pack_build_without_data_is_input_error(tmp_path: Path) -> None:
    p = run_cli("pack", "build", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "out"))
    assert_input_error(p, "nodata")
    assert not (tmp_path / "out").exists()


def test_consult_case_writes_report_and_fhir(tmp_path) -> None:
    """--report (.md / .html by suffix) and --fhir write the exports of the finished consultation."""
    case = Path(__file__).resolve().parents[1] / "src" / "diagnostician" / "cases" / "child_cough.json"
    md, html, fhir = tmp_path / "r.md", tmp_path / "r.html", tmp_path / "b.json"
    p = run_cli("consult", "--case", str(case), "--report", str(md), "--fhir", str(fhir), "--json")
    assert_ok(p)
    assert md.read_text(encoding="utf-8").startswith("# Clinician report")
    assert json.loads(fhir.read_text(encoding="utf-8"))["resourceType"] == "Bundle"
    assert_ok(run_cli("consult", "--case", str(case), "--report", str(html)))
    assert html.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    bad = run_cli("consult", "--case", str(case), "--report", str(tmp_path / "missing" / "r.md"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.startswith("error:")


def test_consult_results_take_test_results_and_examination_findings(tmp_path) -> None:
    """--results reads results of known accuracy, examination findings the inquiry left open, and unknown tests."""
    case = Path(__file__).resolve().parents[1] / "src" / "diagnostician" / "cases" / "child_cough.json"
    p = run_cli("consult", "--case", str(case), "--max-questions", "1", "--no-review", "--results", "rapid flu test positive; on examination swollen glands in the neck; MRI of the knee normal")
    assert_ok(p)
    assert "Result entered:" in p.stdout and "Recorded, cannot interpret" in p.stdout
    assert "Examination finding entered:" in p.stdout and "lymph" in p.stdout.lower()


def test_output_folder_that_cannot_be_made(tmp_path: Path) -> None:
    """A bench --out under a plain file is a one-line error with exit 3 (files), never a traceback."""
    cases = tmp_path / "v.jsonl"
    cases.write_text(json.dumps({"case_description": "A 30-year-old woman has a runny nose.", "urgency_level": "sc", "correct_diagnosis": "Common cold"}) + "\n", encoding="utf-8")
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    p = run_cli("bench", "triage", "--cases", str(cases), "--out", str(blocker / "sub"), "--quiet")
    assert p.returncode == 3, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr and p.stderr.startswith("error:") and "sub" in p.stderr
