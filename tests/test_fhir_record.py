"""The family health record as a FHIR R4 Bundle: export (validated with fhir.resources' R4B models) and import."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from diagnostician.consult import Consultation
from diagnostician.consult.fhir_record import (
    CONSULTATION_TAG,
    DIARY_SYSTEM,
    EXT_AGE_RECORDED,
    EXT_AGE_YEARS,
    TAG_SYSTEM,
    export_bundle,
    import_bundle,
    import_record,
)
from diagnostician.consult.household import Household
from diagnostician.consult.store import open_store
from diagnostician.errors import InputError

T0 = datetime(2025, 3, 1, 8, 30, tzinfo=timezone.utc)


def _household(tmp_path, name: str = "r.sqlite3") -> Household:
    return Household(open_store(f"sqlite:///{tmp_path / name}"))


@pytest.fixture
def family(tmp_path):
    hh = _household(tmp_path)
    ann = hh.add_member("Ann Smith", "F", birth_date="1980-05-17")
    for kind, text in [("condition", "asthma"), ("medication", "salbutamol inhaler"), ("allergy", "penicillin"), ("antecedent", "smoker")]:
        ann = hh.add_history(ann.id, kind, text)
    bea = hh.add_member("Bea", "female", birth_date="1995-01-02", pregnant=True)
    tim = hh.add_member("Tim", "M", age=4.5)
    hh.record_vital(ann.id, "temperature", "38.5", at=T0, note="after lunch")
    hh.record_vital(ann.id, "bp", "135/85", at=T0 + timedelta(hours=1))
    hh.record_vital(ann.id, "weight", "154 lb", at=T0 + timedelta(hours=2))
    hh.record_symptom(ann.id, "Cough", 6, at=T0 + timedelta(hours=3))
    hh.record_symptom(ann.id, "headache", None, at=T0 + timedelta(hours=4))
    hh.record_vital(bea.id, "heart_rate", 88, at=T0)
    hh.record_vital(tim.id, "temp", "101.3 °F", at=T0 + timedelta(days=1))
    hh.record_symptom(tim.id, "sore throat", 0, at=T0 + timedelta(days=1))
    return hh


def _validate(bundle):
    from fhir.resources.R4B.bundle import Bundle

    json.dumps(bundle)  # JSON-ready
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "collection"
    assert all(type(e.resource).__module__.startswith("fhir.resources.R4B.") for e in parsed.entry)
    return parsed


def _resources(bundle, rtype=None):
    return [e["resource"] for e in bundle["entry"] if rtype is None or e["resource"]["resourceType"] == rtype]


def _profile(m):
    return (m.name, m.sex, m.birth_date, m.age, m.age_on_date, m.pregnant, m.history)


def _diary(hh, m):
    return [(e.kind, e.code, e.value, e.unit, e.at, e.note) for e in hh.diary(m.id)]


def test_export_validates_as_r4b_and_maps_the_record(family) -> None:
    hh = family
    b = export_bundle(hh, hh.members())
    _validate(b)
    assert b["type"] == "collection" and b["meta"]["tag"][0]["system"] == TAG_SYSTEM
    urls = [e["fullUrl"] for e in b["entry"]]
    assert len(set(urls)) == len(urls) and all(u.startswith("urn:uuid:") for u in urls)

    patients = {p["name"][0]["text"]: p for p in _resources(b, "Patient")}
    assert set(patients) == {"Ann Smith", "Bea", "Tim"}
    ann, tim = hh.member("Ann Smith"), hh.member("Tim")
    assert patients["Ann Smith"]["id"] == ann.id and patients["Ann Smith"]["gender"] == "female"
    assert patients["Ann Smith"]["birthDate"] == "1980-05-17" and "extension" not in patients["Ann Smith"]
    assert patients["Tim"]["gender"] == "male" and "birthDate" not in patients["Tim"]
    ext = {x["url"]: x for x in patients["Tim"]["extension"]}
    assert ext[EXT_AGE_YEARS]["valueDecimal"] == 4.5
    assert ext[EXT_AGE_RECORDED]["valueDate"] == tim.age_on_date.isoformat()

    url_of = {e["resource"]["id"]: e["fullUrl"] for e in b["entry"] if e["resource"]["resourceType"] == "Patient"}
    ann_ref = url_of[ann.id]
    patient_urls = set(url_of.values())
    for r in _resources(b):
        if r["resourceType"] != "Patient":
            assert (r.get("subject") or r.get("patient"))["reference"] in patient_urls

    preg = [o for o in _resources(b, "Observation") if o["code"].get("coding", [{}])[0].get("code") == "82810-3"]
    assert len(preg) == 1 and preg[0]["valueCodeableConcept"]["coding"][0]["code"] == "77386006"
    assert preg[0]["subject"]["reference"] == url_of[hh.member("Bea").id]

    cond = _resources(b, "Condition")
    assert [c["code"]["text"] for c in cond] == ["asthma"]
    assert cond[0]["clinicalStatus"]["coding"][0]["code"] == "active"
    assert cond[0]["category"][0]["coding"][0]["code"] == "problem-list-item"
    med = _resources(b, "MedicationStatement")
    assert med[0]["status"] == "active" and med[0]["medicationCodeableConcept"]["text"] == "salbutamol inhaler"
    allergy = _resources(b, "AllergyIntolerance")
    assert allergy[0]["code"]["text"] == "penicillin" and allergy[0]["patient"]["reference"] == ann_ref
    social = [o for o in _resources(b, "Observation") if o.get("category", [{}])[0].get("coding", [{}])[0].get("code") == "social-history"]
    assert [(o["code"]["text"], o["valueBoolean"]) for o in social] == [("smoker", True)]

    vital = {o["code"]["coding"][0]["code"]: o for o in _resources(b, "Observation")
             if o.get("category", [{}])[0].get("coding", [{}])[0].get("code") == "vital-signs"}  # fmt: skip
    temp = [o for o in _resources(b, "Observation") if o["code"].get("coding", [{}])[0].get("code") == "8310-5"]
    assert len(temp) == 2  # Ann's and Tim's
    ann_temp = next(o for o in temp if o["subject"]["reference"] == ann_ref)
    assert ann_temp["valueQuantity"] == {"value": 38.5, "unit": "°C", "system": "http://unitsofmeasure.org", "code": "Cel"}
    assert ann_temp["effectiveDateTime"].startswith("2025-03-01T08:30:00") and ann_temp["note"] == [{"text": "after lunch"}]
    bp = vital["85354-9"]
    assert "valueQuantity" not in bp
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"], c["valueQuantity"]["code"]) for c in bp["component"]] == [
        ("8480-6", 135.0, "mm[Hg]"),
        ("8462-4", 85.0, "mm[Hg]"),
    ]
    assert vital["29463-7"]["valueQuantity"]["value"] == pytest.approx(69.9) and vital["29463-7"]["valueQuantity"]["code"] == "kg"

    symptoms = [o for o in _resources(b, "Observation") if any(c.get("system") == DIARY_SYSTEM for c in o["code"].get("coding", []))]
    by_name = {o["code"]["text"]: o for o in symptoms}
    assert set(by_name) == {"cough", "headache", "sore throat"}
    assert by_name["cough"]["valueInteger"] == 6 and by_name["sore throat"]["valueInteger"] == 0
    assert "valueInteger" not in by_name["headache"]
    assert by_name["cough"]["category"][0]["coding"][0]["code"] == "survey"


def test_round_trip_into_a_fresh_record(family, tmp_path) -> None:
    hh = family
    b = json.loads(json.dumps(export_bundle(hh, hh.members())))
    fresh = _household(tmp_path, "fresh.sqlite3")
    added = import_bundle(fresh, b)
    assert [m.name for m in added] == ["Ann Smith", "Bea", "Tim"]
    assert [m.name for m in fresh.members()] == ["Ann Smith", "Bea", "Tim"]
    for old in hh.members():
        new = fresh.member(old.name)
        assert _profile(new) == _profile(old)
        assert _diary(fresh, new) == _diary(hh, old)
    assert fresh.member("Tim").age == 4.5 and fresh.member("Bea").pregnant
    assert {h.kind for h in fresh.member("Ann Smith").history} == {"condition", "medication", "allergy", "antecedent"}


def test_an_age_recorded_earlier_keeps_its_date(tmp_path) -> None:
    hh = _household(tmp_path)
    kid = hh.add_member("Kid", "M", age=3)
    b = export_bundle(hh, [kid])
    patient = _resources(b, "Patient")[0]
    on = (date.today() - timedelta(days=400)).isoformat()
    next(x for x in patient["extension"] if x["url"] == EXT_AGE_RECORDED)["valueDate"] = on
    fresh = _household(tmp_path, "fresh.sqlite3")
    (m,) = import_bundle(fresh, b)
    assert (m.age, m.age_on_date.isoformat()) == (3, on)
    assert m.age_at() > 4


def test_one_member_export_holds_only_that_member(family) -> None:
    hh = family
    ann = hh.member("Ann Smith")
    b = export_bundle(hh, [ann])
    _validate(b)
    patients = _resources(b, "Patient")
    assert [p["id"] for p in patients] == [ann.id]
    url = next(e["fullUrl"] for e in b["entry"] if e["resource"]["resourceType"] == "Patient")
    others = [r for r in _resources(b) if r["resourceType"] != "Patient"]
    assert len(others) == 4 + 5  # history and diary
    assert all((r.get("subject") or r.get("patient"))["reference"] == url for r in others)
    assert not any(r["code"].get("coding", [{}])[0].get("code") == "82810-3" for r in _resources(b, "Observation"))
    assert export_bundle(hh, [ann])["entry"] == b["entry"]  # deterministic ids for the record's own resources


def test_a_stored_consultation_and_its_followup_are_exported_not_imported(family, tmp_path) -> None:
    hh = family
    bea = hh.member("Bea")
    c = Consultation.begin(30, "F", {"E_91": True}, pack="ddxplus")
    stored, fu = hh.save(c, bea)
    assert fu is not None
    b = export_bundle(hh, [bea])
    _validate(b)
    url = next(e["fullUrl"] for e in b["entry"] if e["resource"]["resourceType"] == "Patient")
    consult = [r for r in _resources(b) if any(t["code"] == CONSULTATION_TAG for t in r.get("meta", {}).get("tag", []))]
    kinds = {r["resourceType"] for r in consult}
    assert {"Observation", "Condition", "RiskAssessment"} <= kinds and "Patient" not in kinds
    assert all(r["meta"]["source"].endswith(stored.id) for r in consult)
    assert all(r["subject"]["reference"] == url for r in consult)
    assert len(_resources(b, "Patient")) == 1  # the consultation's own Patient is left out
    (plan,) = _resources(b, "CarePlan")
    assert plan["status"] == "active" and plan["intent"] == "plan" and plan["subject"]["reference"] == url
    assert plan["period"]["end"] == fu.due_at.isoformat() and plan["description"] == fu.plan["text"]
    assert [a["detail"]["description"] for a in plan.get("activity", [])] == list(fu.plan["watch_for"]) + list(fu.plan["change"])
    risk = next(e["fullUrl"] for e in b["entry"] if e["resource"]["resourceType"] == "RiskAssessment")
    assert plan["supportingInfo"] == [{"reference": risk}]

    hh.cancel_followup(fu.id)
    assert _resources(export_bundle(hh, [bea]), "CarePlan")[0]["status"] == "revoked"

    fresh = _household(tmp_path, "fresh.sqlite3")
    result = import_record(fresh, b)
    (m,) = result.members
    assert result.consultation_resources == len(consult) and result.care_plans == 1
    assert fresh.store.list(member_id=m.id) == [] and fresh.followups(member=m.id, status=None) == []
    assert _profile(m) == _profile(bea) and _diary(fresh, m) == _diary(hh, bea)


def test_duplicate_name_on_import_stores_nothing(family, tmp_path) -> None:
    hh = family
    b = export_bundle(hh, hh.members())
    fresh = _household(tmp_path, "fresh.sqlite3")
    fresh.add_member("Tim", "M", age=30)
    with pytest.raises(InputError, match="'Tim' already exists"):
        import_bundle(fresh, b)
    assert [m.name for m in fresh.members()] == ["Tim"]
    with pytest.raises(InputError, match="already exists"):
        import_bundle(hh, b)  # into the record it came from
    assert len(hh.members()) == 3


def _broken(bundle, change):
    b = copy.deepcopy(bundle)
    change(b)
    return b


def _obs(b, loinc):
    return next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Observation" and e["resource"]["code"].get("coding", [{}])[0].get("code") == loinc)


def _patient(b, name):
    return next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Patient" and e["resource"]["name"][0]["text"] == name)


def _set(d, key, value):
    d[key] = value


BROKEN = [
    ("not a dict", lambda b: None, "a FHIR Bundle"),
    ("not a bundle", lambda b: b.update(resourceType="Patient"), "not resourceType 'Patient'"),
    ("entry not a list", lambda b: b.update(entry={}), "'entry' must be a list"),
    ("entry without resource", lambda b: b["entry"].append({"fullUrl": "urn:uuid:x"}), "has no resource"),
    ("no patient", lambda b: b.update(entry=[e for e in b["entry"] if e["resource"]["resourceType"] != "Patient"]), "no Patient"),
    ("patient without gender", lambda b: _patient(b, "Tim").pop("gender"), "has no gender"),
    ("unknown gender", lambda b: _set(_patient(b, "Tim"), "gender", "other"), "gender 'other'"),
    ("bad birthDate", lambda b: _set(_patient(b, "Ann Smith"), "birthDate", "1980-13-40"), "birth date"),
    ("future birthDate", lambda b: _set(_patient(b, "Ann Smith"), "birthDate", "2999-01-01"), "in the future"),
    ("no name", lambda b: _patient(b, "Tim").pop("name"), "has no name"),
    ("no age", lambda b: _patient(b, "Tim").pop("extension"), "neither a birthDate nor an age"),
    ("unknown loinc", lambda b: _obs(b, "8310-5")["code"]["coding"][0].update(code="1234-5"), "unknown vital-sign LOINC"),
    ("implausible temperature", lambda b: _obs(b, "8310-5")["valueQuantity"].update(value=95), "outside the plausible range"),
    ("wrong unit", lambda b: _obs(b, "8310-5")["valueQuantity"].update(code="[degF]"), "UCUM 'Cel'"),
    ("bp order", lambda b: _obs(b, "85354-9")["component"][0]["valueQuantity"].update(value=60), "check the order"),
    ("missing time", lambda b: _obs(b, "8310-5").pop("effectiveDateTime"), "effectiveDateTime"),
    ("future time", lambda b: _set(_obs(b, "8310-5"), "effectiveDateTime", "2999-01-01T00:00:00+00:00"), "in the future"),
    ("stray reference", lambda b: _obs(b, "8310-5").update(subject={"reference": "urn:uuid:nobody"}), "not in the Bundle"),
    ("duplicate names", lambda b: _set(_patient(b, "Tim")["name"][0], "text", "bea"), "two Patients named"),
    ("pregnant man", lambda b: _obs(b, "82810-3").update(subject={"reference": next(e["fullUrl"] for e in b["entry"] if e["resource"].get("name", [{}])[0].get("text") == "Tim")}), "pregnancy"),
]


@pytest.mark.parametrize("label,change,message", BROKEN, ids=[x[0] for x in BROKEN])
def test_malformed_bundles_are_refused_before_anything_is_stored(family, tmp_path, label, change, message) -> None:
    good = export_bundle(family, family.members())
    bad = None if label == "not a dict" else _broken(good, change)
    fresh = _household(tmp_path, "fresh.sqlite3")
    fresh.add_member("Zoe", "F", age=40)
    with pytest.raises(InputError, match=message) as err:
        import_bundle(fresh, bad)
    assert "\n" not in str(err.value)
    assert [m.name for m in fresh.members()] == ["Zoe"]
    assert fresh.diary("Zoe") == []


def test_bad_severity_and_bad_symptom_are_refused(family, tmp_path) -> None:
    good = export_bundle(family, family.members())
    sym = lambda b: next(r for r in _resources(b, "Observation") if r["code"].get("text") == "cough")  # noqa: E731
    fresh = _household(tmp_path, "fresh.sqlite3")
    for change, message in [(lambda b: sym(b).update(valueInteger=11), "0 to 10"), (lambda b: sym(b)["code"].update(text=" "), "code.text")]:
        with pytest.raises(InputError, match=message):
            import_bundle(fresh, _broken(good, change))
    assert fresh.members() == []


def test_foreign_shapes_are_read_and_unknown_types_skipped(tmp_path) -> None:
    """given + family names, Patient/<id> references, inactive items and unknown resource types."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"given": ["Jo"], "family": "Bloggs"}], "gender": "male", "birthDate": "1970-02-03"}},
            {"resource": {"resourceType": "Condition", "clinicalStatus": {"coding": [{"code": "resolved"}]}, "code": {"text": "old fracture"}, "subject": {"reference": "Patient/p1"}}},
            {"resource": {"resourceType": "Condition", "code": {"coding": [{"display": "Hypertension"}]}, "subject": {"reference": "Patient/p1"}}},
            {"resource": {"resourceType": "Encounter", "status": "finished"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                          "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-06-01T10:00:00Z", "valueQuantity": {"value": 72}}},
        ],
    }  # fmt: skip
    hh = _household(tmp_path)
    result = import_record(hh, bundle)
    (m,) = result.members
    assert (m.name, m.sex, m.birth_date) == ("Jo Bloggs", "M", date(1970, 2, 3))
    assert [(h.kind, h.text) for h in m.history] == [("condition", "Hypertension")]
    assert _diary(hh, m) == [("vital", "heart_rate", 72.0, "beats/min", datetime(2024, 6, 1, 10, tzinfo=timezone.utc), "")]
    assert result.other == 1


def test_a_write_that_fails_midway_leaves_nothing(family, tmp_path, monkeypatch) -> None:
    b = export_bundle(family, family.members())
    fresh = _household(tmp_path, "fresh.sqlite3")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fresh, "record_symptom", broken)
    with pytest.raises(OSError):
        import_bundle(fresh, b)
    assert fresh.members() == []
