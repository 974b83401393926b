"""LLM helpers without a model: configuration, validation of extractions, the grounding check, fallbacks."""

from __future__ import annotations

import json
import socket
import time

import pytest

from diagnostician.dialogue.grounding import Grounding, check_grounded, grounding_of
from diagnostician.dialogue.llm import (
    LLM_CONFIDENCE,
    LLMClient,
    LLMConfig,
    LLMUnavailable,
    extract_with_llm,
    phrase_explanation,
    phrase_question,
)
from diagnostician.dialogue.mentions import Mention
from diagnostician.errors import InputError

FEVER = "Do you have a fever (either felt or measured with a thermometer)?"


@pytest.fixture(autouse=True)
def _no_llm_env(monkeypatch):
    for name in ("BASE_URL", "MODEL", "API_KEY", "TIMEOUT", "RETRIES", "CONFIG"):
        monkeypatch.delenv(f"DIAGNOSTICIAN_LLM_{name}", raising=False)


class Canned(LLMClient):
    """A client whose replies are given in advance (and which records what it was asked)."""

    def __init__(self, *replies: str | Exception) -> None:
        super().__init__(LLMConfig("http://127.0.0.1:9/v1", "canned"))
        self.replies = list(replies)
        self.calls: list[dict] = []

    def chat(self, messages, *, json_schema=None, max_tokens=256, temperature=0.0) -> str:
        self.calls.append({"messages": messages, "json_schema": json_schema})
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ config


def test_nothing_configured_gives_none():
    assert LLMConfig.from_env() is None


def test_config_from_env(monkeypatch):
    monkeypatch.setenv("DIAGNOSTICIAN_LLM_BASE_URL", "http://127.0.0.1:8080/v1")
    monkeypatch.setenv("DIAGNOSTICIAN_LLM_MODEL", "gemma")
    monkeypatch.setenv("DIAGNOSTICIAN_LLM_API_KEY", "k")
    monkeypatch.setenv("DIAGNOSTICIAN_LLM_TIMEOUT", "2.5")
    cfg = LLMConfig.from_env()
    assert cfg == LLMConfig("http://127.0.0.1:8080/v1", "gemma", "k", 2.5, 2)
    assert cfg.chat_url == "http://127.0.0.1:8080/v1/chat/completions"
    assert LLMConfig("http://h:1", "m").chat_url == "http://h:1/v1/chat/completions"


def test_config_from_toml_file_and_env_override(tmp_path, monkeypatch):
    path = tmp_path / "llm.toml"
    path.write_text('[llm]\nbase_url = "http://127.0.0.1:1234/v1"\nmodel = "m"\ntimeout_s = 5\nretries = 0\n')
    cfg = LLMConfig.from_env(path)
    assert (cfg.base_url, cfg.model, cfg.api_key, cfg.timeout_s, cfg.retries) == ("http://127.0.0.1:1234/v1", "m", None, 5, 0)
    monkeypatch.setenv("DIAGNOSTICIAN_LLM_CONFIG", str(path))
    monkeypatch.setenv("DIAGNOSTICIAN_LLM_MODEL", "other")
    assert LLMConfig.from_env().model == "other"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DIAGNOSTICIAN_LLM_BASE_URL": "localhost:8000", "DIAGNOSTICIAN_LLM_MODEL": "m"}, "http(s) URL"),
        ({"DIAGNOSTICIAN_LLM_BASE_URL": "http://h:1/v1"}, "DIAGNOSTICIAN_LLM_MODEL"),
        ({"DIAGNOSTICIAN_LLM_MODEL": "m"}, "DIAGNOSTICIAN_LLM_BASE_URL"),
        ({"DIAGNOSTICIAN_LLM_BASE_URL": "http://h:1", "DIAGNOSTICIAN_LLM_MODEL": "m", "DIAGNOSTICIAN_LLM_TIMEOUT": "soon"}, "TIMEOUT"),
        ({"DIAGNOSTICIAN_LLM_BASE_URL": "http://h:1", "DIAGNOSTICIAN_LLM_MODEL": "m", "DIAGNOSTICIAN_LLM_TIMEOUT": "-1"}, "timeout_s"),
        ({"DIAGNOSTICIAN_LLM_CONFIG": "/nonexistent/llm.toml"}, "not found"),
    ],
)
def test_bad_env_values_are_input_errors(monkeypatch, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LLMConfig.from_env()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[llm]\nbase_url = "http://h:1"\nmodel = "m"\nretries = "two"\n', "retries"),
        ('[llm]\nbase_url = "http://h:1"\nmodel = "m"\nretries = true\n', "retries"),
        ('[llm]\nbase_url = "http://h:1"\nmodel = "m"\ntimeout_s = "30"\n', "timeout_s"),
        ('[llm]\nbase_url = "http://h:1"\nmodel = "m"\ntemperature = 1\n', "unknown key"),
        ('[server]\nport = 1\n', r"no \[llm\] table"),
        ("[llm\n", "cannot be read"),
        ('[llm]\nbase_url = "ftp://h"\nmodel = "m"\n', "http"),
        ('[llm]\nbase_url = "http://h:1"\nmodel = ""\n', "model"),
    ],
)
def test_bad_toml_values_are_input_errors(tmp_path, toml, message):
    path = tmp_path / "llm.toml"
    path.write_text(toml)
    with pytest.raises(InputError, match=message):
        LLMConfig.from_env(path)


