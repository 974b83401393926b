"""Case files: a patient written down as JSON, answering the engine's questions non-interactively.

Format (diagnostician-case/1):
    {"format": "diagnostician-case/1", "title": "...", "age": 54, "sex": "M",
     "complaints": {"E_53": true},            # what the patient says first
     "findings": {"E_91": true, "E_56": "7", "E_55": ["V_101"]},   # answers if asked
     "unlisted": "absent"}                     # questions not in findings: "absent" or "unknown"
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diagnostician.dialogue.answers import as_answer
from diagnostician.engine.posterior import AnswerValue, check_age, normalise_sex, validate_answer
from diagnostician.errors import CaseFileError, InputError
from diagnostician.knowledge.schema import Pack

CASE_FORMAT = "diagnostician-case/1"
MAX_CASE_BYTES = 1_000_000


@dataclass(frozen=True)
class Case:
    """A written-down patient."""

    age: float
    sex: str
    complaints: dict[str, Any]
    findings: dict[str, Any] = field(default_factory=dict)
    unlisted: str = "absent"
    title: str = ""

    def answer(self, pack: Pack, code: str) -> AnswerValue:
        """The case's answer to a question on this finding."""
        f = pack.finding(code)
        if code in self.findings:
            v = self.findings[code]
            return tuple(v) if isinstance(v, list) else v
        if self.unlisted == "unknown":
            return None
        return f.absent_value()


def load_case(path: str | Path, pack: Pack) -> Case:
    """Read and validate a case file against a pack."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_CASE_BYTES:
            raise CaseFileError(f"{p}: case file larger than {MAX_CASE_BYTES} bytes")
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CaseFileError(f"case file not found: {p}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaseFileError(f"{p}: not a readable JSON case file ({exc})") from exc
    return case_from_dict(data, pack, str(p))


def case_from_dict(data: Any, pack: Pack, where: str = "case") -> Case:
    """Validate a case given as a dict."""
    if not isinstance(data, dict):
        raise CaseFileError(f"{where}: a case is a JSON object")
    if data.get("format", CASE_FORMAT) != CASE_FORMAT:
        raise CaseFileError(f"{where}: unsupported format {data.get('format')!r} (expected {CASE_FORMAT})")
    for key in ("age", "sex", "complaints"):
        if key not in data:
            raise CaseFileError(f"{where}: missing field {key!r}")
    complaints, findings = data["complaints"], data.get("findings", {})
    if not isinstance(complaints, dict) or not complaints or not isinstance(findings, dict):
        raise CaseFileError(f"{where}: 'complaints' (non-empty) and 'findings' must be objects of finding code -> answer")
    for code, value in list(complaints.items()) + list(findings.items()):
        f = pack.finding(code)  # raises UnknownFindingError with the code
        try:
            validate_answer(pack, as_answer(f, value))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from exc
    if isinstance(data["age"], bool) or not isinstance(data["age"], (int, float)):
        raise InputError(f"{where}: 'age' must be a number of years")
    check_age(data["age"])
    normalise_sex(str(data["sex"]))
    unlisted = data.get("unlisted", "absent")
    if unlisted not in ("absent", "unknown"):
        raise InputError(f"{where}: 'unlisted' must be 'absent' or 'unknown'")
    return Case(data["age"], data["sex"], dict(complaints), dict(findings), unlisted, str(data.get("title") or ""))
