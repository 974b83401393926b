"""A chat model as the doctor on the vignette benches: final-answer parsing, the patient's words, the loop (scripted client)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostician.bench.agents import DOCTOR_PROMPT, FINAL_NUDGE, NOT_SURE, answer_in_words, parse_final_answer, run_llm_agent
from diagnostician.bench.vignettes import VignettePatient, load_vignettes, run_cases
from diagnostician.dialogue.llm import LLMUnavailable
from test_cli import assert_input_error, run_cli

AVEY = {
    "correct_diagnosis": "Influenza", "demographics": "30 year old Female", "chief_complaints": "Fever, Cough",
    "presentation": "Two days of high fever, dry cough and muscle aches all over.", "absent_findings": "No sore throat, No rash",
    "physical_history": "", "family_history": "-", "social_history": "",
}  # fmt: skip

CLEAN = """FINAL ANSWER
Differential: 1. Influenza 2. COVID-19 3. Common cold
Triage: see a doctor
Tests: Rapid influenza test, COVID-19 PCR"""


@pytest.fixture
def vignette(tmp_path: Path):
    p = tmp_path / "avey.jsonl"
    p.write_text(json.dumps(AVEY) + "\n", encoding="utf-8")
    (v,) = load_vignettes(p)
    return v


class ScriptedClient:
    """Answers each chat call with the next scripted reply; an exception in the script is raised instead."""

    def __init__(self, replies: list[object]) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []

    def chat(self, messages, **kw) -> str:
        self.calls.append([dict(m) for m in messages])
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- parsing


def test_prompt_states_the_format() -> None:
    assert "ONE" in DOCTOR_PROMPT and "FINAL ANSWER" in DOCTOR_PROMPT
    for key in ("Differential:", "Triage:", "Tests:", "self-care", "urgent within 24 hours"):
        assert key in DOCTOR_PROMPT


def test_clean_answer() -> None:
    fa = parse_final_answer(CLEAN)
    assert fa is not None and not fa.malformed
    assert fa.differential == ["Influenza", "COVID-19", "Common cold"]
    assert fa.triage == "see_doctor" and fa.tests == ["Rapid influenza test", "COVID-19 PCR"]


@pytest.mark.parametrize(
    ("reply", "differential", "triage", "tests"),
    [
        # numbered, one per line, markdown bold keys, percentages
        ("**Final answer**\n**Differential:**\n1. Myocardial infarction (70%)\n2) Unstable angina\n3. Pulmonary embolism\n"
         "**Triage:** Emergency\n**Tests:**\n- ECG\n- Troponin", ["Myocardial infarction", "Unstable angina", "Pulmonary embolism"], "emergency", ["ECG", "Troponin"]),
        # bulleted, lower-case keys, urgent
        ("final answer\ndifferential:\n- Pneumonia\n* Bronchitis\n• Asthma\ntriage: urgent within 24 hours\ntests: chest X-ray; CBC",
         ["Pneumonia", "Bronchitis", "Asthma"], "urgent_24h", ["chest X-ray", "CBC"]),
        # comma list, self-care, no tests
        ("FINAL ANSWER\nDifferential: Common cold, Allergic rhinitis (hay fever, itchy eyes)\nTriage: Self-care\nTests: none",
         ["Common cold", "Allergic rhinitis (hay fever, itchy eyes)"], "self_care", []),
        # more than five: cut at five
        ("FINAL ANSWER\nDifferential: 1. A 2. B 3. C 4. D 5. E 6. F\nTriage: see a doctor\nTests: none", ["A", "B", "C", "D", "E"], "see_doctor", []),
    ],
)  # fmt: skip
def test_lenient_lists(reply, differential, triage, tests) -> None:
    fa = parse_final_answer(reply)
    assert fa is not None and not fa.malformed, fa
    assert (fa.differential, fa.triage, fa.tests) == (differential, triage, tests)


def test_json_answer() -> None:
    reply = 'Here it is:\n```json\n{"Differential": ["Migraine", "Tension headache"], "TRIAGE": "see a doctor", "tests": []}\n```'
    fa = parse_final_answer(reply)
    assert fa is not None and not fa.malformed
    assert fa.differential == ["Migraine", "Tension headache"] and fa.triage == "see_doctor" and fa.tests == []


def test_missing_parts_are_tolerated_and_flagged() -> None:
    fa = parse_final_answer("FINAL ANSWER\nDifferential: 1. Influenza 2. Common cold\nTests: none")
    assert fa is not None and fa.malformed and fa.triage is None and fa.differential == ["Influenza", "Common cold"]
    # the template copied as it is names every level: no triage
    fa = parse_final_answer("FINAL ANSWER\nDifferential: 1. Gastroenteritis\nTriage: emergency | urgent within 24 hours | see a doctor | self-care\nTests: none")
    assert fa is not None and fa.malformed and fa.triage is None
    # keys without the marker: read, but off the format
    fa = parse_final_answer("Differential: Influenza\nTriage: self-care\nTests: none")
    assert fa is not None and fa.malformed and fa.differential == ["Influenza"]
    # the marker and nothing usable
    fa = parse_final_answer("Final answer: I think you will be fine!!!")
    assert fa is not None and fa.malformed and fa.differential == [] and fa.triage is None


@pytest.mark.parametrize("reply", ["Do you have a fever?", "How long have you had the cough? Is it dry?", "", "   ", "{not json at all"])
def test_questions_and_garbage_are_not_final(reply) -> None:
    assert parse_final_answer(reply) is None


# ---------------------------------------------------------------------------------------------- the patient


def test_answers_in_words(pack, vignette) -> None:
    patient = VignettePatient(pack, vignette)
    assert answer_in_words(pack, patient, "Do you have a fever?").lower().startswith("yes")
    assert answer_in_words(pack, patient, "Have you noticed any rash on your skin?").lower().startswith("no")
    assert answer_in_words(pack, patient, "What is your favourite colour?") == NOT_SURE
    assert answer_in_words(pack, patient, "") == NOT_SURE
    both = answer_in_words(pack, patient, "Any fever or sore throat?").lower()
    assert both.startswith("yes to fever") and "no to sore throat" in both
    # the patient never names the diagnosis
    assert "influenza" not in answer_in_words(pack, patient, "What do you think you have?").lower()


# ---------------------------------------------------------------------------------------------- the loop


def test_consultation_until_the_final_answer(pack, vignette) -> None:
    client = ScriptedClient(["Do you have a fever?", "Any rash?", CLEAN])
    row = run_llm_agent(client, pack, vignette)
    assert row["ended"] and row["error"] is None and not row["malformed"] and row["turns"] == 2
    assert row["differential"][0] == "Influenza" and row["triage"] == "see_doctor"
    assert {"id", "diagnosis", "urgency", "ended", "transcript", "differential", "triage", "turns"} <= set(row)
    roles = [t["role"] for t in row["transcript"]]
    assert roles == ["patient", "agent", "patient", "agent", "patient", "agent"]
    assert row["transcript"][0]["text"] == vignette.opening and row["transcript"][2]["text"].startswith("Yes")
    first = client.calls[0]
    assert first[0] == {"role": "system", "content": DOCTOR_PROMPT} and first[1] == {"role": "user", "content": vignette.opening}
    assert [m["role"] for m in client.calls[-1]] == ["system", "user", "assistant", "user", "assistant", "user"]
    json.dumps(row)  # a JSONL line


def test_final_answer_is_asked_for_once_at_max_turns(pack, vignette) -> None:
    client = ScriptedClient(["Fever?", "Cough?", "Rash?", CLEAN])
    row = run_llm_agent(client, pack, vignette, max_turns=3)
    assert row["ended"] and row["turns"] == 3 and client.calls[-1][-1]["content"] == FINAL_NUDGE
    # still no answer after the nudge: stop, flagged
    client = ScriptedClient(["Fever?", "Cough?", "And what about headaches?"])
    row = run_llm_agent(client, pack, vignette, max_turns=2)
    assert not row["ended"] and row["malformed"] and row["differential"] == [] and not client.replies
    assert sum(t["text"] == FINAL_NUDGE for t in row["transcript"]) == 1


def test_server_failure_mid_run_is_a_row(pack, vignette) -> None:
    client = ScriptedClient(["Do you have a fever?", LLMUnavailable("LLM server at http://x/v1 is down or unreachable")])
    row = run_llm_agent(client, pack, vignette)
    assert row["error"] and "down or unreachable" in row["error"] and not row["ended"] and row["turns"] == 1
    assert len(row["transcript"]) == 3


def test_run_cases_takes_the_agent_and_redoes_failed_rows(tmp_path, pack, vignette) -> None:
    out = tmp_path / "out"
    failing = ScriptedClient([LLMUnavailable("down")])
    rows = run_cases(pack, [vignette], out, consult=lambda v: run_llm_agent(failing, pack, v))
    assert rows[0]["error"] == "down"
    working = ScriptedClient([CLEAN])
    rows = run_cases(pack, [vignette], out, consult=lambda v: run_llm_agent(working, pack, v))
    assert rows[0]["ended"] and rows[0]["error"] is None
    again = run_cases(pack, [vignette], out, consult=lambda v: pytest.fail("resumed rows are not redone"))
    assert again == rows


def test_cli_agents(tmp_path, monkeypatch) -> None:
    path = tmp_path / "avey.jsonl"
    path.write_text(json.dumps(AVEY) + "\n", encoding="utf-8")
    for var in ("CONFIG", "BASE_URL", "MODEL", "API_KEY", "TIMEOUT", "RETRIES"):
        monkeypatch.delenv("DIAGNOSTICIAN_LLM_" + var, raising=False)
    assert_input_error(run_cli("bench", "vignettes", "--cases", str(path), "--agent", "openai"), "needs a server")
    assert_input_error(run_cli("bench", "triage", "--cases", str(path), "--agent", "gpt"), "unknown agent", "openai")


# ---------------------------------------------------------------------------------------------- a played patient


def test_leak_check(pack, vignette) -> None:
    from diagnostician.bench.agents import leak_check

    assert leak_check(pack, vignette, "I've had a fever and a dry cough for two days.") == []
    assert any("names the diagnosis" in f for f in leak_check(pack, vignette, "I think it's influenza, honestly."))
    assert any("Pneumonia" in f for f in leak_check(pack, vignette, "Could this be pneumonia?"))
    assert any("bronchitis" in f for f in leak_check(pack, vignette, "My friend had bronchitis once."))


def test_played_patient_turns_are_leak_checked(pack, vignette) -> None:
    from diagnostician.bench.agents import llm_patient

    patient_client = ScriptedClient(["Yes, a high fever.", "It's influenza, I'm sure."])
    answer = llm_patient(patient_client, vignette)
    doctor = ScriptedClient(["Do you have a fever?", "Any idea what it is?", CLEAN])
    row = run_llm_agent(doctor, pack, vignette, patient_answer=answer)
    assert row["ended"] and row["transcript"][2]["text"] == "Yes, a high fever."
    assert len(row["leaks"]) == 1 and "names the diagnosis" in row["leaks"][0]["flags"][0]
    story = patient_client.calls[0][0]["content"]
    assert "Two days of high fever" in story and "Never name a diagnosis" in story  # the patient knows its story and the rules


def test_cli_played_patient_needs_a_server(tmp_path) -> None:
    # The engine may face a played patient too (it asks in words); without a configured server that is a one-line error.
    path = tmp_path / "avey.jsonl"
    path.write_text(json.dumps(AVEY) + "\n", encoding="utf-8")
    assert_input_error(run_cli("bench", "vignettes", "--cases", str(path), "--patient", "llm"), "needs a server")
    assert_input_error(run_cli("bench", "vignettes", "--cases", str(path), "--patient", "actor"), "deterministic")


def test_a_chat_model_consults_a_ddxplus_record_in_free_text() -> None:
    """The structured DDXPlus patient answers a chat model's free-text questions finding by finding (no leak check: not a played patient)."""
    import random

    from diagnostician.bench.agents import run_llm_ddxplus
    from diagnostician.knowledge.ddxplus import PatientRecord
    from diagnostician.knowledge.schema import load_pack

    pack = load_pack("ddxplus")
    record = PatientRecord(34, "F", "URTI", "E_97", {"E_97": True, "E_91": True}, row=7)
    client = ScriptedClient(["Do you have a fever?", "Do you have a cough?", "FINAL ANSWER\nDifferential: 1. URTI 2. Influenza\nTriage: self-care\nTests: none"])
    row = run_llm_ddxplus(client, pack, record, random.Random(0), max_turns=5)
    assert row["id"] == "row7" and row["diagnosis"] == "URTI" and row["differential"][:1] == ["URTI"]
    answers = [t["text"] for t in row["transcript"] if t["role"] == "patient"][1:]
    assert answers == ["Yes.", "No."] and row["leaks"] == []
    assert "34" in row["transcript"][0]["text"]  # the opening sentence says the age


def test_cli_ddxplus_chat_model_needs_a_server(tmp_path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("AGE,SEX,PATHOLOGY,EVIDENCES,INITIAL_EVIDENCE,DIFFERENTIAL_DIAGNOSIS\n", encoding="utf-8")
    assert_input_error(run_cli("bench", "ddxplus", "--cases", str(csv), "--agent", "openai"), "needs a server")
