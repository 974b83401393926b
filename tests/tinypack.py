"""A tiny hand-made knowledge pack whose numbers are simple enough to check results by hand.

Conditions (index, triage, prior):
    0 CA  emergency   0.2
    1 CB  see_doctor  0.3
    2 CC  self_care   0.5

Findings and likelihood columns, P(column | CA, CB, CC):
    fever  binary                          0.2  0.9  0.5
    pain   binary                          0.9  0.5  0.2
    onset  categorical  gradual (default)  0.2  0.5  0.8
                        fast               0.3  0.3  0.1
                        sudden             0.5  0.2  0.1
    site   multi, parent 'pain'
                        nowhere (default, no column: every listed value absent)
                        chest              0.9  0.5  0.1
                        throat             0.1  0.2  0.8

Demographics: age bands [0,18) [18,65) [65,200); P(band | CA) 0.1 0.4 0.5, CB 0.3 0.4 0.3,
CC 0.5 0.4 0.1. P(F, M | CA) 0.4 0.6, CB 0.5 0.5, CC 0.6 0.4.

Red flags: 'sudden_onset' (onset = sudden) → emergency;
'fever_with_pain' (fever and pain, both present) → urgent_24h.

The tables are plain Python data (below) so that tests can compute expected values with plain
arithmetic rather than with the library's own functions.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from diagnostician.knowledge.schema import Pack, load_pack_dir

CONDITIONS = ("CA", "CB", "CC")
PRIOR = (0.2, 0.3, 0.5)
TRIAGE = ("emergency", "see_doctor", "self_care")

FEVER = (0.2, 0.9, 0.5)
PAIN = (0.9, 0.5, 0.2)
ONSET = {  # categorical: each condition's row sums to 1
    "gradual": (0.2, 0.5, 0.8),
    "fast": (0.3, 0.3, 0.1),
    "sudden": (0.5, 0.2, 0.1),
}
SITE = {  # multi-choice: presence of each non-default value, independent given the condition
    "chest": (0.9, 0.5, 0.1),
    "throat": (0.1, 0.2, 0.8),
}

AGE_BANDS = ((0, 18), (18, 65), (65, 200))
P_AGE = ((0.1, 0.4, 0.5), (0.3, 0.4, 0.3), (0.5, 0.4, 0.1))  # rows: CA, CB, CC
P_SEX = ((0.4, 0.6), (0.5, 0.5), (0.6, 0.4))  # rows: CA, CB, CC; columns F, M

COLUMNS = (
    ("fever", None),
    ("pain", None),
    ("onset", "gradual"),
    ("onset", "fast"),
    ("onset", "sudden"),
    ("site", "chest"),
    ("site", "throat"),
)


def _column_p(c: int) -> list[float]:
    return [
        FEVER[c],
        PAIN[c],
        ONSET["gradual"][c],
        ONSET["fast"][c],
        ONSET["sudden"][c],
        SITE["chest"][c],
        SITE["throat"][c],
    ]


_META: dict[str, Any] = {
    "format": "diagnostician-pack/1",
    "name": "tiny",
    "version": "0.0.1",
    "description": "Hand-made test pack.",
    "findings": [
        {"code": "fever", "kind": "binary", "question": "Do you have a fever?"},
        {"code": "pain", "kind": "binary", "question": "Do you have pain?"},
        {
            "code": "onset",
            "kind": "categorical",
            "question": "How did it start?",
            "values": [
                {"code": "gradual", "label": "gradually"},
                {"code": "fast", "label": "within hours"},
                {"code": "sudden", "label": "suddenly"},
            ],
            "default": "gradual",
        },
        {
            "code": "site",
            "kind": "multi",
            "question": "Where is the pain?",
            "parent": "pain",
            "values": [
                {"code": "nowhere", "label": "nowhere"},
                {"code": "chest", "label": "chest"},
                {"code": "throat", "label": "throat"},
            ],
            "default": "nowhere",
        },
    ],
    "conditions": [
        {
            "code": code,
            "name": f"Condition {code[1]}",
            "icd10": f"X0{i}",
            "severity": i + 1,
            "triage": TRIAGE[i],
            "prior": PRIOR[i],
            "symptoms": ["fever", "pain"],
            "antecedents": [],
            "source": "hand-made",
        }
        for i, code in enumerate(CONDITIONS)
    ],
    "red_flags": [
        {
            "id": "sudden_onset",
            "when": [{"finding": "onset", "values": ["sudden"]}],
            "level": "emergency",
            "advice": "Sudden onset: call your local emergency number now.",
            "basis": "test",
        },
        {
            "id": "fever_with_pain",
            "when": [{"finding": "fever"}, {"finding": "pain"}],
            "level": "urgent_24h",
            "advice": "Fever with pain: see a doctor within 24 hours.",
            "basis": "test",
        },
    ],
}

_TABLES: dict[str, Any] = {
    "conditions": list(CONDITIONS),
    "columns": [list(c) for c in COLUMNS],
    "p": [_column_p(c) for c in range(3)],
    "source": [[0] * len(COLUMNS) for _ in range(3)],
    "age": {"bands": [list(b) for b in AGE_BANDS], "p": [list(r) for r in P_AGE]},
    "sex": {"columns": ["F", "M"], "p": [list(r) for r in P_SEX]},
}


def tiny_pack_data() -> tuple[dict[str, Any], dict[str, Any]]:
    """Fresh deep copies of (pack.json, likelihoods.json) contents, free to modify."""
    return copy.deepcopy(_META), copy.deepcopy(_TABLES)


def write_pack_files(folder: Path, meta: Any, tables: Any) -> Path:
    """Write pack.json and likelihoods.json into folder (created if needed); return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pack.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    (folder / "likelihoods.json").write_text(json.dumps(tables, indent=1), encoding="utf-8")
    return folder


def write_tiny_pack(folder: Path) -> Path:
    """Write the tiny pack into folder; return the folder."""
    meta, tables = tiny_pack_data()
    return write_pack_files(folder, meta, tables)


def make_tiny_pack(folder: Path) -> Pack:
    """Write the tiny pack into folder and load it with load_pack_dir."""
    return load_pack_dir(write_tiny_pack(folder))