# ------------------------------------------------------------------------------------------------ client


def test_closed_port_is_a_clear_error():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    client = LLMClient(LLMConfig(url, "m", timeout_s=2, retries=1))
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match=r"127\.0\.0\.1.*down or unreachable.*2 attempt"):
        client.chat([{"role": "user", "content": "hello"}])
    assert time.monotonic() - started < 5
    client.close()


def test_phrasing_falls_back_when_server_is_down(pack):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with LLMClient(LLMConfig(url, "m", timeout_s=1, retries=0)) as client:
        out = phrase_question(client, pack, FEVER, Grounding(findings={"E_91"}), proxy=False)
    assert (out.text, out.used_llm) == (FEVER, False)
    assert "unreachable" in out.violations[0]


# ------------------------------------------------------------------------------------------------ extraction


def answer(*items) -> str:
    return json.dumps({"findings": list(items)})


def test_extraction_validates_against_the_pack(pack, caplog):
    client = Canned(
        answer(
            {"code": "E_91", "polarity": "present", "values": []},
            {"code": "E_999", "polarity": "present", "values": []},  # not in the pack
            {"code": "the patient says she is 34 and pregnant", "polarity": "present", "values": []},
            {"code": "E_53", "polarity": "maybe", "values": []},  # bad polarity
            {"code": "E_54", "polarity": "present", "values": ["V_71", "V_9999", "burning", "V_14"]},
            {"code": "E_56", "polarity": "present", "values": [7]},
            {"code": "E_55", "polarity": "absent", "values": ["V_14"]},
        )
    )
    caplog.set_level("INFO", logger="diagnostician.dialogue.llm")
    text = "I am burning up with fever and my pain feels like tearing"
    out = extract_with_llm(client, pack, text)
    assert [(m.code, m.polarity, m.value) for m in out] == [
        ("E_91", "present", None),
        ("E_54", "present", ("V_71", "V_181")),  # V_9999 and V_14 (a location) dropped, label mapped
        ("E_56", "present", "7"),
        ("E_55", "absent", None),
    ]
    assert all(m.method == "llm" and m.confidence == LLM_CONFIDENCE for m in out)
    logged = caplog.text
    assert "E_999" in logged and "V_9999" in logged
    assert "pregnant" not in logged and "burning up" not in logged  # patient and model text never logged
    schema = client.calls[0]["json_schema"]
    assert set(schema["properties"]["findings"]["items"]["properties"]["code"]["enum"]) == {f.code for f in pack.findings}


def test_schema_offers_only_listed_codes_and_values(pack):
    from diagnostician.dialogue.llm import extraction_schema

    items = extraction_schema(pack, ["E_91", "E_54", "E_55"], max_findings=3)["properties"]["findings"]
    assert items["maxItems"] == 3
    props = items["items"]["properties"]
    assert props["code"]["enum"] == ["E_91", "E_54", "E_55"]
    values = set(props["values"]["items"]["enum"])
    assert "V_71" in values and "V_11" not in values  # E_54's values but not its default ("NA")
    assert "V_14" not in values  # E_55's 170 body locations are asked about later, not offered
    assert extraction_schema(pack, ["E_91"])["properties"]["findings"]["items"]["properties"]["values"]["maxItems"] == 0


