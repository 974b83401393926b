"""Vignette benchmarks with the deterministic vignette patient: loading, answers, resume, summaries, CLI."""

from __future__ import annotations

import json
from pathlib import Path

from diagnostician.bench.vignettes import VignettePatient, diagnosis_summary, load_vignettes, run_cases, triage_summary
from test_cli import assert_input_error, assert_ok, run_cli

AVEY = {
    "correct_diagnosis": "Influenza", "demographics": "30 year old Female", "chief_complaints": "Fever, Cough",
    "presentation": "Two days of high fever, dry cough and muscle aches all over.", "absent_findings": "No sore throat, No rash",
    "physical_history": "", "family_history": "-", "social_history": "",
}  # fmt: skip
SEMIGRAN = {
    "urgency_level": "em", "correct_diagnosis": "Myocardial infarction (heart attack)",
    "case_description": "Mr. Y is a 64-year-old Chinese male who presents with chest pain for 2 hours. The pain is crushing and "
    "spreads to his left arm; he is sweating and short of breath.",
}  # fmt: skip


def _write(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def test_loading_both_formats(tmp_path) -> None:
    (a,) = load_vignettes(_write(tmp_path, "avey.jsonl", [AVEY]))
    assert a.age == 30 and a.sex == "F" and a.opening.startswith("30 year old Female") and "Cough" in a.opening
    (s,) = load_vignettes(_write(tmp_path, "semigran.jsonl", [SEMIGRAN]))
    assert s.age == 64 and s.sex == "M" and s.urgency == "em" and s.opening.startswith("Mr. Y is")  # not cut after "Mr."


def test_the_patient_answers_from_what_the_vignette_says(tmp_path, pack) -> None:
    (v,) = load_vignettes(_write(tmp_path, "avey.jsonl", [AVEY]))
    patient = VignettePatient(pack, v)
    assert patient.answer("E_91") is True and patient.answer("E_201") is True
    assert patient.answer("E_97") is False  # denied
    assert patient.answer("E_45") is None  # not mentioned: "don't know", as SymptomCheck Bench's patient says
    assert VignettePatient(pack, v, "absent").answer("E_45") is False  # or absent, as in DDXPlus
    assert VignettePatient(pack, v, "absent").answer("E_97") is False and VignettePatient(pack, v, "absent").answer("E_91") is True


def test_runs_write_transcripts_resume_and_score(tmp_path, pack) -> None:
    path = _write(tmp_path, "semigran.jsonl", [SEMIGRAN, {**SEMIGRAN, "urgency_level": "sc", "case_description": "A 30-year-old woman has a runny nose."}])
    vignettes = load_vignettes(path)
    out = tmp_path / "out"
    first = run_cases(pack, vignettes, out)
    assert len((out / "cases.jsonl").read_text().splitlines()) == 2
    assert first[0]["transcript"][0]["role"] == "patient" and first[0]["triage"] == "emergency"  # crushing chest pain: a danger sign
    again = run_cases(pack, vignettes, out)  # resumes: nothing is redone or appended
    assert again == first and len((out / "cases.jsonl").read_text().splitlines()) == 2
    summary = triage_summary(first)
    assert summary["cases"] == 2 and summary["emergency_recall"] == 1.0
    assert {"accuracy", "under_triage", "over_triage", "emergency_recall"} <= set(summary)
    d = diagnosis_summary(pack, [{**first[0], "differential": ["Possible NSTEMI / STEMI"], "diagnosis": "Myocardial infarction (heart attack)"}])
    assert set(d) >= {"top1", "top3", "top5", "turns", "coverage"}
    d2 = diagnosis_summary(pack, [{**first[0], "differential": ["Pneumonia", "Acute bronchitis"], "diagnosis": "acute bronchitis"}])
    assert d2["top1"] == 0 and d2["top3"] == 1
    assert d2["decisions"] == [{"id": first[0]["id"], "gold": "acute bronchitis", "rank": 2, "matched": "Acute bronchitis", "rule": "exact", "detail": "acute bronchitis"}]


def test_cli_triage_and_vignettes(tmp_path) -> None:
    path = _write(tmp_path, "avey.jsonl", [AVEY])
    p = run_cli("bench", "vignettes", "--cases", str(path), "--out", str(tmp_path / "o"), "--json")
    assert_ok(p)
    assert json.loads(p.stdout)["cases"] == 1 and (tmp_path / "o" / "summary.md").exists()
    assert json.loads(p.stdout)["unmentioned"] == "unknown"  # the default: the patient knows only its vignette
    assert len((tmp_path / "o" / "decisions.jsonl").read_text().splitlines()) == 1
    # An adult vignette: the paediatric slice is empty, and said to be.
    assert json.loads(p.stdout)["pediatric"] == {"cases": 0}
    assert_input_error(run_cli("bench", "triage", "--cases", str(tmp_path / "missing.jsonl")), "not found")
    assert_input_error(run_cli("bench", "triage", "--cases", str(path), "--agent", "gpt"), "only the built-in engine")
    bad = _write(tmp_path, "bad.jsonl", [{"x": 1}])
    assert_input_error(run_cli("bench", "vignettes", "--cases", str(bad)), "not a vignette")
    # Repeated runs: each kept in its own folder, each metric's mean and spread reported (the engine is deterministic: SD 0).
    p = run_cli("bench", "triage", "--cases", str(_write(tmp_path, "sem.jsonl", [SEMIGRAN])), "--out", str(tmp_path / "rep"), "--repeats", "2")
    assert_ok(p)
    rep = json.loads((tmp_path / "rep" / "repeats.json").read_text())
    assert rep["repeats"] == 2 and rep["metrics"]["emergency_recall"] == {"mean": 1.0, "sd": 0.0, "runs": [1.0, 1.0]}
    assert (tmp_path / "rep" / "run1" / "cases.jsonl").exists() and (tmp_path / "rep" / "run2" / "summary.json").exists()
    assert_input_error(run_cli("bench", "triage", "--cases", str(path), "--repeats", "2"), "needs --out")


def test_cases_run_at_once_keep_their_order_and_resume(tmp_path) -> None:
    import threading
    import time

    from diagnostician.bench.jsonl import run_logged

    seen_threads = set()

    def slow(n: int) -> dict:
        seen_threads.add(threading.get_ident())
        time.sleep(0.05 * (5 - n % 5))  # later items finish first
        return {"id": str(n), "value": n * n}

    rows, new = run_logged(range(10), str, slow, tmp_path, workers=4)
    assert [r["value"] for r in rows] == [n * n for n in range(10)] and new == 10 and len(seen_threads) > 1
    assert len((tmp_path / "cases.jsonl").read_text().splitlines()) == 10
    again, new = run_logged(range(12), str, slow, tmp_path, workers=4)  # only the two new ones run
    assert new == 2 and [r["value"] for r in again] == [n * n for n in range(12)]


def test_workers_must_be_positive(tmp_path) -> None:
    path = _write(tmp_path, "avey.jsonl", [AVEY])
    assert_input_error(run_cli("bench", "vignettes", "--cases", str(path), "--workers", "0"), "--workers")


def test_two_runs_are_compared_case_by_case(tmp_path, pack) -> None:
    from diagnostician.bench.vignettes import compare_runs

    def rows(levels: list[str]) -> list[dict]:
        return [{"id": str(i), "urgency": "em", "triage": lvl} for i, lvl in enumerate(levels)]

    a = rows(["emergency"] * 9 + ["see_doctor"])  # 9 right
    b = rows(["see_doctor"] * 9 + ["emergency"])  # 1 right: A right where B is wrong 9 times, the reverse once
    out = compare_runs(pack, a, b, "triage")
    assert (out["b10"], out["b01"]) == (9, 1) and out["p_value"] == 22 / 1024 and out["method"] == "exact"
    for name, data in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    p = run_cli("bench", "compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert_ok(p)
    assert json.loads(p.stdout)["b10"] == 9
    assert_input_error(run_cli("bench", "compare", str(tmp_path / "a"), str(tmp_path / "nope")), "no cases.jsonl")


def test_the_engine_talks_to_a_patient_who_answers_in_free_text() -> None:
    """With `in_words` the engine asks in words and reads free-text answers, as the chat does (a played patient)."""
    import random

    from diagnostician.bench.ddxplus import BenchConfig
    from diagnostician.bench.vignettes import Vignette, consult_with_patient
    from diagnostician.knowledge.schema import load_pack

    asked: list[str] = []

    def patient(question: str) -> str:
        asked.append(question)
        return "yes, a dry one actually" if "cough" in question.lower() else "no, not that I noticed"

    v = Vignette("t:1", "30 year old Female. Sore throat", "Sore throat", 30.0, "F", "Strep throat")
    row, c = consult_with_patient(load_pack("broad"), v, BenchConfig(max_questions=6), random.Random(0), in_words=patient)
    assert c is not None and asked and all(q.endswith("?") for q in asked)
    assert any(t["text"].startswith("yes, a dry") for t in row["transcript"] if t["role"] == "patient")
    assert c.state.answered["cough"].value is True and row["differential"]


def test_an_llm_judge_decides_only_where_the_rules_find_no_match_and_is_logged(pack) -> None:
    from test_agents import ScriptedClient

    from diagnostician.bench.scoring import judge_verdict

    rows = [
        {"id": "a", "diagnosis": "Acute bronchitis", "differential": ["Acute bronchitis"], "turns": 3},  # the rules match: no judge call
        {"id": "b", "diagnosis": "Heart attack", "differential": ["Pneumonia", "Possible NSTEMI / STEMI"], "turns": 3},
        {"id": "c", "diagnosis": "Gout", "differential": ["Pneumonia"], "turns": 3},
    ]
    judge = ScriptedClient(["No.", "Yes", "no"])
    s = diagnosis_summary(pack, rows, judge=judge)
    assert len(judge.calls) == 3 and "Reference diagnosis: Heart attack" in judge.calls[0][0]["content"]
    assert s["top1"] == round(1 / 3, 4) and s["top3"] == round(2 / 3, 4) and s["judged"] == 2
    b = next(d for d in s["decisions"] if d["id"] == "b")
    assert b["rule"] == "llm-judge" and b["rank"] == 2 and [j["verdict"] for j in b["judge"]] == [False, True]
    assert judge_verdict("Yes, the same condition") is True and judge_verdict("no") is False and judge_verdict("maybe") is None
    assert judge_verdict("yes and no") is None
    failing = ScriptedClient([RuntimeError("judge down")])
    s2 = diagnosis_summary(pack, rows[2:], judge=failing)  # a failing judge leaves the rules' verdict, logged
    assert s2["top5"] == 0 and "error" in s2["decisions"][0]["judge"][0]


def test_elicited_key_findings_and_danger_sign_questions_are_measured(tmp_path, pack) -> None:
    path = _write(tmp_path, "avey.jsonl", [AVEY])
    (row,) = run_cases(pack, load_vignettes(path), None)
    assert row["key_findings"] > 0 and 0 <= row["elicited"] <= row["key_findings"] and isinstance(row["red_flag_asked"], bool)
    s = diagnosis_summary(pack, [row])
    assert 0 <= s["key_findings_elicited"] <= 1 and s["red_flag_questions"] in (0.0, 1.0)
