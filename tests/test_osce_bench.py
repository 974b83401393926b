"""The OSCE bench on AgentClinic-format cases written for the tests (no shared data needed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from test_cli import assert_input_error, assert_ok, run_cli

from diagnostician.bench.ddxplus import BenchConfig
from diagnostician.bench.osce import NOT_AVAILABLE, Measurement, consult_osce, exam_text, examine, load_osce, osce_summary
from diagnostician.bench.vignettes import consult_with_patient
from diagnostician.knowledge.schema import load_pack

CASE = {
    "OSCE_Examination": {
        "Objective_for_Doctor": "Assess the patient with painful urination.",
        "Patient_Actor": {
            "Demographics": "28-year-old female",
            "History": "Two days of burning when passing urine and needing to urinate often.",
            "Symptoms": {"Primary_Symptom": "Painful urination", "Secondary_Symptoms": ["Frequent urination", "Lower abdominal discomfort"]},
            "Past_Medical_History": "None.",
            "Social_History": "Non-smoker.",
            "Review_of_Systems": "Denies fever, vomiting or back pain.",
        },
        "Physical_Examination_Findings": {"Vital_Signs": {"Temperature": "36.8 C"}, "Abdominal_Examination": {"Suprapubic_Tenderness": "Mild"}},
        "Test_Results": {"Urinalysis": {"Nitrites": "Positive", "Leukocyte_Esterase": "Positive"}, "Urine_Culture": {"Findings": "E. coli > 100,000 CFU/mL"}},
        "Correct_Diagnosis": "Urinary tract infection",
    }
}


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    p = tmp_path / "osce.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def test_cases_load_with_flattened_exam_and_test_entries(tmp_path) -> None:
    (case,) = load_osce(_write(tmp_path, [CASE]))
    assert case.vignette.age == 28 and case.vignette.sex == "F" and case.vignette.opening.endswith("Painful urination")
    assert "Denies fever" in case.vignette.text and case.diagnosis == "Urinary tract infection"
    assert case.tests["Urine_Culture / Findings"].startswith("E. coli") and "Abdominal_Examination / Suprapubic_Tenderness" in case.exams


def test_measurement_answers_from_the_script_or_says_not_available() -> None:
    m = Measurement({"Imaging / Chest_CT / Findings": "Normal", "Blood_Tests / Acetylcholine_Receptor_Antibodies": "Present"})
    assert m.answer("chest CT") == "Imaging / Chest_CT / Findings: Normal"
    assert m.answer("MRI of the head") == NOT_AVAILABLE


def test_a_consultation_orders_tests_that_bear_on_the_differential_and_scores(tmp_path) -> None:
    pack = load_pack("broad")
    (case,) = load_osce(_write(tmp_path, [CASE]))
    row = consult_osce(pack, case, 20, random.Random(0))
    # History, one general examination, then tests: within the budget.
    assert row["ended"] and row["turns"] <= 20 and row["turns"] == row["turns_history"] + row["exams_ordered"] + row["tests_ordered"]
    assert row["exams_ordered"] >= 1
    assert any(t["text"] == "Examination: general physical examination." for t in row["transcript"])
    # Tests were ordered, and none bears on no condition of the differential at the time (mass > 0).
    assert row["orders"] and all(o["mass"] > 0 for o in row["orders"])
    assert any(t["role"] == "measurement" for t in row["transcript"])
    s = osce_summary(pack, [row])
    assert set(s) >= {"top1", "top5", "turns", "tests_ordered", "exams_ordered", "informative_share", "over_testing", "coverage"}
    assert s["coverage"] == 1.0 and s["top5"] == 1.0  # a urinary infection is in this pack's differential


def test_the_general_examination_enters_what_it_shows_where_the_history_left_it_open(tmp_path) -> None:
    pack = load_pack("broad")
    case_data = json.loads(json.dumps(CASE))
    case_data["OSCE_Examination"]["Patient_Actor"]["Review_of_Systems"] = "Denies vomiting or back pain."
    case_data["OSCE_Examination"]["Physical_Examination_Findings"] = {"Vital_Signs": {"Temperature": "39.2 C"}, "Skin": "Jaundice noted."}
    (case,) = load_osce(_write(tmp_path, [case_data]))
    assert exam_text(case) == "Vital Signs, Temperature: 39.2 C; Skin: Jaundice noted."
    _, c = consult_with_patient(pack, case.vignette, BenchConfig(pack=pack.name, max_questions=2), random.Random(0))
    before = dict(c.state.answered)
    entered = examine(c, exam_text(case))
    assert "jaundice: yes" in entered and ("fever: yes" in entered or "fever" in before)
    assert all(code.split(":")[0] not in before for code in entered)  # nothing the history answered is overwritten
    assert c.state.answered["jaundice"].value is True


def test_cli_osce_writes_transcripts_and_summary_and_refuses_bad_input(tmp_path) -> None:
    path = _write(tmp_path, [CASE])
    p = run_cli("bench", "osce", "--cases", str(path), "--out", str(tmp_path / "o"), "--json")
    assert_ok(p)
    summary = json.loads(p.stdout)
    assert summary["cases"] == 1 and summary["turn_budget"] == 20
    assert (tmp_path / "o" / "cases.jsonl").exists() and (tmp_path / "o" / "summary.md").exists()
    assert_input_error(run_cli("bench", "osce", "--cases", str(tmp_path / "none.jsonl")), "not found")
    assert_input_error(run_cli("bench", "osce", "--cases", str(path), "--turns", "2"), "--turns")
    bad = _write(tmp_path, [{"OSCE_Examination": {"Patient_Actor": {}}}])
    assert_input_error(run_cli("bench", "osce", "--cases", str(bad)), "not an AgentClinic OSCE case")


def test_a_chat_model_doctor_asks_examines_orders_and_answers(tmp_path) -> None:
    """The LLM doctor path on a scripted client: each kind of turn is routed to its side and scored."""
    from test_agents import ScriptedClient

    from diagnostician.bench.osce import llm_measurement, run_llm_osce

    (case,) = load_osce(_write(tmp_path, [CASE]))
    pack = load_pack("broad")
    client = ScriptedClient([
        "Does it burn when you pass urine?",
        "EXAM: abdominal examination",
        "TEST: urinalysis",
        "TEST: brain MRI",
        "FINAL ANSWER\nDifferential: 1. Urinary tract infection 2. Cystitis\nTriage: see a doctor\nTests: urine culture",
    ])  # fmt: skip
    row = run_llm_osce(client, pack, case, turns=20)
    assert row["ended"] and row["differential"][:1] == ["Urinary tract infection"] and row["triage"] == "see_doctor"
    assert row["turns_history"] == 1 and row["exams_ordered"] == 1 and row["tests_ordered"] == 2
    roles = [t["role"] for t in row["transcript"]]
    assert roles.count("measurement") == 3 and "Suprapubic_Tenderness" in row["transcript"][4]["text"]
    assert "Nitrites: Positive" in row["transcript"][6]["text"] and row["transcript"][8]["text"] == NOT_AVAILABLE
    assert row["over_testing"] == 1 and row["informative_share"] == 0.5  # urinalysis of {urinalysis, urine culture}
    summary = osce_summary(pack, [row])
    assert summary["top1"] == 1.0 and summary["tests_ordered"] == 2.0
    # A doctor that never answers is nudged once at the budget, then counted malformed, never crashing the run.
    stubborn = run_llm_osce(ScriptedClient(["Any fever?"] * 10), pack, case, turns=4)
    assert stubborn["malformed"] and not stubborn["ended"] and stubborn["turns"] <= 4
    # The measurement side played by a chat model reads the case record.
    played = ScriptedClient(["Mild suprapubic tenderness."])
    assert llm_measurement(played, case)("exam", "abdomen") == "Mild suprapubic tenderness."
    assert "Suprapubic_Tenderness" in played.calls[0][0]["content"]


def test_an_ordered_test_is_read_like_any_results_text(tmp_path) -> None:
    pack = load_pack("broad")
    (case,) = load_osce(_write(tmp_path, [CASE]))
    row = consult_osce(pack, case, 20, random.Random(0))
    # The urinalysis the script holds comes back, and its leukocyte esterase enters as a result of known accuracy.
    (urine,) = [o for o in row["orders"] if "Urinalysis / Leukocyte_Esterase" in o["script_keys"]]
    assert "result:urine-leukocyte-esterase-positive: positive" in urine["entered"]
    assert row["turns_history"] <= 8 and sum(bool(set(o["script_keys"]) & set(urine["script_keys"])) for o in row["orders"]) == 1  # never re-ordered


def test_the_first_question_is_an_open_one_answered_with_the_scripts_history(tmp_path) -> None:
    from diagnostician.bench.osce import OPEN_QUESTION

    (case,) = load_osce(_write(tmp_path, [CASE]))
    assert case.story.startswith("Two days of burning")
    row = consult_osce(load_pack("broad"), case, 20, random.Random(0), history=4, tests=1)
    texts = [t["text"] for t in row["transcript"]]
    assert texts[:3] == [case.vignette.opening, OPEN_QUESTION, case.story]
    assert row["turns_history"] <= 4 and row["tests_ordered"] <= 1
    assert row["turns"] == row["turns_history"] + row["exams_ordered"] + row["tests_ordered"]
