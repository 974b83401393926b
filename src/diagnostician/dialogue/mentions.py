"""What free text says about a patient: findings with polarity, value, confidence and text span."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diagnostician.engine.posterior import AnswerValue
from diagnostician.knowledge.schema import BINARY, CATEGORICAL, Finding

PRESENT = "present"
ABSENT = "absent"
UNCERTAIN = "uncertain"
POLARITIES = (PRESENT, ABSENT, UNCERTAIN)


@dataclass(frozen=True)
class Mention:
    """One finding read from text: its code, polarity, value (multi: value codes; categorical: a code), confidence and span."""

    code: str
    polarity: str
    value: AnswerValue = None
    confidence: float = 1.0
    span: tuple[int, int] = (0, 0)
    text: str = ""
    method: str = "lexicon"  # lexicon | fuzzy | embedding | number | llm

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {
            "code": self.code,
            "polarity": self.polarity,
            "value": value,
            "confidence": round(self.confidence, 3),
            "span": list(self.span),
            "text": self.text,
            "method": self.method,
        }


@dataclass
class Reading:
    """Everything understood from one piece of text: demographics, who speaks, numbers and finding mentions."""

    text: str
    age: float | None = None
    sex: str | None = None
    proxy: bool = False  # someone writes about another person (a parent about a child)
    relation: str | None = None  # who the patient is to the writer ("son", "mum"), when proxy
    pregnant: bool | None = None
    duration_days: float | None = None
    temperature_c: float | None = None
    mentions: list[Mention] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "age": self.age,
            "sex": self.sex,
            "proxy": self.proxy,
            "relation": self.relation,
            "pregnant": self.pregnant,
            "duration_days": self.duration_days,
            "temperature_c": self.temperature_c,
            "findings": [m.to_dict() for m in self.mentions],
            "notes": list(self.notes),
        }


def engine_value(f: Finding, m: Mention) -> AnswerValue | None:
    """The engine value a sure mention stands for (None when it says nothing usable, e.g. a site without a side)."""
    if m.polarity == UNCERTAIN:
        return None
    if f.kind == BINARY:
        return m.polarity == PRESENT
    if m.polarity == ABSENT:
        if f.default is None:
            return None
        return f.default if f.kind == CATEGORICAL else (f.default,)
    if m.value in (None, ()):
        return None
    return m.value
