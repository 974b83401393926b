"""`diagnostician parse`, `chat` and `bench intake` run as real subprocesses."""

from __future__ import annotations

import json

from test_cli import assert_input_error, assert_ok, run_cli


def test_parse_prints_findings_with_polarity_and_spans() -> None:
    text = "my 4 year old son has a barking cough since last night, no fever"
    p = run_cli("parse", "--pack", "ddxplus", "--json", text)
    assert_ok(p)
    out = json.loads(p.stdout)
    assert out["age"] == 4 and out["sex"] == "M" and out["proxy"] is True and out["duration_days"] == 1
    by_code = {f["code"]: f for f in out["findings"]}
    assert by_code["E_201"]["polarity"] == "present" and by_code["E_91"]["polarity"] == "absent"
    for f in out["findings"]:
        assert text[f["span"][0] : f["span"][1]] == f["text"] and 0 < f["confidence"] <= 1 and f["question"]
    table = run_cli("parse", "--pack", "ddxplus", text)
    assert_ok(table)
    assert "E_201" in table.stdout and "absent" in table.stdout and "age 4 years" in table.stdout


def test_parse_reads_standard_input_and_refuses_bad_text() -> None:
    p = run_cli("parse", "--pack", "ddxplus", "--json", "-", input="coughing up blood")
    assert_ok(p)
    assert {f["code"] for f in json.loads(p.stdout)["findings"]} == {"E_45", "E_201"}  # coughing up blood is also a cough
    assert_input_error(run_cli("parse", "--pack", "ddxplus", "   "), "empty")
    assert_input_error(run_cli("parse", "--pack", "ddxplus", "x" * 6000), "limit")
    assert_input_error(run_cli("parse", "--pack", "ddxplus", "--max-chars", "10", "I have a cough and a fever"), "limit")
    assert_input_error(run_cli("parse", "--pack", "ddxplus", "--llm", "cough", input=""), "DIAGNOSTICIAN_LLM_BASE_URL")


def test_chat_runs_a_whole_consultation_from_plain_words() -> None:
    replies = ["I'm a 35 year old woman with a sore throat and a fever, no cough"] + ["no"] * 40
    p = run_cli("chat", "--pack", "ddxplus", "--plain", input="\n".join(replies) + "\n")
    assert_ok(p)
    assert "What brings you here today?" in p.stdout and "I noted:" in p.stdout and "**Question 1.**" in p.stdout
    assert "**Assessment**" in p.stdout and "decision support, not a diagnosis" in p.stdout


def test_chat_gives_the_assessment_so_far_at_end_of_input() -> None:
    p = run_cli("chat", "--pack", "ddxplus", "--plain", input="I have chest pain, I'm a 60 year old man\n")
    assert_ok(p)
    assert "**Question 1.**" in p.stdout and "**Assessment**" in p.stdout and "You stopped after 0 questions" in p.stdout


def test_chat_danger_sign_at_once() -> None:
    p = run_cli("chat", "--pack", "ddxplus", "--plain", input="60 year old man, coughing up blood\n")
    assert_ok(p)
    first = p.stdout.split("**Question 1.**")[0]
    assert "DANGER SIGN" in first


def test_chat_defaults_to_the_broad_pack_and_screens_for_danger() -> None:
    """Free text goes to the broad pack: a urinary complaint is understood, and chest pain is screened for danger signs."""
    p = run_cli("chat", "--plain", input="I'm a 30 year old woman with burning when peeing and frequent urination\n" + "no\n" * 40)
    assert_ok(p)
    assert "**Assessment**" in p.stdout and "decision support, not a diagnosis" in p.stdout
    assert "urinary tract infection" in p.stdout.lower() or "cystitis" in p.stdout.lower()
    q = run_cli("chat", "--plain", input="I'm a 58 year old man with chest pain\nwhy\n")
    assert_ok(q)
    assert "danger sign" in q.stdout.lower()  # the first question screens a red flag, and says so when asked why


def test_bench_intake_reports_the_figures(tmp_path) -> None:
    p = run_cli("bench", "intake", "--json", "--out", str(tmp_path))
    assert_ok(p)
    report = json.loads(p.stdout)
    assert report["utterances"] >= 400 and report["coverage"]["labelled"] == report["coverage"]["findings"]
    for key in ("findings", "findings_with_polarity", "values"):
        assert 0 <= report[key]["f1"] <= 1
    assert (tmp_path / "intake_summary.json").exists() and (tmp_path / "intake_errors.jsonl").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    assert_input_error(run_cli("bench", "intake", "--cases", str(bad)), "bad.jsonl:1")


def test_the_reading_is_the_same_in_every_process() -> None:
    """The stateless chat replays a conversation in whatever worker gets the request: readings must not depend on hash seeds."""
    import os
    import subprocess
    import sys

    text = "sharp pain in my left side and lower back, no fevr, maybe a cough, cofing up some phlegm, 7/10"
    outs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        p = subprocess.run([sys.executable, "-m", "diagnostician.cli.main", "parse", "--pack", "ddxplus", "--json", text], capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        outs.add(p.stdout)
    assert len(outs) == 1
