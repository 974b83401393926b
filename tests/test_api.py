"""The HTTP API through a real uvicorn server process (`diagnostician serve`) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any, Iterator

import httpx
import pytest

from diagnostician.api.problems import ErrorGuardMiddleware
from diagnostician.api.settings import Settings, is_loopback
from diagnostician.cli.main import CASES_DIR, main
from diagnostician.consult import Consultation
from diagnostician.consult.cases import load_case
from diagnostician.engine import NOTICE
from diagnostician.errors import InputError
from servers import ApiServer as Server

PROBLEM = "application/problem+json"


def _create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    r = http.post("/v1/consultations", json={"age": 54, "sex": "M", "findings": {"E_53": True}, **body})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/consultations/{r.json()['id']}"
    return r.json()


def _question(http: httpx.Client, cid: str) -> dict[str, Any]:
    r = http.get(f"/v1/consultations/{cid}/question")
    assert r.status_code == 200, r.text
    return r.json()


def _answer(http: httpx.Client, cid: str, qid: str, value: Any) -> httpx.Response:
    return http.post(f"/v1/consultations/{cid}/answers", json={"question_id": qid, "value": value})


def _problem(r: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    if slug:
        assert body["type"].endswith(":" + slug), body
    return body


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------- a whole consultation


def test_full_consultation_matches_the_library(http, pack) -> None:
    case = load_case(CASES_DIR / "chest_pain.json", pack)
    created = _create(http, age=case.age, sex=case.sex, findings={k: _json(v) for k, v in case.complaints.items()})
    cid = created["id"]
    assert created["notice"] == NOTICE and created["questions_asked"] == 0 and not created["done"]
    local = Consultation.begin(case.age, case.sex, case.complaints, pack=pack)
    asked = 0
    while True:
        step = _question(http, cid)
        expected = local.next_question()
        if step["done"]:
            assert expected is None and step["question"] is None and step["stop_reason"]
            break
        q = step["question"]
        assert q["finding"] == expected.code and q["id"] == f"{expected.code}@{asked}"
        assert q["type"] in ("binary", "categorical", "multi") and q["text"] and q["reason"] and q["hint"]
        assert q["answers"][-1] == {"value": None, "label": "don't know"} and q["expected_gain_bits"] >= 0
        value = case.answer(pack, q["finding"])
        r = _answer(http, cid, q["id"], _json(value))
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["notice"] == NOTICE and result["triage"]["notice"] == NOTICE and result["finding"] == q["finding"]
        local.answer(expected.code, value)
        asked += 1
        assert result["questions_asked"] == asked
    assert 1 <= asked <= 30
    r = http.get(f"/v1/consultations/{cid}/assessment")
    assert r.status_code == 200
    a = r.json()
    mine = local.assessment().to_dict()
    assert a["done"] and a["notice"] == NOTICE and a["questions_asked"] == asked and a["stop_reason"] == local.stop_reason
    assert [e["code"] for e in a["differential"]] == [e["code"] for e in mine["differential"]]
    assert [e["role"] for e in a["differential"]] == [e["role"] for e in mine["differential"]]
    assert a["differential"][0]["probability"] == pytest.approx(mine["differential"][0]["probability"])
    assert a["triage"]["level"] == mine["triage"]["level"] and a["explanations"] and a["explanations"][0]["text"]
    t = http.get(f"/v1/consultations/{cid}/triage").json()
    assert t["level"] == a["triage"]["level"] and t["notice"] == NOTICE and t["consultation_id"] == cid
    got = http.get(f"/v1/consultations/{cid}").json()
    assert got["done"] and got["questions_asked"] == asked and len(got["answers"]) == asked + len(case.complaints)
    assert _answer(http, cid, "E_1@0", True).status_code == 409  # nothing is pending any more


def test_red_flag_at_creation_is_returned_at_once(http, pack) -> None:
    flag = next(r for r in pack.red_flags if r.level == "emergency" and all(not vals for _, vals in r.when))
    created = _create(http, findings={code: True for code, _ in flag.when})
    assert flag.id in {r["id"] for r in created["red_flags"]} and created["notice"] == NOTICE
    t = http.get(f"/v1/consultations/{created['id']}/triage").json()
    assert t["level"] == "emergency" and flag.id in {r["id"] for r in t["red_flags"]}


# ---------------------------------------------------------------- idempotency and undo


def test_answers_are_idempotent_by_question_id(http) -> None:
    cid = _create(http)["id"]
    q = _question(http, cid)["question"]
    assert q["type"] == "multi"  # pain location follows "pain somewhere"
    first = _answer(http, cid, q["id"], ["V_101"])
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    again = _answer(http, cid, q["id"], "upper chest")  # the same answer, typed
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    _problem(_answer(http, cid, q["id"], ["V_29"]), 409, "answer-conflict")
    nxt = _question(http, cid)["question"]
    assert nxt["id"] != q["id"] and _question(http, cid)["question"] == nxt  # stable until answered
    assert http.get(f"/v1/consultations/{cid}").json()["questions_asked"] == 1


def test_answering_another_question_is_409(http) -> None:
    cid = _create(http)["id"]
    q = _question(http, cid)["question"]
    _problem(_answer(http, cid, "E_91@0", True), 409, "question-not-pending")
    _problem(_answer(http, cid, q["finding"] + "@7", ["V_101"]), 409, "question-not-pending")
    assert _question(http, cid)["question"] == q


def test_undo(http) -> None:
    cid = _create(http)["id"]
    _problem(http.post(f"/v1/consultations/{cid}/undo"), 409)  # initial findings cannot be undone
    q = _question(http, cid)["question"]
    assert _answer(http, cid, q["id"], ["V_101"]).status_code == 200
    r = http.post(f"/v1/consultations/{cid}/undo")
    assert r.status_code == 200 and r.json()["undone"]["finding"] == q["finding"] and r.json()["questions_asked"] == 0
    again = _question(http, cid)["question"]
    assert again["finding"] == q["finding"] and again["id"] != q["id"]
    _problem(_answer(http, cid, q["id"], ["V_101"]), 409, "answer-conflict")  # a late retry of the undone answer
    assert _answer(http, cid, again["id"], ["V_29"]).json()["value"] == ["V_29"]


# ---------------------------------------------------------------- bad input: 4xx problem+json, never 5xx


def test_unknown_and_deleted_consultations_are_404(http) -> None:
    for path in ("", "/question", "/assessment", "/triage"):
        _problem(http.get(f"/v1/consultations/0123abc{path}"), 404, "consultation-not-found")
    _problem(_answer(http, "0123abc", "E_55@0", True), 404)
    _problem(http.post("/v1/consultations/0123abc/undo"), 404)
    cid = _create(http)["id"]
    assert http.delete(f"/v1/consultations/{cid}").status_code == 204
    _problem(http.get(f"/v1/consultations/{cid}"), 404)
    _problem(http.delete(f"/v1/consultations/{cid}"), 404)
    _problem(http.get("/v1/no-such-thing"), 404)


def test_broken_json_is_400(http) -> None:
    for body in (b'{"age": 54,', b"\xff\xfe", b"{'age': 54}"):
        _problem(http.post("/v1/consultations", content=body, headers={"content-type": "application/json"}), 400)


def test_oversized_bodies_are_413(http) -> None:
    big = json.dumps({"age": 54, "sex": "M", "findings": {f"E_{i}": True for i in range(9000)}}).encode()
    assert len(big) > 64 * 1024
    _problem(http.post("/v1/consultations", content=big, headers={"content-type": "application/json"}), 413, "body-too-large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit still holds
        for _ in range(7):
            yield b" " * 10240

    _problem(http.post("/v1/consultations", content=chunks(), headers={"content-type": "application/json"}), 413)
    assert http.get("/v1/health").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"age": 54},
        {"age": "old", "sex": "M"},
        {"age": 150, "sex": "M"},
        {"age": True, "sex": "M"},
        {"age": 54, "sex": "M", "extra": 1},
        {"age": 54, "sex": "M", "findings": [["E_53", True]]},
        {"age": 54, "sex": "M", "findings": {"E_53": {"nested": 1}}},
        {"age": 54, "sex": "M", "max_questions": 0},
        [],
        "text",
        None,
    ],
)
def test_invalid_creation_is_422(http, body) -> None:
    r = http.post("/v1/consultations", content=json.dumps(body), headers={"content-type": "application/json"})
    _problem(r, 422, "validation-error")


def test_body_that_is_not_json_is_415(http) -> None:
    for headers in ({"content-type": "text/plain"}, {}):
        _problem(http.post("/v1/consultations", content=b'{"age": 54, "sex": "M"}', headers=headers), 415, "unsupported-media-type")


def test_validation_problem_lists_fields(http) -> None:
    body = _problem(http.post("/v1/consultations", json={"sex": "M", "age": -1}), 422)
    assert body["errors"] and body["errors"][0]["loc"] == ["body", "age"] and "input" not in body["errors"][0]


@pytest.mark.parametrize(
    "findings, slug",
    [({"E_999": True}, "unknown-finding"), ({"E_53": "purple"}, "invalid-answer"), ({"E_56": "11"}, "invalid-answer")],
)
def test_unknown_codes_and_bad_initial_values_are_422(http, findings, slug) -> None:
    _problem(http.post("/v1/consultations", json={"age": 54, "sex": "M", "findings": findings}), 422, slug)
    _problem(http.post("/v1/consultations", json={"age": 54, "sex": "X"}), 422, "invalid-input")


@pytest.mark.parametrize("value", [7, 1.5, True, "purple", ["V_999"], ["V_101", 3]])
def test_wrong_answer_types_are_422(http, value) -> None:
    cid = _create(http)["id"]
    q = _question(http, cid)["question"]
    assert q["type"] == "multi"
    r = _answer(http, cid, q["id"], value)
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), r.text
    assert _question(http, cid)["question"] == q  # a rejected answer changes nothing


@pytest.mark.parametrize(
    "body", [{}, {"question_id": "E_55@0"}, {"value": True}, {"question_id": "", "value": True}, {"question_id": 5, "value": True}, []]
)
def test_malformed_answers_are_422(http, body) -> None:
    cid = _create(http)["id"]
    _problem(http.post(f"/v1/consultations/{cid}/answers", json=body), 422, "validation-error")


# ---------------------------------------------------------------- knowledge, docs, logs


def test_knowledge_search(http, pack) -> None:
    r = http.get("/v1/knowledge/conditions", params={"q": "PNEU"}).json()
    assert r["pack"] == {"name": pack.name, "version": pack.version}
    assert {"Pneumonia", "Spontaneous pneumothorax"} <= {c["name"] for c in r["items"]} and r["total"] == len(r["items"])
    assert http.get("/v1/knowledge/conditions").json()["total"] == len(pack.conditions)
    f = http.get("/v1/knowledge/findings", params={"q": "chest", "limit": 2}).json()
    assert len(f["items"]) == 2 and f["total"] > 2 and all(i["answers"][-1]["value"] is None for i in f["items"])
    assert http.get("/v1/knowledge/findings", params={"q": "E_53"}).json()["items"][0]["code"] == "E_53"
    _problem(http.get("/v1/knowledge/findings", params={"limit": 0}), 422)
    _problem(http.get("/v1/knowledge/findings", params={"q": "x" * 101}), 422)


def test_openapi_and_docs(http) -> None:
    spec = http.get("/openapi.json").json()
    assert "/v1/consultations/{consultation_id}/answers" in spec["paths"]
    answer = spec["paths"]["/v1/consultations/{consultation_id}/answers"]["post"]
    assert set(answer["responses"]) >= {"200", "404", "409", "413", "422"}
    assert list(answer["responses"]["409"]["content"]) == [PROBLEM]
    assert "Problem" in spec["components"]["schemas"] and "HTTPValidationError" not in spec["components"]["schemas"]
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_patient_answers_stay_out_of_the_log(http, server) -> None:
    cid = _create(http)["id"]
    q = _question(http, cid)["question"]
    _answer(http, cid, q["id"], "zebra-secret-answer")  # a bad answer is quoted back to the client, not logged
    http.get("/v1/knowledge/findings", params={"q": "zebra-secret-search"})
    time.sleep(0.2)
    log = server.log.read_text(errors="replace")
    assert "POST /v1/consultations" in log  # the access log is on…
    assert "zebra" not in log  # …without answers or search text


def test_error_guard_answers_500_without_leaking(caplog) -> None:
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("patient said " + "ze" + "bra")  # split so the traceback's source line does not hold it

    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    guard = ErrorGuardMiddleware(broken)
    asyncio.run(guard({"type": "http", "method": "GET", "path": "/x", "headers": []}, receive, send))
    assert sent[0]["status"] == 500 and json.loads(sent[1]["body"])["status"] == 500
    assert "RuntimeError" in caplog.text and "zebra" not in caplog.text


# ---------------------------------------------------------------- serve command and restarts


def test_settings_from_environment(tmp_path) -> None:
    s = Settings.from_env({"DIAGNOSTICIAN_DATA_DIR": str(tmp_path), "DIAGNOSTICIAN_MAX_BODY_BYTES": "2048"})
    assert s.data_dir == tmp_path and s.max_body_bytes == 2048 and s.pack == "ddxplus"
    assert s.store_url == f"sqlite:///{tmp_path.resolve()}/consultations.sqlite3"
    assert Settings.from_env({"DIAGNOSTICIAN_DATABASE_URL": "sqlite:///x.db"}).store_url == "sqlite:///x.db"
    for bad in ("many", "10"):
        with pytest.raises(InputError):
            Settings.from_env({"DIAGNOSTICIAN_MAX_BODY_BYTES": bad})
    assert [is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost", "0.0.0.0", "10.0.0.1", "host")] == [
        True, True, True, True, True, False, False, False,
    ]  # fmt: skip


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.org"])
def test_serve_refuses_non_loopback_without_keys(host, capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--host", host, "--data-dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "without an API key" in err


def test_consultation_survives_a_server_restart(tmp_path) -> None:
    first = Server(tmp_path / "data", tmp_path / "first.log")
    try:
        with httpx.Client(base_url=first.url, timeout=10) as http:
            cid = _create(http)["id"]
            q1 = _question(http, cid)["question"]
            acked = _answer(http, cid, q1["id"], ["V_101"]).json()
            pending = _question(http, cid)["question"]
    finally:
        first.stop(signal.SIGKILL)  # no clean shutdown: only what was committed before each reply survives
    second = Server(tmp_path / "data", tmp_path / "second.log")
    try:
        with httpx.Client(base_url=second.url, timeout=10) as http:
            got = http.get(f"/v1/consultations/{cid}").json()
            assert got["questions_asked"] == 1 and got["answers"][-1]["value"] == ["V_101"]
            assert _question(http, cid)["question"] == pending
            replay = _answer(http, cid, q1["id"], ["V_101"])
            assert replay.headers["idempotent-replayed"] == "true" and replay.json() == acked
            assert _answer(http, cid, pending["id"], None).status_code == 200
            assert _question(http, cid)["questions_asked"] == 2
    finally:
        second.stop()



def test_report_and_fhir_exports(http) -> None:
    """The clinician report (Markdown, HTML) and the FHIR bundle are served for a consultation."""
    from fhir.resources.R4B.bundle import Bundle

    cid = _create(http)["id"]
    md = http.get(f"/v1/consultations/{cid}/report")
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert "decision support" in md.text.lower()
    html = http.get(f"/v1/consultations/{cid}/report", params={"format": "html"})
    assert html.status_code == 200 and html.text.lstrip().lower().startswith("<!doctype html")
    bad = http.get(f"/v1/consultations/{cid}/report", params={"format": "pdf"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    fhir = http.get(f"/v1/consultations/{cid}/fhir")
    assert fhir.status_code == 200 and fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(fhir.json())
    kinds = {e.resource.__resource_type__ for e in bundle.entry}
    assert {"Patient", "Observation", "Condition", "RiskAssessment"} <= kinds
    assert http.get(f"/v1/consultations/{'0' * 32}/fhir").status_code == 404


def test_create_a_consultation_from_the_patients_words(http) -> None:
    r = http.post("/v1/consultations", json={"text": "I'm a 54 year old man with chest pain and no fever"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["age"] == 54 and body["sex"] == "M"
    given = {a["finding"]: a["value"] for a in body["answers"]}
    assert given["E_53"] is True and given["E_91"] is False
    entered = {m["code"]: m["entered"] for m in body["intake"]["findings"]}
    assert entered["E_53"] and entered["E_91"]
    # Codes sent explicitly win; a doubtful reading is listed but not entered.
    r = http.post("/v1/consultations", json={"age": 30, "sex": "F", "text": "maybe a fever", "findings": {"E_201": True}})
    body = r.json()
    assert {a["finding"] for a in body["answers"]} == {"E_201"}
    assert body["intake"]["findings"][0]["polarity"] == "uncertain" and not body["intake"]["findings"][0]["entered"]


def test_text_without_age_or_sex_is_a_clear_problem(http) -> None:
    r = http.post("/v1/consultations", json={"text": "I have a cough"})
    assert r.status_code in (400, 422) and "age and sex" in r.json()["detail"]
    r = http.post("/v1/consultations", json={"sex": "F"})
    assert r.status_code in (400, 422) and "age and sex are required" in r.json()["detail"]


def test_parse_endpoint(http) -> None:
    r = http.post("/v1/parse", json={"text": "no fever, but a bad cough since Monday"})
    assert r.status_code == 200
    out = r.json()
    assert {f["code"]: f["polarity"] for f in out["findings"]} == {"E_91": "absent", "E_201": "present"}
    assert http.post("/v1/parse", json={"text": ""}).status_code == 422
    assert http.post("/v1/parse", json={"text": "x" * 5001}).status_code == 422


def test_a_server_on_the_broad_pack_screens_flags_and_suggests_tests(tmp_path) -> None:
    """`serve --pack broad`: a free-text consultation, a screening question, a red flag, suggested tests in the assessment."""
    server = Server(tmp_path / "data", tmp_path / "broad.log", args=("--pack", "broad"))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            made = http.post("/v1/consultations", json={"text": "I'm a 58 year old man with chest pain"})
            assert made.status_code == 201, made.text
            cid = made.json()["id"]
            q = _question(http, cid)["question"]
            assert q["phase"] == "screening" and "danger sign" in q["reason"].lower()
            # Saying yes to the screened danger sign gives emergency advice at once.
            flagged = _answer(http, cid, q["id"], True)
            assert flagged.status_code == 200, flagged.text
            triage = http.get(f"/v1/consultations/{cid}/triage").json()
            assert triage["level"] == "emergency" and triage["red_flags"]
            a = http.get(f"/v1/consultations/{cid}/assessment").json()
            assert a["pack"]["name"] == "broad"
            if a["tests"] is not None:
                assert "not a value-of-information estimate" in a["tests"]["basis"] and all(t["mass"] > 0 for t in a["tests"]["suggested"])
            cough = http.post("/v1/consultations", json={"text": "I'm a 30 year old woman with burning when peeing and frequent urination"}).json()
            tests = http.get(f"/v1/consultations/{cough['id']}/assessment").json()["tests"]
            assert tests is not None and tests["suggested"][0]["conditions"][0][0] == "Urinary tract infection"
    finally:
        server.stop()
