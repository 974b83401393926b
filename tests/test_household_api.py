"""The family health record over HTTP (/v1/household), through a real `diagnostician serve` process on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import httpx
import pytest

from diagnostician.consult import Consultation
from diagnostician.consult.household import Household
from diagnostician.consult.store import DB_FILENAME, open_store
from servers import ServerProcess
from test_api import _problem

PROBLEM = "application/problem+json"
H = "/v1/household"
URTI_FEVER = {"E_97": True, "E_201": True, "E_181": True, "E_91": True}  # sore throat, cough, runny nose, fever (DDXPlus)


def _member(http: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "sex": "F", "birth_date": "2019-03-14", **extra}
    r = http.post(f"{H}/members", json=body)
    assert r.status_code == 201, r.text
    m = r.json()
    assert r.headers["location"] == f"{H}/members/{m['id']}"
    return m


def _entry(http: httpx.Client, mid: str, **body: Any) -> httpx.Response:
    return http.post(f"{H}/members/{mid}/diary", json=body)


@pytest.fixture()
def record(server) -> Iterator[Household]:
    """The server's own household record, opened beside it (the same SQLite file), for what the API does not create."""
    hh = Household(open_store(f"sqlite:///{server.data_dir / DB_FILENAME}"))
    yield hh
    hh.store.close()


# ---------------------------------------------------------------- members


def test_members_are_created_listed_changed_and_found_by_id(http) -> None:
    ana = _member(http, "Ana", sex="female", birth_date="1990-05-02", history=[{"kind": "allergy", "text": "penicillin"}])
    assert ana["sex"] == "F" and ana["birth_date"] == "1990-05-02" and ana["history"] == [{"kind": "allergy", "text": "penicillin"}]
    assert 30 < ana["age_now"] < 120 and ana["pregnant"] is False
    sam = http.post(f"{H}/members", json={"name": "Sam", "sex": "M", "age": "8 months"}).json()
    assert 0.6 < sam["age_now"] < 0.7 and sam["birth_date"] is None
    listed = http.get(f"{H}/members").json()
    assert [m["id"] for m in listed if m["id"] in (ana["id"], sam["id"])] == [ana["id"], sam["id"]]
    assert http.get(f"{H}/members/{ana['id']}").json() == ana
    r = http.patch(f"{H}/members/{ana['id']}", json={"name": "Ana Maria", "pregnant": True})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Ana Maria" and r.json()["pregnant"] and r.json()["history"] == ana["history"]
    assert http.patch(f"{H}/members/{sam['id']}", json={}).json()["name"] == "Sam"  # nothing to change
    moved = http.patch(f"{H}/members/{sam['id']}", json={"birth_date": "2020-01-01"}).json()
    assert moved["birth_date"] == "2020-01-01" and moved["age"] is None
    # Paths name members by id only (a name in a URL would reach the access log).
    _problem(http.get(f"{H}/members/Sam"), 404, "member-not-found")
    # Names are unique in the household.
    assert "already exists" in _problem(http.post(f"{H}/members", json={"name": "sam", "sex": "M", "age": 3}), 422, "invalid-input")["detail"]
    _problem(http.patch(f"{H}/members/{sam['id']}", json={"name": "Ana Maria"}), 422, "invalid-input")


