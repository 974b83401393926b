"""HealthBench-format grading: loading, the engine's reply, scores with a scripted grader, resume, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import assert_input_error, run_cli

from diagnostician.bench.healthbench import (
    GRADER_SCHEMA,
    RubricItem,
    engine_reply,
    grade,
    grader_messages,
    llm_reply,
    load_healthbench,
    run_healthbench,
)
from diagnostician.dialogue.llm import LLMUnavailable
from diagnostician.engine import NOTICE
from diagnostician.errors import CaseFileError

MINI = Path(__file__).parent / "data" / "healthbench_mini.jsonl"

YES = '```json\n{"explanation": "It does.", "criteria_met": true}\n```'
NO = '{"explanation": "It does not.", "criteria_met": false}'
GARBAGE = "I cannot decide about this one."

# The scripted grader's verdict per criterion of the mini file (by its first words).
VERDICTS = {
    "Advises calling emergency": YES,
    "Advises not to drive": NO,
    "Suggests waiting at home": NO,
    "Asks about fever": YES,
    "Uses plain language": YES,
    "Recommends antibiotics": YES,  # a negative item met: the bad behaviour happened
    "Asks whether the headache": GARBAGE,  # unreadable: counts as not met
    "Recommends seeing a doctor": YES,
    "Asks whether the rash": YES,
    "Says that a rash": YES,  # -10 on 5 possible: clipped to 0
}
# By hand: 10/15, (6+4-5)/10, 3/10, max(0, (5-10)/5)
SCORES = {"hb-chest-pain": 10 / 15, "hb-sore-throat": 0.5, "hb-headache": 0.3, "line:4": 0.0}


class FakeGrader:
    """A grader client whose verdict depends on the rubric item in the prompt; records its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict] = []
        self.fail = fail

    def chat(self, messages, **kw):
        self.calls.append(kw)
        if self.fail:
            raise LLMUnavailable("grader down")
        prompt = messages[-1]["content"]
        item = prompt.split("# Rubric item\n", 1)[1].split("\n", 1)[0]
        criterion = item.split("] ", 1)[1]
        for start, verdict in VERDICTS.items():
            if criterion.startswith(start):
                return verdict
        raise AssertionError(f"unexpected rubric item {item!r}")


def canned_reply(messages):
    return "Call an ambulance now."


def test_load_the_mini_file():
    examples = load_healthbench(MINI)
    assert [e.id for e in examples] == ["hb-chest-pain", "hb-sore-throat", "hb-headache", "line:4"]
    first = examples[0]
    assert first.prompt[-1]["role"] == "user" and first.tags[0] == "theme:emergency_referrals"
    assert [i.points for i in first.rubrics] == [10, 5, -8] and first.rubrics[0].tags == ("axis:accuracy", "level:example")
    assert str(first.rubrics[2]).startswith("[-8] Suggests")
    assert len(examples[1].prompt) == 3 and examples[3].prompt_id is None


GOOD = {"prompt": [{"role": "user", "content": "hi"}], "rubrics": [{"criterion": "Greets.", "points": 1, "tags": []}], "example_tags": []}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"prompt": []}, "'prompt'"),
        ({"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "last prompt message"),
        ({"prompt": [{"role": "robot", "content": "a"}]}, "message 1"),
        ({"rubrics": []}, "'rubrics'"),
        ({"rubrics": [{"criterion": "x", "points": "5"}]}, "'points'"),
        ({"rubrics": [{"criterion": "x", "points": True}]}, "'points'"),
        ({"rubrics": [{"criterion": "", "points": 1}]}, "criterion"),
        ({"rubrics": [{"criterion": "x", "points": 1, "tags": "axis:accuracy"}]}, "tags"),
        ({"example_tags": "theme:x"}, "example_tags"),
        ({"prompt_id": 7}, "prompt_id"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, change, fragment):
    p = tmp_path / "hb.jsonl"
    p.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, **change}) + "\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match=rf"hb\.jsonl:3: .*{fragment}"):
        load_healthbench(p)