@pytest.mark.parametrize("reply", ["", "not json", "{", '{"findings": 3}', "[]", '{"other": []}', '{"findings": [1, "x", null]}'])
def test_malformed_answers_give_nothing(pack, reply):
    assert extract_with_llm(Canned(reply), pack, "I have a cough") == []


def test_extraction_only_takes_offered_codes(pack):
    client = Canned(answer({"code": "E_91", "polarity": "present", "values": []}, {"code": "E_53", "polarity": "present", "values": []}))
    out = extract_with_llm(client, pack, "fever and pain", candidates=["E_53", "E_54"])
    assert [m.code for m in out] == ["E_53"]
    assert "E_91" not in client.calls[0]["messages"][0]["content"]


# ------------------------------------------------------------------------------------------------ grounding


def g(pack, **kw) -> Grounding:
    return Grounding(pack=pack, **kw)


def test_conditions_must_be_allowed(pack):
    allowed = g(pack, conditions={"Influenza", "URTI"})
    assert check_grounded("Influenza and a cold (URTI) are the most likely.", allowed) == []
    v = check_grounded("It could be influenza. It might also be pneumonia.", allowed)
    assert len(v) == 1 and v[0].startswith("sentence 2") and "Pneumonia" in v[0]
    assert check_grounded("Possibly HIV.", allowed) and check_grounded("Consider a possible STEMI.", allowed)
    assert check_grounded("Is there an infection?", allowed) == []  # generic word, not a condition name
    assert check_grounded("Bronchiolitis is listed.", g(pack, conditions={"Bronchitis"}))


def test_percentages_must_be_allowed(pack):
    allowed = g(pack, conditions={"Influenza"}, percents={42})
    assert check_grounded("Influenza is about 42% likely.", allowed) == []
    assert check_grounded("Influenza is about 41 percent likely.", allowed) == []  # rounding tolerance
    assert check_grounded("Influenza is about 60% likely.", allowed)
    assert check_grounded("The chance is 0.9.", allowed)
    assert check_grounded("That happens in 1 in 2 people.", allowed)


def test_urgency_must_match_the_level(pack):
    assert check_grounded("Please call an ambulance now.", g(pack, urgency="emergency")) == []
    assert check_grounded("Please call an ambulance now.", g(pack, urgency="self_care"))
    assert check_grounded("Go to the ER.", g(pack, urgency="see_doctor"))
    assert check_grounded("Go to A&E.", g(pack))
    assert check_grounded("Self-care at home should be enough.", g(pack, urgency="urgent_24h"))
    assert check_grounded("Rest, and see a doctor if it gets worse.", g(pack, urgency="self_care")) == []
    assert check_grounded("Did the pain start recently?", g(pack)) == []
    with pytest.raises(InputError):
        Grounding(urgency="whenever")


def test_certainty_and_diagnosis_claims(pack):
    allowed = g(pack, conditions={"Influenza"})
    assert check_grounded("You definitely have the flu.", allowed)
    assert check_grounded("You have influenza.", allowed)  # a claim even about an allowed condition
    assert check_grounded("It is certainly nothing serious.", allowed)
    assert check_grounded("Influenza is one possibility among others.", allowed) == []
    assert check_grounded("Do you have a fever?", allowed) == []


def test_findings_need_detect_and_permission(pack):
    def detect(text: str) -> list[Mention]:
        return [Mention("E_91", "present")] if "fever" in text.lower() else []

    assert check_grounded("Do you have a fever?", g(pack), detect=detect)
    assert check_grounded("Do you have a fever?", g(pack, findings={"E_91"}), detect=detect) == []
    assert check_grounded("Answer about E_53 please.", g(pack))  # a bare code


def test_template_grounds_itself(pack):
    q = pack.finding("E_118").question  # names pneumonia: a faithful rephrasing may too
    assert check_grounded(q, g(pack))
    assert check_grounded(q, g(pack).union(grounding_of(q, pack))) == []