@pytest.mark.parametrize(
    "body, words",
    [
        ({"name": "Bo", "sex": "F", "birth_date": "14/03/2019"}, "cannot read the birth date"),
        ({"name": "Bo", "sex": "F", "birth_date": "2019-02-30"}, "cannot read the birth date"),
        ({"name": "Bo", "sex": "F", "birth_date": "2999-01-01"}, "in the future"),
        ({"name": "Bo", "sex": "F", "birth_date": "1850-01-01"}, "years ago"),
        ({"name": "   ", "sex": "F", "age": 3}, "needs a name"),
        ({"name": "Bo", "sex": "X", "age": 3}, "sex must be F or M"),
        ({"name": "Bo", "sex": "F"}, "birth date"),
        ({"name": "Bo", "sex": "F", "age": 130}, "age"),
        ({"name": "Bo", "sex": "M", "age": 30, "pregnant": True}, "pregnancy"),
        ({"name": "Bo", "sex": "F", "age": 3, "history": [{"kind": "hobby", "text": "chess"}]}, "history item is one of"),
    ],
)
def test_invalid_members_are_422_with_the_librarys_message(http, body, words) -> None:
    detail = _problem(http.post(f"{H}/members", json=body), 422, "invalid-input")["detail"]
    assert words in detail and "\n" not in detail


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "", "sex": "F", "age": 3},
        {"name": "x" * 81, "sex": "F", "age": 3},
        {"name": "Bo", "sex": "F", "age": 3, "colour": "red"},
        {"name": "Bo", "sex": "F", "age": True},
        {"name": "Bo", "sex": "F", "birth_date": "2019-03-14", "age": 7},
        {"name": "Bo", "sex": "F", "age": 3, "history": [{"kind": "allergy", "text": "x" * 201}]},
        {"name": "Bo", "sex": "F", "age": 3, "history": [{"kind": "allergy", "text": f"a{i}"} for i in range(101)]},
        [],
    ],
)
def test_malformed_members_are_422(http, body) -> None:
    _problem(http.post(f"{H}/members", content=json.dumps(body), headers={"content-type": "application/json"}), 422, "validation-error")


def test_patch_refuses_nulls_and_unknown_fields(http) -> None:
    mid = _member(http, "Pat")["id"]
    for body in ({"name": None}, {"sex": None}, {"history": []}, {"birth_date": "2019-03-14", "age": 3}):
        _problem(http.patch(f"{H}/members/{mid}", json=body), 422, "validation-error")
    _problem(http.patch(f"{H}/members/{mid}", json={"sex": "other"}), 422, "invalid-input")
    _problem(http.patch(f"{H}/members/{mid}", json={"birth_date": None}), 422, "invalid-input")  # then neither date nor age
    assert http.patch(f"{H}/members/{mid}", json={"birth_date": None, "age": 6}).json()["age"] == 6


# ---------------------------------------------------------------- diary and plots


def test_diary_converts_and_checks_readings(http) -> None:
    mid = _member(http, "Mia")["id"]
    r = _entry(http, mid, kind="vital", code="temp", value="101.3 F", at="2026-01-10T08:00", note="after school")
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["code"] == "temperature" and t["value"] == 38.5 and t["unit"] == "°C" and t["outside_normal"] is True
    assert t["at"] == "2026-01-10T08:00:00+00:00" and t["note"] == "after school" and t["text"] == "38.5 °C"
    bp = _entry(http, mid, kind="vital", code="bp", value="120/80", at="2026-01-10T09:00").json()
    assert bp["code"] == "blood_pressure" and bp["value"] == [120, 80] and bp["unit"] == "mmHg" and bp["outside_normal"] is False
    assert _entry(http, mid, kind="vital", code="temperature", value=37.2, at="2026-01-11T08:00").json()["value"] == 37.2
    sym = _entry(http, mid, kind="symptom", code="  Cough ", severity=4, at="2026-01-10T10:00").json()
    assert sym["code"] == "cough" and sym["value"] == 4 and sym["text"] == "cough: severity 4/10"
    assert _entry(http, mid, kind="symptom", code="tired", value="2").json()["value"] == 2  # value as severity
    assert _entry(http, mid, kind="symptom", code="rash").json()["value"] is None  # noted without a score
    diary = http.get(f"{H}/members/{mid}/diary").json()
    assert [e["id"] for e in diary][:4] == [t["id"], bp["id"], sym["id"], diary[3]["id"]] and len(diary) == 6
    assert [e["at"] for e in diary] == sorted(e["at"] for e in diary)  # oldest first