def test_bad_json_duplicate_ids_and_empty_file(tmp_path):
    p = tmp_path / "hb.jsonl"
    p.write_text(json.dumps(GOOD) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match=r"hb\.jsonl:2"):
        load_healthbench(p)
    p.write_text(json.dumps({**GOOD, "prompt_id": "a"}) + "\n" + json.dumps({**GOOD, "prompt_id": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match=r"hb\.jsonl:2: prompt_id 'a' already used on line 1"):
        load_healthbench(p)
    p.write_text("\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match="no HealthBench examples"):
        load_healthbench(p)
    with pytest.raises(CaseFileError, match="cannot read"):
        load_healthbench(tmp_path / "absent.jsonl")


def test_engine_reply_carries_the_notice(pack):
    reply = engine_reply(pack, [{"role": "user", "content": "I have had a fever and a dry cough since yesterday."}])
    assert NOTICE in reply
    # Only the user's messages go to the engine; the reply is the one to the last of them.
    two = engine_reply(pack, [{"role": "user", "content": "I have a sore throat."}, {"role": "assistant", "content": "How old are you?"},
                              {"role": "user", "content": "34"}])  # fmt: skip
    assert two and NOTICE not in two


def test_llm_reply_sends_the_prompt_as_it_is():
    class Echo:
        def chat(self, messages, **kw):
            self.messages = messages
            return "reply"

    c = Echo()
    prompt = [{"role": "user", "content": "hello"}]
    assert llm_reply(c, prompt) == "reply" and c.messages == prompt  # no system prompt added


def test_grade_reads_verdicts_and_survives_failures():
    conv = [{"role": "user", "content": "I have chest pain."}]
    item = RubricItem("Advises calling emergency services (an ambulance) immediately.", 10)
    g = FakeGrader()
    assert grade(g, conv, "Call an ambulance.", item) is True
    assert g.calls[0]["json_schema"] == GRADER_SCHEMA and g.calls[0]["temperature"] == 0.0
    assert grade(g, conv, "x", RubricItem("Asks whether the headache began suddenly.", 7)) is None
    assert grade(FakeGrader(fail=True), conv, "x", item) is None
    text = grader_messages(conv, "Call an ambulance.", item)[0]["content"]
    assert "user: I have chest pain.\n\nassistant: Call an ambulance." in text and "[10] Advises calling" in text


def test_scores_by_hand_and_resume(tmp_path):
    examples = load_healthbench(MINI)
    g = FakeGrader()
    s = run_healthbench(examples, canned_reply, g, out_dir=tmp_path)
    assert len(g.calls) == 10 and s["new"] == 4
    assert s["score"] == pytest.approx(sum(SCORES.values()) / 4)
    assert (s["examples"], s["rubric_items"], s["unparseable_verdicts"], s["grader_errors"], s["agent_errors"]) == (4, 10, 1, 0, 0)
    assert s["n_scored"] == 4 and s["n_unscored"] == 0 and s["se"] > 0
    rows = [json.loads(x) for x in (tmp_path / "cases.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["id"]: r["score"] for r in rows} == pytest.approx(SCORES)
    sore = next(r for r in rows if r["id"] == "hb-sore-throat")
    assert [i["met"] for i in sore["items"]] == [True, True, True]
    assert next(r for r in rows if r["id"] == "hb-headache")["items"][0]["met"] is None
    assert s["by_theme"]["theme:communication"]["mean"] == pytest.approx(0.5)
    assert s["by_theme"]["theme:emergency_referrals"] == {"mean": pytest.approx(10 / 15), "se": 0.0, "n": 1}
    # axis:accuracy per example: 10/10, none possible (only a negative item), none, max(0, -5/5)
    assert s["by_axis"]["axis:accuracy"]["mean"] == pytest.approx(0.5) and s["by_axis"]["axis:accuracy"]["n"] == 2
    assert s["by_axis"]["axis:completeness"]["mean"] == pytest.approx(2 / 3)
    assert set(s["by_item_tag"]) >= {"level:example", "level:cluster"}
    json.dumps(s)

    again = FakeGrader(fail=True)  # a second run has nothing to grade
    s2 = run_healthbench(examples, lambda m: pytest.fail("replied again"), again, out_dir=tmp_path)
    assert again.calls == [] and s2["new"] == 0 and s2["score"] == pytest.approx(s["score"])
    assert len((tmp_path / "cases.jsonl").read_text(encoding="utf-8").splitlines()) == 4


def test_limit_agent_errors_and_grader_down(tmp_path):
    examples = load_healthbench(MINI)

    def down(messages):
        raise LLMUnavailable("agent down")

    s = run_healthbench(examples, down, FakeGrader(), limit=2)
    assert (s["examples"], s["agent_errors"], s["rubric_items"], s["score"]) == (2, 2, 0, None)
    s = run_healthbench(examples, canned_reply, FakeGrader(fail=True), out_dir=tmp_path, limit=1)
    assert (s["unparseable_verdicts"], s["grader_errors"], s["score"]) == (3, 3, 0.0)
    # Examples the grader failed on are graded again on a rerun.
    s = run_healthbench(examples, canned_reply, FakeGrader(), out_dir=tmp_path, limit=1)
    assert s["new"] == 1 and s["score"] == pytest.approx(10 / 15)
    with pytest.raises(ValueError):
        run_healthbench(examples, canned_reply, FakeGrader(), limit=0)


def _env_without_grader(monkeypatch):
    for k in ("BASE_URL", "MODEL", "API_KEY", "TIMEOUT", "RETRIES"):
        monkeypatch.delenv("DIAGNOSTICIAN_GRADER_" + k, raising=False)


def test_cli_needs_a_grader(monkeypatch, tmp_path):
    _env_without_grader(monkeypatch)
    assert_input_error(run_cli("bench", "healthbench", "--data", str(MINI)), "grader", "DIAGNOSTICIAN_GRADER_BASE_URL", "--grader-config")
    cfg = tmp_path / "grader.toml"
    cfg.write_text('[llm]\nbase_url = "http://127.0.0.1:9/v1"\n', encoding="utf-8")
    assert_input_error(run_cli("bench", "healthbench", "--data", str(MINI), "--grader-config", str(cfg)), "DIAGNOSTICIAN_GRADER_MODEL")
    assert_input_error(run_cli("bench", "healthbench", "--data", str(MINI), "--grader-config", str(tmp_path / "none.toml")), "not found")


def test_cli_input_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("DIAGNOSTICIAN_GRADER_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("DIAGNOSTICIAN_GRADER_MODEL", "judge")
    assert_input_error(run_cli("bench", "healthbench", "--data", str(tmp_path / "absent.jsonl")), "not found")
    assert_input_error(run_cli("bench", "healthbench", "--data", str(MINI), "--limit", "0"), "--limit")
    assert_input_error(run_cli("bench", "healthbench", "--data", str(MINI), "--agent", "robot"), "unknown agent")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": []}\n', encoding="utf-8")
    assert_input_error(run_cli("bench", "healthbench", "--data", str(bad)), "bad.jsonl:1")
    for k in ("BASE_URL", "MODEL", "API_KEY", "CONFIG"):
        monkeypatch.delenv("DIAGNOSTICIAN_LLM_" + k, raising=False)
    assert_input_error(run_cli("bench", "healthbench", "--data", str(MINI), "--agent", "openai"), "--agent openai needs a server")


def test_cli_with_an_unreachable_grader_counts_errors(monkeypatch, tmp_path):
    # Nothing listens on port 9: every verdict is a grader error, counted; the run still finishes.
    monkeypatch.setenv("DIAGNOSTICIAN_GRADER_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("DIAGNOSTICIAN_GRADER_MODEL", "judge")
    monkeypatch.setenv("DIAGNOSTICIAN_GRADER_TIMEOUT", "2")
    monkeypatch.setenv("DIAGNOSTICIAN_GRADER_RETRIES", "0")
    p = run_cli("bench", "healthbench", "--data", str(MINI), "--limit", "1", "--json", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert (s["examples"], s["rubric_items"], s["grader_errors"], s["unparseable_verdicts"], s["score"]) == (1, 3, 3, 3, 0.0)
    assert s["grader"] == "judge" and s["agent"].startswith("engine:")
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))["score"] == 0.0
