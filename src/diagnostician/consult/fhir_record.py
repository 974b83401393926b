"""The family health record as a FHIR R4 Bundle (type "collection"): export, and import of members into a record.

Export (``export_bundle``), per member, every resource named by a ``urn:uuid:`` fullUrl (uuid5, deterministic
for the record's own resources) and pointing at the member's Patient by that fullUrl:

- Patient: id = member id, name.text, gender female/male, birthDate when known; when only an age is known,
  extensions EXT_AGE_YEARS (valueDecimal, years) and EXT_AGE_RECORDED (valueDate, the day it was recorded).
- Pregnancy: Observation LOINC 82810-3 "Pregnancy status", valueCodeableConcept SNOMED 77386006 "Pregnant".
- History: condition → Condition (clinicalStatus active, category problem-list-item, code.text);
  medication → MedicationStatement (status active, medicationCodeableConcept.text); allergy →
  AllergyIntolerance (clinicalStatus active, code.text); antecedent → Observation, category social-history,
  code.text = the text, valueBoolean true.
- Diary: a vital → Observation, category vital-signs, the vital's LOINC code, effectiveDateTime, valueQuantity
  in the table's UCUM unit (blood pressure: panel 85354-9 with systolic 8480-6 and diastolic 8462-4
  components in mm[Hg]); a symptom → Observation, category survey, code = DIARY_SYSTEM#symptom with the
  symptom's name as code.text, valueInteger = severity (no value when none was given). Notes are kept.
- Consultations of the member: the resources of ``export.fhir_bundle`` (its own Patient left out, its references
  moved to the member's Patient), tagged CONSULTATION_TAG with meta.source naming the stored consultation.
- Follow-ups: CarePlan (status active / completed / revoked for open / done / cancelled; intent plan;
  period.end = when it is due; description = the plan text; one activity per watch-for and change line).

Import (``import_bundle``) reads Patients, pregnancy, history (Condition, MedicationStatement,
AllergyIntolerance, social-history Observation) and diary Observations (vital signs, diary symptoms) back
into new members. The whole bundle is checked first (one-line InputError naming the entry), and only then
written; were a write still to fail, the members added so far are deleted again. Consultations and care
plans are not imported: they are exported for the clinician, and the engine state is not reconstructed
from them; they are skipped and counted (``import_record`` returns the counts). Resource types the record
does not hold are skipped.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterator, Mapping, Sequence

from diagnostician import __version__
from diagnostician.consult.export import (
    CONDITION_CATEGORY_SYSTEM,
    OBSERVATION_CATEGORY_SYSTEM,
    UCUM_SYSTEM,
    fhir_bundle,
)
from diagnostician.consult.household import (
    MAX_HISTORY,
    MAX_NAME,
    MAX_TEXT,
    HistoryItem,
    Household,
    Member,
    history_item,
    now_utc,
    parse_birth_date,
    parse_when,
)
from diagnostician.consult.session import Consultation
from diagnostician.engine.posterior import check_age
from diagnostician.errors import InputError
from diagnostician.knowledge.schema import Pack, load_pack
from diagnostician.knowledge.vitals import Vital, load_vitals, parse_reading

BASE = "https://diagnostician.invalid/fhir"
EXT_AGE_YEARS = f"{BASE}/StructureDefinition/age-years"  # valueDecimal: age in years on EXT_AGE_RECORDED's date
EXT_AGE_RECORDED = f"{BASE}/StructureDefinition/age-recorded-on"  # valueDate
DIARY_SYSTEM = f"{BASE}/CodeSystem/diary"  # code "symptom": a symptom noted in the diary
TAG_SYSTEM = f"{BASE}/CodeSystem/source"  # meta.tag codes below
RECORD_TAG = "family-record"  # the bundle: exported from the family health record
CONSULTATION_TAG = "consultation"  # a resource of a stored consultation
CONSULTATION_SOURCE = f"{BASE}/consultation/"  # meta.source of consultation resources: + consultation id
_NS = uuid.uuid5(uuid.NAMESPACE_URL, BASE)

LOINC_SYSTEM = "http://loinc.org"
SNOMED_SYSTEM = "http://snomed.info/sct"
PREGNANCY_LOINC = "82810-3"
PREGNANT_SNOMED = "77386006"
NOT_PREGNANT_SNOMED = "60001007"
CLINICAL_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ALLERGY_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
CAREPLAN_STATUS = {"open": "active", "done": "completed", "cancelled": "revoked"}
ACTIVITY_STATUS = {"open": "in-progress", "done": "completed", "cancelled": "cancelled"}
MAX_ENTRIES = 100_000

_GENDER = {"F": "female", "M": "male"}


def _uid(key: str) -> str:
    return str(uuid.uuid5(_NS, key))


def _ref(full_url: str) -> dict[str, str]:
    return {"reference": full_url}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    d = {"system": system, "code": code}
    if display:
        d["display"] = display
    return d


def _category(system: str, code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [_coding(system, code, display)]}]


def _time(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat()


# ---------------------------------------------------------------- export


def export_bundle(hh: Household, members: Sequence[Member]) -> dict[str, Any]:
    """One member's record, or the household's, as a FHIR R4 Bundle (type collection)."""
    vitals = load_vitals()
    packs: dict[str, Pack] = {}
    entries: list[dict[str, Any]] = []
    for m in members:
        entries.extend(_member_entries(hh, m, vitals, packs))
    now = now_utc().replace(microsecond=0)
    root = uuid.uuid4()
    return {
        "resourceType": "Bundle",
        "id": str(root),
        "meta": {"tag": [_coding(TAG_SYSTEM, RECORD_TAG, f"Family health record exported by diagnostician {__version__}")]},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{root}"},
        "type": "collection",
        "timestamp": now.isoformat(),
        "entry": entries,
    }


def _member_entries(hh: Household, m: Member, vitals: Mapping[str, Vital], packs: dict[str, Pack]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    patient_url = f"urn:uuid:{_uid(f'patient:{m.id}')}"
    subject = _ref(patient_url)

    def add(key: str, resource: dict[str, Any]) -> str:
        rid = _uid(f"{m.id}:{key}")
        entries.append({"fullUrl": f"urn:uuid:{rid}", "resource": {**{"resourceType": resource.pop("resourceType"), "id": rid}, **resource}})
        return f"urn:uuid:{rid}"

    patient: dict[str, Any] = {"resourceType": "Patient", "id": m.id}
    if m.birth_date is None and m.age is not None:
        patient["extension"] = [{"url": EXT_AGE_YEARS, "valueDecimal": m.age}]
        if m.age_on_date is not None:
            patient["extension"].append({"url": EXT_AGE_RECORDED, "valueDate": m.age_on_date.isoformat()})
    patient["name"] = [{"text": m.name}]
    patient["gender"] = _GENDER.get(m.sex, "unknown")
    if m.birth_date is not None:
        patient["birthDate"] = m.birth_date.isoformat()
    entries.append({"fullUrl": patient_url, "resource": patient})

    if m.pregnant:
        add("pregnancy", {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [_coding(LOINC_SYSTEM, PREGNANCY_LOINC, "Pregnancy status")], "text": "Pregnancy status"},
            "subject": subject,
            "valueCodeableConcept": {"coding": [_coding(SNOMED_SYSTEM, PREGNANT_SNOMED, "Pregnant")], "text": "Pregnant"},
        })  # fmt: skip

    for i, item in enumerate(m.history):
        add(f"history:{i}", _history_resource(item, subject))

    for e in hh.diary(m.id):
        obs: dict[str, Any] = {"resourceType": "Observation", "status": "final"}
        if e.kind == "vital":
            v = vitals[e.code]
            obs["category"] = _category(OBSERVATION_CATEGORY_SYSTEM, "vital-signs", "Vital Signs")
            obs["code"] = {"coding": [_coding(LOINC_SYSTEM, v.loinc, v.loinc_display)], "text": v.label}
            obs["subject"] = subject
            obs["effectiveDateTime"] = _time(e.at)
            if v.components and isinstance(e.value, tuple):
                obs["component"] = [
                    {
                        "code": {"coding": [_coding(LOINC_SYSTEM, c.loinc, c.loinc_display or c.label)], "text": c.label},
                        "valueQuantity": _quantity(x, v),
                    }
                    for c, x in zip(v.components, e.value)
                ]
            elif isinstance(e.value, (int, float)):
                obs["valueQuantity"] = _quantity(e.value, v)
        else:
            obs["category"] = _category(OBSERVATION_CATEGORY_SYSTEM, "survey", "Survey")
            obs["code"] = {"coding": [_coding(DIARY_SYSTEM, "symptom", "Symptom noted in the diary")], "text": e.code}
            obs["subject"] = subject
            obs["effectiveDateTime"] = _time(e.at)
            obs["performer"] = [subject]  # patient-reported
            if e.value is not None:
                obs["valueInteger"] = int(e.value)  # type: ignore[arg-type]
        if e.note:
            obs["note"] = [{"text": e.note}]
        add(f"diary:{e.id}", obs)

    risk_of: dict[str, str] = {}
    offset = 0
    while True:
        page = hh.store.list(limit=100, offset=offset, member_id=m.id)
        for summary in page:
            risk = _consultation_entries(hh, summary.id, patient_url, packs, entries)
            if risk:
                risk_of[summary.id] = risk
        if len(page) < 100:
            break
        offset += 100

    for fu in hh.followups(member=m.id, status=None):
        plan = fu.plan
        lines = [str(x) for x in list(plan.get("watch_for") or []) + list(plan.get("change") or [])]
        care: dict[str, Any] = {
            "resourceType": "CarePlan",
            "status": CAREPLAN_STATUS.get(fu.status, "unknown"),
            "intent": "plan",
            "title": "Re-check",
            "subject": subject,
            "period": {"end": _time(fu.due_at)},
        }
        if plan.get("text"):
            care["description"] = str(plan["text"])
        if fu.consultation_id in risk_of:
            care["supportingInfo"] = [_ref(risk_of[fu.consultation_id])]
        if lines:
            care["activity"] = [{"detail": {"status": ACTIVITY_STATUS.get(fu.status, "unknown"), "description": x}} for x in lines]
        add(f"followup:{fu.id}", care)
    return entries


def _quantity(value: float, v: Vital) -> dict[str, Any]:
    return {"value": float(value), "unit": v.unit, "system": UCUM_SYSTEM, "code": v.ucum}


def _history_resource(item: HistoryItem, subject: dict[str, str]) -> dict[str, Any]:
    if item.kind == "condition":
        return {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [_coding(CLINICAL_STATUS_SYSTEM, "active", "Active")]},
            "category": _category(CONDITION_CATEGORY_SYSTEM, "problem-list-item", "Problem List Item"),
            "code": {"text": item.text},
            "subject": subject,
        }
    if item.kind == "medication":
        return {"resourceType": "MedicationStatement", "status": "active", "medicationCodeableConcept": {"text": item.text}, "subject": subject}
    if item.kind == "allergy":
        return {
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [_coding(ALLERGY_STATUS_SYSTEM, "active", "Active")]},
            "code": {"text": item.text},
            "patient": subject,
        }
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": _category(OBSERVATION_CATEGORY_SYSTEM, "social-history", "Social History"),
        "code": {"text": item.text},
        "subject": subject,
        "valueBoolean": True,
    }


def _consultation_entries(hh: Household, consultation_id: str, patient_url: str, packs: dict[str, Pack], out: list[dict[str, Any]]) -> str | None:
    """Add a stored consultation's FHIR resources (referring to the member's Patient); the fullUrl of its RiskAssessment."""
    stored = hh.store.get(consultation_id)
    if stored.pack_name not in packs:
        packs[stored.pack_name] = load_pack(stored.pack_name)
    bundle = fhir_bundle(Consultation.from_dict(stored.data, packs[stored.pack_name]))
    old = [e["fullUrl"] for e in bundle.get("entry", []) if e["resource"].get("resourceType") == "Patient"]
    risk = None
    for e in bundle.get("entry", []):
        res = e["resource"]
        if res.get("resourceType") == "Patient":
            continue
        res = _moved(res, set(old), patient_url)
        res["meta"] = {"source": CONSULTATION_SOURCE + stored.id, "tag": [_coding(TAG_SYSTEM, CONSULTATION_TAG, "From a stored consultation")]}
        if res.get("resourceType") == "RiskAssessment":
            risk = e["fullUrl"]
        out.append({"fullUrl": e["fullUrl"], "resource": res})
    return risk


def _moved(node: Any, old: set[str], new: str) -> Any:
    """A copy of a resource with references to the old Patient fullUrls pointing at the new one."""
    if isinstance(node, dict):
        if set(node) >= {"reference"} and node.get("reference") in old:
            return {**node, "reference": new}
        return {k: _moved(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_moved(v, old, new) for v in node]
    return node


# ---------------------------------------------------------------- import


@dataclass
class _Incoming:
    """A member read from the bundle, checked, not yet stored."""

    where: str
    name: str
    sex: str
    birth_date: date | None
    age: float | None
    age_on: date | None
    pregnant: bool = False
    history: list[HistoryItem] = field(default_factory=list)
    vitals: list[tuple[str, str | float, datetime, str]] = field(default_factory=list)  # code, value, at, note
    symptoms: list[tuple[str, int | None, datetime, str]] = field(default_factory=list)  # name, severity, at, note


@dataclass(frozen=True)
class ImportResult:
    """What an import added, and what it skipped."""

    members: list[Member]
    consultation_resources: int = 0  # resources of exported consultations (not re-imported)
    care_plans: int = 0  # CarePlans (not re-imported)
    other: int = 0  # resources the record does not hold


def import_bundle(hh: Household, bundle: Any) -> list[Member]:
    """Add the members of a FHIR R4 Bundle to the record (diary, history), checked before anything is stored.

    Consultations and CarePlans are not re-imported: they are exported for the clinician, and the engine state
    is not reconstructed from them (see ``import_record`` for the counts of what was skipped).
    """
    return import_record(hh, bundle).members


def import_record(hh: Household, bundle: Any) -> ImportResult:
    """``import_bundle`` that also counts the resources it skipped."""
    incoming, counts = _read_bundle(hh, bundle)
    added: list[Member] = []
    try:
        for p in incoming:
            m = hh.add_member(p.name, p.sex, p.birth_date, p.age, p.pregnant, tuple(p.history))
            if p.birth_date is None and p.age is not None and p.age_on is not None and m.age_on_date != p.age_on:
                # keep the age as recorded, on the day it was recorded (add_member dates a given age today)
                kept = Member(m.id, m.name, m.sex, None, p.age, p.age_on, m.pregnant, m.history, m.created_at)
                m = Member.from_stored(m.id, hh.store.update_member(m.id, kept.to_dict()).data, m.created_at)
            added.append(m)
            for code, value, at, note in p.vitals:
                hh.record_vital(m.id, code, value, at=at, note=note)
            for name, severity, at, note in p.symptoms:
                hh.record_symptom(m.id, name, severity, at=at, note=note)
    except BaseException:
        for m in added:  # nothing half-imported stays
            try:
                hh.store.delete_member(m.id)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        raise
    return ImportResult(added, counts["consultation"], counts["careplan"], counts["other"])


def _text_of(concept: Any) -> str:
    """A CodeableConcept's text, else its first coding's display."""
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return concept["text"]
    for c in _codings(concept):
        if isinstance(c.get("display"), str) and c["display"].strip():
            return c["display"]
    return ""


def _codings(concept: Any) -> Iterator[dict[str, Any]]:
    if isinstance(concept, dict) and isinstance(concept.get("coding"), list):
        yield from (c for c in concept["coding"] if isinstance(c, dict))


def _has_code(concept: Any, system: str, code: str | None = None) -> bool:
    return any(c.get("system") == system and (code is None or c.get("code") == code) for c in _codings(concept))


def _codes(concept: Any, system: str) -> list[str]:
    return [str(c.get("code")) for c in _codings(concept) if c.get("system") == system]


def _categories(res: Mapping[str, Any]) -> set[str]:
    cats = res.get("category")
    if not isinstance(cats, list):
        return set()
    return {str(c.get("code")) for cat in cats for c in _codings(cat)}


def _status(concept: Any) -> str | None:
    codes = [str(c.get("code")) for c in _codings(concept)]
    return codes[0] if codes else None


def _read_bundle(hh: Household, bundle: Any) -> tuple[list[_Incoming], dict[str, int]]:
    """Every member of the bundle, checked; InputError naming the first problem."""
    if not isinstance(bundle, dict):
        raise InputError(f"a FHIR Bundle (a JSON object) is needed, not {type(bundle).__name__}")
    if bundle.get("resourceType") != "Bundle":
        raise InputError(f"a FHIR Bundle is needed, not resourceType {bundle.get('resourceType')!r}")
    raw = bundle.get("entry", [])
    if not isinstance(raw, list):
        raise InputError("the Bundle's 'entry' must be a list")
    if len(raw) > MAX_ENTRIES:
        raise InputError(f"the Bundle has {len(raw)} entries; at most {MAX_ENTRIES} can be imported")
    entries: list[tuple[str, dict[str, Any]]] = []
    for i, e in enumerate(raw):
        if not isinstance(e, dict) or not isinstance(e.get("resource"), dict):
            raise InputError(f"Bundle entry {i} has no resource")
        res = e["resource"]
        rtype = res.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            raise InputError(f"Bundle entry {i}: the resource has no resourceType")
        rid = res.get("id")
        entries.append((f"Bundle entry {i} ({rtype}{' ' + str(rid) if rid else ''})", e))

    patients: dict[str, _Incoming] = {}  # reference → member
    incoming: list[_Incoming] = []
    for where, e in entries:
        res = e["resource"]
        if res["resourceType"] != "Patient":
            continue
        p = _patient(res, where)
        keys = [k for k in (e.get("fullUrl"), f"Patient/{res['id']}" if isinstance(res.get("id"), str) and res["id"] else None) if isinstance(k, str) and k]
        if not keys:
            raise InputError(f"{where}: a Patient needs a fullUrl or an id for the other resources to refer to it")
        for k in keys:
            if k in patients:
                raise InputError(f"{where}: another Patient already has the reference {k!r}")
            patients[k] = p
        incoming.append(p)
    if not incoming:
        raise InputError("the Bundle holds no Patient to import")
    seen: dict[str, str] = {}
    existing = {m.name.casefold(): m.name for m in hh.members()}
    for p in incoming:
        key = p.name.casefold()
        if key in existing:
            raise InputError(f"{p.where}: a household member named {existing[key]!r} already exists; rename one of them first")
        if key in seen:
            raise InputError(f"{p.where}: the Bundle holds two Patients named {p.name!r}")
        seen[key] = p.name

    def owner(res: Mapping[str, Any], where: str, attr: str = "subject") -> _Incoming:
        ref = res.get(attr)
        target = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(target, str) or not target:
            raise InputError(f"{where}: no {attr} reference to a Patient")
        if target not in patients:
            raise InputError(f"{where}: refers to Patient {target!r}, which is not in the Bundle")
        return patients[target]

    vitals = load_vitals()
    by_loinc = {v.loinc: v for v in vitals.values()}
    counts = {"consultation": 0, "careplan": 0, "other": 0}
    for where, e in entries:
        res = e["resource"]
        rtype = res["resourceType"]
        if rtype == "Patient":
            continue
        tags = res.get("meta", {}).get("tag") if isinstance(res.get("meta"), dict) else None
        if isinstance(tags, list) and any(isinstance(t, dict) and t.get("system") == TAG_SYSTEM and t.get("code") == CONSULTATION_TAG for t in tags):
            counts["consultation"] += 1
            continue
        if rtype == "CarePlan":
            counts["careplan"] += 1
            continue
        if rtype == "RiskAssessment":
            counts["consultation"] += 1
            continue
        if rtype == "Condition":
            ver = _status(res.get("verificationStatus"))
            if ver in ("differential", "refuted", "entered-in-error"):
                counts["consultation" if ver == "differential" else "other"] += 1
                continue
            if _status(res.get("clinicalStatus")) not in (None, "active", "recurrence", "relapse"):
                continue
            _add_history(owner(res, where), "condition", _text_of(res.get("code")), where)
        elif rtype == "MedicationStatement":
            if res.get("status") not in (None, "active", "intended", "on-hold"):
                continue
            if "medicationCodeableConcept" not in res:
                raise InputError(f"{where}: only a medicationCodeableConcept (the medication's name) can be imported")
            _add_history(owner(res, where), "medication", _text_of(res.get("medicationCodeableConcept")), where)
        elif rtype == "AllergyIntolerance":
            if _status(res.get("verificationStatus")) in ("refuted", "entered-in-error"):
                continue
            if _status(res.get("clinicalStatus")) not in (None, "active"):
                continue
            _add_history(owner(res, where, "patient"), "allergy", _text_of(res.get("code")), where)
        elif rtype == "Observation":
            if res.get("status") in ("entered-in-error", "cancelled"):
                continue
            if not _observation(res, where, owner, by_loinc):
                counts["other"] += 1
        else:
            counts["other"] += 1
    for p in incoming:
        if len(p.history) > MAX_HISTORY:
            raise InputError(f"{p.where}: at most {MAX_HISTORY} history items per member, not {len(p.history)}")
        if p.pregnant:
            probe = Member("", p.name, p.sex, p.birth_date, p.age, p.age_on, True)
            if p.sex != "F" or not 10 <= probe.age_at() <= 60:
                raise InputError(f"{p.where}: pregnancy can be recorded only for a female member aged 10 to 60")
    return incoming, counts


def _patient(res: Mapping[str, Any], where: str) -> _Incoming:
    name = ""
    names = res.get("name")
    if isinstance(names, list) and names:
        n = names[0] if isinstance(names[0], dict) else {}
        if isinstance(n.get("text"), str) and n["text"].strip():
            name = n["text"]
        else:
            given = n.get("given") if isinstance(n.get("given"), list) else []
            parts = [str(x) for x in given if isinstance(x, str)] + ([n["family"]] if isinstance(n.get("family"), str) else [])
            name = " ".join(parts)
    name = " ".join(name.split())
    if not name:
        raise InputError(f"{where}: the Patient has no name (name.text, or given and family)")
    if len(name) > MAX_NAME:
        raise InputError(f"{where}: a name is at most {MAX_NAME} characters")
    gender = res.get("gender")
    if gender is None:
        raise InputError(f"{where}: the Patient has no gender (female or male is needed)")
    sex = {"female": "F", "male": "M"}.get(gender) if isinstance(gender, str) else None
    if sex is None:
        raise InputError(f"{where}: gender {gender!r} cannot be used: the record needs female or male")
    born = res.get("birthDate")
    if born is not None:
        if not isinstance(born, str):
            raise InputError(f"{where}: birthDate must be text YYYY-MM-DD, not {born!r}")
        try:
            birth = parse_birth_date(born)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        return _Incoming(where, name, sex, birth, None, None)
    exts = [x for x in res.get("extension") or [] if isinstance(x, dict)] if isinstance(res.get("extension"), list) else []
    age_ext = next((x for x in exts if x.get("url") == EXT_AGE_YEARS), None)
    if age_ext is None:
        raise InputError(f"{where}: the Patient has neither a birthDate nor an age (extension {EXT_AGE_YEARS})")
    raw = age_ext.get("valueDecimal")
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise InputError(f"{where}: the age must be a number of years (valueDecimal), not {raw!r}")
    try:
        age = check_age(float(raw))
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    on_ext = next((x for x in exts if x.get("url") == EXT_AGE_RECORDED), None)
    on: date | None = None
    if on_ext is not None:
        text = on_ext.get("valueDate")
        try:
            on = date.fromisoformat(text) if isinstance(text, str) else None
        except ValueError:
            on = None
        if on is None:
            raise InputError(f"{where}: the date the age was recorded must be YYYY-MM-DD, not {text!r}")
        today = now_utc().date()
        if on > today:
            raise InputError(f"{where}: the age was recorded on {on.isoformat()}, which is in the future")
        if age + (today - on).days / 365.25 > 120:
            raise InputError(f"{where}: an age of {age:g} recorded on {on.isoformat()} makes the member over 120 today")
    return _Incoming(where, name, sex, None, age, on)


def _add_history(p: _Incoming, kind: str, text: str, where: str) -> None:
    try:
        item = history_item(kind, text)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if item not in p.history:
        p.history.append(item)


def _when(res: Mapping[str, Any], where: str) -> datetime:
    text = res.get("effectiveDateTime")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: a diary observation needs an effectiveDateTime (when it was measured or felt)")
    try:
        return parse_when(text)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _note_of(res: Mapping[str, Any], where: str) -> str:
    notes = res.get("note")
    if not isinstance(notes, list):
        return ""
    text = " ".join(" ".join(str(n.get("text") or "").split()) for n in notes if isinstance(n, dict)).strip()
    if len(text) > MAX_TEXT:
        raise InputError(f"{where}: a note is at most {MAX_TEXT} characters")
    return text


def _number(q: Any, v: Vital, where: str) -> float:
    if not isinstance(q, dict):
        raise InputError(f"{where}: a valueQuantity is needed for {v.label.lower()}")
    value = q.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: {v.label.lower()} needs a finite number, not {value!r}")
    code = q.get("code")
    if code is not None and code != v.ucum:
        raise InputError(f"{where}: {v.label.lower()} must be in UCUM {v.ucum!r} ({v.unit}), not {code!r}")
    return float(value)


def _observation(res: Mapping[str, Any], where: str, owner: Any, by_loinc: Mapping[str, Vital]) -> bool:
    """Read one Observation into its member; False when the record holds nothing of its kind."""
    code = res.get("code")
    cats = _categories(res)
    loincs = _codes(code, LOINC_SYSTEM)
    if PREGNANCY_LOINC in loincs:
        value = res.get("valueCodeableConcept")
        if _has_code(value, SNOMED_SYSTEM, PREGNANT_SNOMED):
            owner(res, where).pregnant = True
        elif _has_code(value, SNOMED_SYSTEM, NOT_PREGNANT_SNOMED):
            owner(res, where)
        else:
            raise InputError(f"{where}: pregnancy status must be SNOMED {PREGNANT_SNOMED} (pregnant) or {NOT_PREGNANT_SNOMED} (not pregnant)")
        return True
    if _has_code(code, DIARY_SYSTEM, "symptom"):
        p = owner(res, where)
        label = " ".join(str(code.get("text") or "").split()).lower()
        if not label:
            raise InputError(f"{where}: a diary symptom needs its name in code.text")
        if len(label) > MAX_NAME:
            raise InputError(f"{where}: a symptom name is at most {MAX_NAME} characters")
        severity = res.get("valueInteger")
        if severity is not None and (isinstance(severity, bool) or not isinstance(severity, int) or not 0 <= severity <= 10):
            raise InputError(f"{where}: severity is a whole number from 0 to 10, not {severity!r}")
        p.symptoms.append((label, severity, _when(res, where), _note_of(res, where)))
        return True
    if loincs or "vital-signs" in cats:
        known = [by_loinc[c] for c in loincs if c in by_loinc]
        if not known:
            shown = ", ".join(loincs) if loincs else "none"
            raise InputError(f"{where}: unknown vital-sign LOINC code ({shown}); known: {', '.join(sorted(by_loinc))}")
        v = known[0]
        p = owner(res, where)
        value: str | float
        if v.components:
            comps = res.get("component") if isinstance(res.get("component"), list) else []
            parts = []
            for c in v.components:
                match = [x for x in comps if isinstance(x, dict) and c.loinc in _codes(x.get("code"), LOINC_SYSTEM)]
                if not match:
                    raise InputError(f"{where}: {v.label.lower()} needs a component LOINC {c.loinc} ({c.label.lower()})")
                parts.append(_number(match[0].get("valueQuantity"), v, where))
            value = "/".join(f"{x:g}" for x in parts)
        else:
            value = _number(res.get("valueQuantity"), v, where)
        try:
            parse_reading(v.code, value)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        p.vitals.append((v.code, value, _when(res, where), _note_of(res, where)))
        return True
    if "social-history" in cats:
        if res.get("valueBoolean") is False:
            return True
        _add_history(owner(res, where), "antecedent", _text_of(code), where)
        return True
    return False