@pytest.mark.parametrize(
    "body, slug, words",
    [
        ({"kind": "vital", "code": "temp", "value": "60"}, "invalid-input", "outside the plausible range"),
        ({"kind": "vital", "code": "temp", "value": "38", "unit": "K"}, "invalid-input", "unknown unit"),
        ({"kind": "vital", "code": "glow", "value": "3"}, "invalid-input", "unknown vital sign"),
        ({"kind": "vital", "code": "bp", "value": "80/120"}, "invalid-input", None),
        ({"kind": "vital", "code": "temp", "value": "hot"}, "invalid-input", "cannot read a number"),
        ({"kind": "vital", "code": "temp", "value": "38", "at": "yesterday"}, "invalid-input", "cannot read the time"),
        ({"kind": "vital", "code": "temp", "value": "38", "at": "2999-01-01"}, "invalid-input", "in the future"),
        ({"kind": "symptom", "code": "cough", "severity": 11}, "invalid-input", "0 to 10"),
        ({"kind": "symptom", "code": "cough", "severity": "bad"}, "invalid-input", "0 to 10"),
        ({"kind": "symptom", "code": "   "}, "invalid-input", "name the symptom"),
        ({"kind": "vital", "code": "temp"}, "validation-error", "needs a value"),
        ({"kind": "vital", "code": "temp", "value": "38", "severity": 3}, "validation-error", None),
        ({"kind": "symptom", "code": "cough", "unit": "mm"}, "validation-error", None),
        ({"kind": "mood", "code": "happy"}, "validation-error", None),
        ({"kind": "vital", "code": "temp", "value": True}, "validation-error", None),
        ({"kind": "vital", "code": "temp", "value": "38", "note": "x" * 201}, "validation-error", None),
    ],
)
def test_bad_diary_entries_are_422(http, body, slug, words) -> None:
    mid = _member(http, f"Diarist {uuid.uuid4().hex[:8]}")["id"]
    detail = _problem(_entry(http, mid, **body), 422, slug)["detail"]
    assert words is None or words in detail
    assert http.get(f"{H}/members/{mid}/diary").json() == []  # nothing stored


def test_plots_are_svg_documents(http) -> None:
    mid = _member(http, "Plotted")["id"]
    assert http.get(f"{H}/members/{mid}/plots").json() == []
    for at, temp in (("2026-01-10T08:00", "101.3 F"), ("2026-01-11T08:00", "37.9"), ("2026-01-12T08:00", "37.0")):
        assert _entry(http, mid, kind="vital", code="temperature", value=temp, at=at).status_code == 201
    _entry(http, mid, kind="vital", code="bp", value="130/85", at="2026-01-10T08:00")
    _entry(http, mid, kind="symptom", code="<b>itch</b> & co", severity=5, at="2026-01-10T08:00")
    plots = http.get(f"{H}/members/{mid}/plots").json()
    assert [(p["index"], p["title"], p["points"]) for p in plots] == [
        (0, "Temperature", 3), (1, "Systolic blood pressure", 1), (2, "Diastolic blood pressure", 1), (3, "<b>itch</b> & co (severity)", 1),
    ]  # fmt: skip
    for p in plots:
        root = ET.fromstring(p["svg"])  # well-formed XML, user text escaped
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "<b>" not in plots[3]["svg"] and "&lt;b&gt;itch" in plots[3]["svg"]
    assert plots[0]["unit"] == "°C" and len(ET.fromstring(plots[0]["svg"]).findall(".//{http://www.w3.org/2000/svg}circle")) == 3
    one = http.get(f"{H}/members/{mid}/plots/0.svg")
    assert one.status_code == 200 and one.headers["content-type"].startswith("image/svg+xml") and one.text == plots[0]["svg"]
    _problem(http.get(f"{H}/members/{mid}/plots/4.svg"), 404, "plot-not-found")
    _problem(http.get(f"{H}/members/{mid}/plots/x.svg"), 422)
    _problem(http.get(f"{H}/members/{mid}/plots/-1.svg"), 422)


# ---------------------------------------------------------------- follow-ups


