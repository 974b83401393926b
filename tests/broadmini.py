"""A small shared-data folder and curated sources in the broad-pack formats, written for the tests.

Three SymCAT conditions (one child-only, one pregnancy-only), two MedlinePlus topics (one the same
disease as a SymCAT condition, one new), four symptoms, one red-flag finding and two red flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BANDS = ("age-1-years", "age-1-4-years", "age-5-14-years", "age-15-29-years", "age-30-44-years", "age-45-59-years", "age-60-74-years", "age-75-years")


def _odds(values: list[float]) -> dict[str, Any]:
    return {b: {"name": b, "slug": b, "odds": v} for b, v in zip(BANDS, values)}


def _sex(f: float, m: float) -> dict[str, Any]:
    return {"sex-female": {"odds": f}, "sex-male": {"odds": m}}


def _cond(name: str, symptoms: dict[str, int], age: list[float], sex: tuple[float, float]) -> dict[str, Any]:
    return {
        "condition_name": name,
        "condition_description": f"{name}.",
        "symptoms": {s: {"slug": s, "probability": p} for s, p in symptoms.items()},
        "age": _odds(age),
        "sex": _sex(*sex),
    }


def write_data(root: Path) -> Path:
    """A shared-data folder with symcat/ and medlineplus/ files."""
    sc = {
        "croup": _cond("Croup", {"cough": 80, "fever": 50}, [3, 5, 2, 0, 0, 0, 0, 0], (0.8, 1.2)),
        "ectopic-pregnancy": _cond("Ectopic pregnancy", {"sharp-abdominal-pain": 70, "vaginal-bleeding": 60}, [0, 0, 0, 2, 2, 0, 0, 0], (2.0, 0.0)),
        "pneumonia": _cond("Pneumonia", {"cough": 90, "fever": 70, "shortness-of-breath": 40}, [1, 1, 1, 1, 1, 1, 2, 3], (1, 1)),
    }
    sym = {
        "cough": {"name": "Cough", "common_causes": {"cause-pneumonia": {"probability": 10.0}, "cause-croup": {"probability": 2.0}}},
        "fever": {"name": "Fever", "common_causes": {"cause-pneumonia": {"probability": 8.0}, "cause-croup": {"probability": 1.0}}},
        "shortness-of-breath": {"name": "Shortness of breath", "common_causes": {"cause-pneumonia": {"probability": 5.0}}},
        "sharp-abdominal-pain": {"name": "Sharp abdominal pain", "common_causes": {"cause-ectopic-pregnancy": {"probability": 1.0}}},
        "vaginal-bleeding": {"name": "Vaginal bleeding", "common_causes": {}},
    }
    ml = {
        "pneumonia": {"symptom": ["CN1 cough", "CN2 chest pain", "CN3 fever"], "test": ["CN9 chest x-ray", "CN8 physical exam", "CN7 sputum culture"]},
        "pleurisy": {"symptom": ["CN2 chest pain", "CN4 pain when breathing in"], "test": ["CN9 chest x-ray", "CN6 ultrasound"]},
        "genetic testing": {"symptom": [], "test": []},
    }
    (root / "symcat").mkdir(parents=True)
    (root / "medlineplus").mkdir()
    (root / "symcat" / "symcat_conditions_801.json").write_text(json.dumps(sc))
    (root / "symcat" / "symcat_symptoms_474.json").write_text(json.dumps(sym))
    (root / "medlineplus" / "medlineplus_893.json").write_text(json.dumps(ml))
    return root


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _crow(cid: str, name: str, urgency: str, system: str, **extra: Any) -> dict[str, Any]:
    row = {"id": cid, "name": name, "icd10": "", "system": system, "urgency": urgency, "rationale": f"{name}: test rationale.", "sex": "any",
           "age_min": 0, "age_max": 120, "pregnancy_only": False, "synonyms": []}  # fmt: skip
    row.update(extra)
    return row


def _frow(fid: str, label: str) -> dict[str, Any]:
    return {"id": fid, "label": label, "question": f"Do you have {label}?", "terms": [label], "system": "general"}


def write_sources(root: Path) -> Path:
    """Curated tables for the small data."""
    root.mkdir(parents=True)
    _jsonl(root / "conditions_sc_a.jsonl", [
        _crow("sc:croup", "Croup", "urgent_24h", "respiratory", age_max=6, icd10="J05.0"),
        _crow("sc:ectopic-pregnancy", "Ectopic pregnancy", "emergency", "obstetric", sex="F", pregnancy_only=True, icd10="O00"),
        _crow("sc:pneumonia", "Pneumonia", "urgent_24h", "respiratory", icd10="J18.9", synonyms=["lung infection"]),
    ])  # fmt: skip
    _jsonl(root / "conditions_ml_a.jsonl", [
        {**_crow("ml:pneumonia", "Pneumonia", "urgent_24h", "respiratory"), "kind": "condition", "same_as": "sc:pneumonia"},
        {**_crow("ml:pleurisy", "Pleurisy", "see_doctor", "respiratory", icd10="R09.1"), "kind": "condition", "same_as": None},
        {**_crow("ml:genetic testing", "Genetic testing", "see_doctor", "general"), "kind": "topic", "same_as": None},
    ])  # fmt: skip
    _jsonl(root / "findings_sc.jsonl", [_frow("cough", "cough"), _frow("fever", "fever"), _frow("shortness-of-breath", "shortness of breath"),
                                        _frow("sharp-abdominal-pain", "sharp tummy pain"), _frow("vaginal-bleeding", "vaginal bleeding")])  # fmt: skip
    _jsonl(root / "findings_ml_a.jsonl", [
        {"cn": "CN1", "finding": "cough"},
        {"cn": "CN3", "finding": "fever"},
        {"cn": "CN2", "finding": "chest-pain", "label": "chest pain", "question": "Do you have chest pain?", "terms": ["chest pain"], "system": "cardiovascular", "kind": "symptom"},
        {"cn": "CN4", "finding": "chest-pain"},
    ])  # fmt: skip
    _jsonl(root / "red_flag_findings.jsonl", [
        {**_frow("rf-pregnant", "pregnancy"), "conditions": []},
        {**_frow("rf-blue-lips", "blue lips"), "conditions": [{"id": "sc:pneumonia", "p": 0.1, "basis": "test basis"}]},
    ])  # fmt: skip
    _jsonl(root / "red_flags.jsonl", [
        {"id": "breathless_blue", "when": ["shortness-of-breath", "rf-blue-lips"], "ask_when": ["shortness-of-breath"], "level": "emergency",
         "advice": "Call an ambulance.", "basis": "test basis"},
        {"id": "pregnant_pain", "when": ["rf-pregnant", "sharp-abdominal-pain"], "ask_when": ["sharp-abdominal-pain"], "level": "emergency",
         "advice": "Go to the emergency department.", "basis": "test basis"},
    ])  # fmt: skip
    _jsonl(root / "ddxplus_map.jsonl", [{"code": "E_91", "finding": "fever", "note": ""}, {"code": "E_53", "finding": None, "note": ""}])
    (root / "normal_states.json").write_text(json.dumps({
        "about": "test", "entries": [{"subjects": ["breathing"], "denies": ["shortness-of-breath"], "basis": "test basis"}],
    }))  # fmt: skip
    (root / "tests.json").write_text(json.dumps({
        "kind_words": {"imaging": ["x-ray", "ultrasound"], "exam": ["exam"]},
        "tests": [{"id": "chest-x-ray", "name": "chest X-ray", "kind": "imaging", "aliases": ["chest x-ray"]},
                  {"id": "physical-exam", "name": "physical examination", "kind": "exam", "generic": True, "aliases": ["physical exam"]}],
    }))  # fmt: skip
    return root