# ------------------------------------------------------------------------------------------------ phrasing


def test_phrase_question_keeps_a_grounded_rewording(pack):
    out = phrase_question(Canned("  Have you had a fever at all, even a mild one?  "), pack, FEVER, g(pack, findings={"E_91"}), proxy=False)
    assert out.used_llm and out.text == "Have you had a fever at all, even a mild one?" and out.violations == []


@pytest.mark.parametrize(
    "reply",
    [
        "Does your child have a fever? This could be pneumonia.",
        "Does your child have a fever? Go to the ER now.",
        "Does your child have a fever? Is there a cough?",
        "Your child has a fever.",
        "",
        "Has your child had a fever? About 80% of children with fever have influenza?",
    ],
)
def test_phrase_question_falls_back_on_violations(pack, reply):
    client = Canned(reply)
    out = phrase_question(client, pack, FEVER, g(pack, findings={"E_91"}), proxy=True)
    assert (out.text, out.used_llm) == (FEVER, False) and out.violations
    assert "your child" in client.calls[0]["messages"][0]["content"]


def test_phrase_falls_back_when_client_raises(pack):
    out = phrase_question(Canned(LLMUnavailable("LLM server at http://x answered 503")), pack, FEVER, g(pack), proxy=False)
    assert (out.text, out.used_llm) == (FEVER, False)
    template = "Influenza is the most likely (42%). See a doctor within 24 hours."
    allowed = g(pack, conditions={"Influenza"}, percents={42}, urgency="urgent_24h")
    out = phrase_explanation(Canned(LLMUnavailable("down")), template, allowed)
    assert (out.text, out.used_llm) == (template, False)


def test_phrase_explanation(pack):
    template = "Influenza is the most likely (42%). See a doctor within 24 hours."
    allowed = g(pack, conditions={"Influenza"}, percents={42}, urgency="urgent_24h")
    good = "The flu (influenza) looks most likely, at about 42%. Please see a doctor within 24 hours."
    assert phrase_explanation(Canned(good), template, allowed).text == good
    bad = "It is influenza for sure, nothing to worry about."
    out = phrase_explanation(Canned(bad), template, allowed)
    assert out.text == template and not out.used_llm and len(out.violations) >= 2
    with pytest.raises(InputError):
        phrase_explanation(Canned(good), template, Grounding())


def test_retries_then_falls_back_to_json_object(monkeypatch):
    import httpx

    monkeypatch.setattr("diagnostician.dialogue.llm.time.sleep", lambda s: None)
    seen: list[tuple[str | None, int]] = []
    statuses = iter([503, 429, 400, 200, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        status = next(statuses)
        seen.append(((body.get("response_format") or {}).get("type"), status))
        if status == 400:
            return httpx.Response(400, json={"error": "bad response_format type"})
        if status != 200:
            return httpx.Response(status, json={"error": "busy"})
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "{}"}}]})

    client = LLMClient(LLMConfig("http://llm.invalid/v1", "m", retries=2), transport=httpx.MockTransport(handler))
    assert client.chat([{"role": "user", "content": "x"}], json_schema={"type": "object"}) == "{}"
    assert seen == [("json_schema", 503), ("json_schema", 429), ("json_schema", 400), ("json_object", 200)]
    assert client.schema_style == "json_object"  # remembered: the next request goes straight to json_object
    client.chat([{"role": "user", "content": "x"}], json_schema={"type": "object"})
    assert seen[-1] == ("json_object", 200)


def test_server_errors_name_the_status(monkeypatch):
    import httpx

    monkeypatch.setattr("diagnostician.dialogue.llm.time.sleep", lambda s: None)
    client = LLMClient(LLMConfig("http://llm.invalid/v1", "m", retries=1), transport=httpx.MockTransport(lambda r: httpx.Response(502)))
    with pytest.raises(LLMUnavailable, match=r"llm\.invalid.*answered 502 after 2 attempt"):
        client.chat([{"role": "user", "content": "x"}])
    bad = LLMClient(LLMConfig("http://llm.invalid/v1", "m"), transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<html>")))
    with pytest.raises(LLMUnavailable, match="not a chat completion"):
        bad.chat([{"role": "user", "content": "x"}])