def test_followups_are_listed_and_cancelled(http, record, pack) -> None:
    mid = _member(http, "Fola", birth_date="1990-05-02")["id"]
    other = _member(http, "Other", birth_date="1985-01-01")["id"]
    member = record.member(mid)
    now = datetime.now(timezone.utc)

    def consult(who, when):
        c = Consultation.begin(who.age_at(when), who.sex, URTI_FEVER, pack=pack)
        while (q := c.next_question()) is not None:
            c.answer(q.code, pack.finding(q.code).absent_value())
        return record.save(c, who, now=when)[1]

    old = consult(member, now - timedelta(days=5))  # re-check due days ago
    new = consult(member, now)  # due in the future
    theirs = consult(record.member(other), now - timedelta(days=5))
    assert old and new and theirs

    def ids(**params: Any) -> list[str]:
        r = http.get(f"{H}/followups", params=params)
        assert r.status_code == 200, r.text
        return [f["id"] for f in r.json()]

    assert ids(member=mid) == [old.id, new.id]  # soonest due first
    assert ids(member=mid, due="true") == [old.id] and ids(member=mid, due="false") == [old.id, new.id]
    assert {old.id, theirs.id} <= set(ids(due="true")) and new.id not in ids(due="true")
    view = http.get(f"{H}/followups", params={"member": mid}).json()[0]
    assert view["due"] is True and view["status"] == "open" and view["member_id"] == mid and view["plan"]
    assert http.get(f"{H}/followups/{old.id}").json() == view
    cancelled = http.post(f"{H}/followups/{old.id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled" and cancelled.json()["due"] is False
    assert http.post(f"{H}/followups/{old.id}/cancel").json() == cancelled.json()  # again: the same
    assert ids(member=mid) == [new.id] and ids(member=mid, status="cancelled") == [old.id]
    assert ids(member=mid, status="all") == [old.id, new.id]
    record.store.close_followup(new.id, "done", {})
    _problem(http.post(f"{H}/followups/{new.id}/cancel"), 409, "followup-closed")
    _problem(http.post(f"{H}/followups/0123abc/cancel"), 404, "followup-not-found")
    _problem(http.get(f"{H}/followups/0123abc"), 404, "followup-not-found")
    _problem(http.get(f"{H}/followups", params={"member": "nobody-at-all"}), 404, "member-not-found")
    _problem(http.get(f"{H}/followups", params={"status": "lost"}), 422, "validation-error")
    _problem(http.get(f"{H}/followups", params={"due": "maybe"}), 422, "validation-error")


# ---------------------------------------------------------------- deletion, unknown members, limits


def test_deleting_a_member_deletes_their_data(http, record, pack) -> None:
    mid = _member(http, "Gone Soon")["id"]
    keep = _member(http, "Stays")["id"]
    for m in (mid, keep):
        assert _entry(http, m, kind="vital", code="temp", value="38.2").status_code == 201
    c = Consultation.begin(7, "F", URTI_FEVER, pack=pack)
    stored, fu = record.save(c, record.member(mid))
    assert http.delete(f"{H}/members/{mid}").status_code == 204
    for path in ("", "/diary", "/plots", "/plots/0.svg"):
        _problem(http.get(f"{H}/members/{mid}{path}"), 404, "member-not-found")
    _problem(http.delete(f"{H}/members/{mid}"), 404)
    assert mid not in {m["id"] for m in http.get(f"{H}/members").json()}
    assert record.store.diary(keep) and not [d for d in _raw(record, "SELECT member_id FROM diary") if d[0] == mid]
    assert not [f for f in _raw(record, "SELECT member_id FROM followups") if f[0] == mid]
    assert not [c for c in _raw(record, "SELECT member_id FROM consultations") if c[0] == mid]
    if fu is not None:
        _problem(http.get(f"{H}/followups/{fu.id}"), 404)


def _raw(record: Household, sql: str) -> list[tuple[Any, ...]]:
    return record.store._read(sql, ())


def test_unknown_members_are_404(http) -> None:
    nobody = "0123456789ab"
    for path in ("", "/diary", "/plots", "/plots/0.svg"):
        _problem(http.get(f"{H}/members/{nobody}{path}"), 404, "member-not-found")
    _problem(http.patch(f"{H}/members/{nobody}", json={"name": "X"}), 404, "member-not-found")
    _problem(http.delete(f"{H}/members/{nobody}"), 404, "member-not-found")
    _problem(_entry(http, nobody, kind="vital", code="temp", value="38"), 404, "member-not-found")


def test_oversized_and_non_json_bodies(http) -> None:
    mid = _member(http, "Big")["id"]
    big = json.dumps({"kind": "symptom", "code": "cough", "note": "x" * 70_000}).encode()
    _problem(http.post(f"{H}/members/{mid}/diary", content=big, headers={"content-type": "application/json"}), 413, "body-too-large")
    _problem(http.post(f"{H}/members", content=b'{"name": "A", ', headers={"content-type": "application/json"}), 400, "malformed-json")
    _problem(http.post(f"{H}/members", content=b'{"name": "A", "sex": "F", "age": 3}', headers={"content-type": "text/plain"}), 415)
    assert http.get(f"{H}/members/{mid}/diary").json() == []


def test_openapi_documents_the_household(http) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert {f"{H}/members", f"{H}/members/{{member_id}}", f"{H}/members/{{member_id}}/diary", f"{H}/members/{{member_id}}/plots",
            f"{H}/members/{{member_id}}/plots/{{index}}.svg", f"{H}/followups", f"{H}/followups/{{followup_id}}/cancel"} <= set(paths)  # fmt: skip
    create = paths[f"{H}/members"]["post"]
    assert list(create["responses"]["422"]["content"]) == [PROBLEM] and "shared" in create["description"]
    vitals = http.get(f"{H}/vitals").json()
    assert {"temperature", "blood_pressure"} <= {v["code"] for v in vitals} and all(v["example"] for v in vitals)


# ---------------------------------------------------------------- keys and a locked record


def test_household_needs_a_key_when_keys_are_required(tmp_path) -> None:
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "diagnostician.cli.main", "keys", "create", "--name", "family", "--data-dir", str(data)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    srv = ServerProcess(["serve", "--require-keys"], "/v1/health", data, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            _problem(http.get(f"{H}/members"), 401, "unauthorized")
            _problem(http.post(f"{H}/members", json={"name": "A", "sex": "F", "age": 3}), 401)
            _problem(http.get(f"{H}/members", headers={"Authorization": "Bearer dx_wrong"}), 401)
            auth = {"Authorization": f"Bearer {key}"}
            r = http.post(f"{H}/members", json={"name": "A", "sex": "F", "age": 3}, headers=auth)
            assert r.status_code == 201, r.text
            assert [m["name"] for m in http.get(f"{H}/members", headers={"X-API-Key": key}).json()] == ["A"]
    finally:
        srv.stop()


def test_a_locked_record_is_503_not_500(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from diagnostician.api.app import create_app
    from diagnostician.api.settings import Settings
    from diagnostician.consult.crypto import RecordLockedError

    class Locked(Household):
        def members(self):  # type: ignore[override]
            raise RecordLockedError("the record is encrypted: give its passphrase")

    app = create_app(Settings(data_dir=tmp_path))
    with TestClient(app) as client:
        app.state.household = Locked(app.state.household.store)
        r = client.get(f"{H}/members")
        _problem(r, 503, "record-locked")
        assert "passphrase" in r.json()["detail"]


def test_member_consultation_confirms_the_record_first_and_a_follow_up_applies_course_rules(http, record) -> None:
    """A consultation for a member: record history asked first; its plan stored as a follow-up; the follow-up over HTTP."""
    mid = _member(http, "Rosa", sex="F", birth_date="1980-03-01", history=[{"kind": "antecedent", "text": "smoker"}])["id"]
    r = http.post("/v1/consultations", json={"member_id": mid, "findings": {"E_97": True, "E_201": True, "E_181": True}})
    assert r.status_code == 201, r.text
    created = r.json()
    cid = created["id"]
    assert created["member_id"] == mid and created["sex"] == "F" and 40 < created["age"] < 60
    q = http.get(f"/v1/consultations/{cid}/question").json()["question"]
    assert q["phase"] == "record" and q["finding"] == "E_79" and "family health record" in q["reason"]
    for _ in range(60):
        step = http.get(f"/v1/consultations/{cid}/question").json()
        if step["done"]:
            break
        q = step["question"]
        value = True if q["finding"] == "E_79" else (False if q["type"] == "binary" else None)
        assert http.post(f"/v1/consultations/{cid}/answers", json={"question_id": q["id"], "value": value}).status_code == 200
    a = http.get(f"/v1/consultations/{cid}/assessment").json()
    assert a["plan"]["text"] and a["plan"]["level"] == a["triage"]["level"]
    _problem(http.post(f"{H}/followups", json={"consultation_id": "nope"}), 404)
    planned = http.post(f"{H}/followups", json={"consultation_id": cid})
    assert planned.status_code == 201, planned.text
    assert a["triage"]["level"] != "emergency"  # a cold-like illness: a home re-check is planned
    assert planned.json()["member_id"] == mid and planned.json()["plan"]["recheck_hours"] == a["plan"]["recheck_hours"]

    # Eight days on, the sore throat is still there: the one-week course rule fires in the follow-up.
    eight_days_ago = datetime.now(timezone.utc) - timedelta(days=8)
    fu = record.plan(cid, now=eight_days_ago)
    ongoing = http.get(f"{H}/followups/{fu.id}/ongoing").json()["ongoing"]
    assert {o["finding"] for o in ongoing} >= {"E_97", "E_201"} and all(o["days"] >= 8 for o in ongoing)
    _problem(http.post(f"{H}/followups/{fu.id}/start", json={"still": {"E_1": True}}), 422)
    r = http.post(f"{H}/followups/{fu.id}/start", json={"still": {"E_97": True, "E_201": False}, "text": "now I have a fever"})
    assert r.status_code == 201, r.text
    follow = r.json()
    assert follow["member_id"] == mid and any(f["id"] == "course-sore-throat-1w" for f in follow["red_flags"])
    assert any(x["finding"] == "E_91" and x["value"] is True for x in follow["answers"])  # what is new was read
    assert http.get(f"{H}/followups/{fu.id}").json()["status"] == "done"
    assert http.get(f"{H}/followups/{fu.id}").json()["next_consultation_id"] == follow["id"]
    _problem(http.post(f"{H}/followups/{fu.id}/start", json={}), 409)
    tri = http.get(f"/v1/consultations/{follow['id']}/triage").json()
    assert any(f["id"] == "course-sore-throat-1w" for f in tri["red_flags"])


def test_household_export_and_import_over_http(http) -> None:
    mid = _member(http, "Ines", sex="F", birth_date="2001-09-09", history=[{"kind": "allergy", "text": "penicillin"}])["id"]
    assert _entry(http, mid, kind="vital", code="temperature", value="38.2", at="2026-11-20T08:00:00+00:00").status_code == 201
    r = http.get(f"{H}/export", params={"member": mid})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)
    kinds = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    assert kinds.count("Patient") == 1 and "AllergyIntolerance" in kinds and "Observation" in kinds
    _problem(http.post(f"{H}/import", json=bundle), 422)  # Ines exists: nothing is stored
    assert http.delete(f"{H}/members/{mid}").status_code == 204
    r = http.post(f"{H}/import", json=bundle)
    assert r.status_code == 201, r.text
    (ines,) = r.json()["members"]
    assert ines["name"] == "Ines" and ines["history"] == [{"kind": "allergy", "text": "penicillin"}]
    assert [d["text"] for d in http.get(f"{H}/members/{ines['id']}/diary").json()] == ["38.2 °C"]
    _problem(http.post(f"{H}/import", json={"resourceType": "Patient"}), 422)
    _problem(http.get(f"{H}/export", params={"member": "nobody"}), 404)
