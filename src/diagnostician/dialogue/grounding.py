"""Grounding check: text written by a language model may only say what the engine already concluded.

A sentence is ungrounded when it names a condition, a probability, an urgency level or a finding that the
caller did not allow, or when it claims a diagnosis with certainty. The word tables below are deliberately
small: a missed paraphrase costs nothing (the template text is used anyway when in doubt), and every entry
is one that a rephrasing of a question or an explanation has no business adding on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from diagnostician.errors import InputError
from diagnostician.knowledge.schema import TRIAGE_LEVELS, Pack

if TYPE_CHECKING:
    from diagnostician.dialogue.mentions import Mention
    from diagnostician.engine.assess import Assessment

# Urgency phrases and the triage levels each one is consistent with. A phrase may fit several levels
# ("see a doctor" is also the safety net of self-care advice). Matching is case-insensitive except
# for the entries of CASE_SENSITIVE_URGENCY, whose lower-case forms are ordinary words ("er").
URGENCY_WORDS: dict[str, tuple[str, ...]] = {
    "emergency": ("emergency",),
    "emergency room": ("emergency",),
    "emergency department": ("emergency",),
    "a&e": ("emergency",),
    "911": ("emergency",),
    "999": ("emergency",),
    "112": ("emergency",),
    "ambulance": ("emergency",),
    "call an ambulance": ("emergency",),
    "urgent": ("emergency", "urgent_24h"),
    "urgently": ("emergency", "urgent_24h"),
    "within 24 hours": ("urgent_24h",),
    "see a doctor": ("urgent_24h", "see_doctor", "self_care"),
    "see your doctor": ("urgent_24h", "see_doctor", "self_care"),
    "book an appointment": ("see_doctor",),
    "self-care": ("self_care",),
    "self care": ("self_care",),
    "nothing to worry about": ("self_care",),
}
CASE_SENSITIVE_URGENCY: dict[str, tuple[str, ...]] = {"ER": ("emergency",)}

# Words that turn a statement into a certain diagnosis; the engine only ever offers probabilities.
CERTAINTY_WORDS = (
    "definitely",
    "certainly",
    "surely",
    "undoubtedly",
    "without a doubt",
    "without doubt",
    "no doubt",
    "for sure",
    "i am sure",
    "i'm sure",
    "100%",
    "guaranteed",
    "the diagnosis is",
    "you are diagnosed",
)
# "you have X" / "you've got X" where X is a condition of the pack: a diagnosis claim even when X is allowed.
_CLAIM = r"\b(?:you|your child|he|she|they)\s+(?:\w+ly\s+)?(?:have|has|'ve got|have got|has got|are suffering from|is suffering from|suffer from|suffers from)\s+(?:an?\s+|the\s+)?"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_PERCENT = re.compile(r"(\d{1,3}(?:[.,]\d+)?)\s*(?:%|percent\b|per\s+cent\b)", re.IGNORECASE)
_RATIO = re.compile(r"\b(\d{1,4})\s+(?:in|out\s+of)\s+(\d{1,5})\b", re.IGNORECASE)
_DECIMAL_CHANCE = re.compile(r"\b(?:probability|chance|likelihood|odds|risk)\b[^.?!\d]{0,24}(0?[.,]\d+)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Grounding:
    """What a generated text may mention: condition names or codes, finding codes, percents and urgency levels."""

    conditions: frozenset[str] = frozenset()
    findings: frozenset[str] = frozenset()
    percents: frozenset[int] = frozenset()
    urgency: frozenset[str] = frozenset()
    pack: Pack | None = field(default=None, compare=False, repr=False)  # lets checks run without passing the pack again

    def __post_init__(self) -> None:
        # Accept any iterable (and a single urgency level as a string) from callers; store frozensets.
        urgency = {self.urgency} if isinstance(self.urgency, str) else set(self.urgency)
        unknown = sorted(urgency - set(TRIAGE_LEVELS))
        if unknown:
            raise InputError(f"unknown urgency level(s) {unknown}; expected some of {list(TRIAGE_LEVELS)}")
        try:
            percents = frozenset(int(round(float(p))) for p in self.percents)
        except (TypeError, ValueError) as exc:
            raise InputError(f"grounding percents must be numbers: {exc}") from exc
        object.__setattr__(self, "urgency", frozenset(urgency))
        object.__setattr__(self, "percents", percents)
        object.__setattr__(self, "conditions", frozenset(self.conditions))
        object.__setattr__(self, "findings", frozenset(self.findings))

    @classmethod
    def from_assessment(cls, pack: Pack, assessment: Assessment, findings: Iterable[str] = ()) -> Grounding:
        """What an explanation of this assessment may say: its listed conditions, their percents and its triage."""
        levels = {assessment.triage.level, *(r.level for r in assessment.triage.red_flags)}
        return cls(
            conditions=frozenset(e.code for e in assessment.differential),
            findings=frozenset(findings),
            percents=frozenset(round(e.probability * 100) for e in assessment.differential),
            urgency=frozenset(levels),
            pack=pack,
        )

    def union(self, other: Grounding) -> Grounding:
        """Everything either grounding allows."""
        return Grounding(
            conditions=self.conditions | other.conditions,
            findings=self.findings | other.findings,
            percents=self.percents | other.percents,
            urgency=self.urgency | other.urgency,
            pack=self.pack or other.pack,
        )


@lru_cache(maxsize=8)
def _condition_patterns(pack: Pack) -> tuple[tuple[str, str, re.Pattern[str]], ...]:
    """(code, shown name, pattern) for every way a text may name each condition of the pack."""
    out = []
    for c in pack.conditions:
        for variant in _name_variants(c.name):
            out.append((c.code, variant, re.compile(rf"(?<![\w-]){re.escape(variant)}(?![\w-])", re.IGNORECASE)))
    # Longest first so that "Chronic rhinosinusitis" is reported rather than a shorter name inside it.
    out.sort(key=lambda t: -len(t[1]))
    return tuple(out)


def _name_variants(name: str) -> list[str]:
    """The full name, the name without its parenthesis, and each side of "A / B" names.

    A side that is a single lower-case word ("infection" in "Acute COPD exacerbation / infection") is
    skipped: it is a generic word, not a condition name.
    """
    variants = {name.strip()}
    bare = re.sub(r"\s*\([^)]*\)", "", name).strip()
    variants.add(bare)
    if "/" in bare:
        for part in bare.split("/"):
            part = re.sub(r"^possible\s+", "", part.strip(), flags=re.IGNORECASE)
            if " " in part or part != part.lower():
                variants.add(part)
    return [v for v in variants if len(v) >= 3]


def _allowed_condition_codes(grounding: Grounding, pack: Pack) -> set[str]:
    by_name = {c.name.lower(): c.code for c in pack.conditions}
    codes = set()
    for item in grounding.conditions:
        if item in pack.condition_index:
            codes.add(item)
        elif item.lower() in by_name:
            codes.add(by_name[item.lower()])
    return codes


def _urgency_hits(sentence: str) -> list[tuple[str, tuple[str, ...]]]:
    hits = []
    low = sentence.lower()
    for phrase, levels in URGENCY_WORDS.items():
        if re.search(rf"(?<![\w&]){re.escape(phrase)}(?![\w&])", low):
            hits.append((phrase, levels))
    for phrase, levels in CASE_SENSITIVE_URGENCY.items():
        if re.search(rf"(?<![\w&]){re.escape(phrase)}(?![\w&])", sentence):
            hits.append((phrase, levels))
    return hits


def _percents(sentence: str) -> list[float]:
    found = [float(m.group(1).replace(",", ".")) for m in _PERCENT.finditer(sentence)]
    for m in _RATIO.finditer(sentence):
        num, den = int(m.group(1)), int(m.group(2))
        if 0 < den and num <= den:
            found.append(100.0 * num / den)
    found += [100.0 * float(m.group(1).replace(",", ".")) for m in _DECIMAL_CHANCE.finditer(sentence)]
    return found


def split_sentences(text: str) -> list[str]:
    """The sentences of a text (split after . ! ? and at line breaks)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def check_grounded(
    text: str,
    grounding: Grounding,
    pack: Pack | None = None,
    detect: Callable[[str], list[Mention]] | None = None,
) -> list[str]:
    """Why each ungrounded sentence of the text is ungrounded (empty list: the text is grounded)."""
    pack = pack or grounding.pack
    if pack is None:
        raise InputError("check_grounded needs the pack (argument or Grounding.pack) to recognise condition names")
    allowed_conditions = _allowed_condition_codes(grounding, pack)
    patterns = _condition_patterns(pack)
    violations: list[str] = []
    for i, sentence in enumerate(split_sentences(text), 1):
        where = f"sentence {i}"
        named: set[str] = set()
        for code, variant, pattern in patterns:
            if code in named or not pattern.search(sentence):
                continue
            named.add(code)
            if code not in allowed_conditions:
                violations.append(f"{where}: names condition {variant!r} ({code}) that the assessment does not list")
            if re.search(_CLAIM + re.escape(variant), sentence, re.IGNORECASE):
                violations.append(f"{where}: claims a diagnosis ({variant!r})")
        for value in _percents(sentence):
            if not any(abs(value - p) <= 1 for p in grounding.percents):
                violations.append(f"{where}: states a probability of {value:g}% that the assessment does not give")
        for phrase, levels in _urgency_hits(sentence):
            if not grounding.urgency.intersection(levels):
                violations.append(f"{where}: urgency wording {phrase!r} does not match the triage level")
        low = sentence.lower()
        for word in CERTAINTY_WORDS:
            if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", low):
                violations.append(f"{where}: certainty wording {word!r}")
        codes = {m.group(0) for m in re.finditer(r"\b[EV]_\d+\b", sentence)} & set(pack.finding_index)
        if detect is not None:
            codes |= {m.code for m in detect(sentence)}
        for code in sorted(codes - set(grounding.findings)):
            violations.append(f"{where}: mentions finding {code} that was not asked or answered")
    return violations


def grounding_of(text: str, pack: Pack, detect: Callable[[str], list[Mention]] | None = None) -> Grounding:
    """What a trusted text (a template) itself mentions, so that a faithful rephrasing may mention it too."""
    conditions = {code for code, _, pattern in _condition_patterns(pack) if pattern.search(text)}
    percents = {round(v) for v in _percents(text)}
    urgency: set[str] = set()
    for sentence in split_sentences(text):
        # The level a sentence means is the one all its phrases agree on ("see a doctor within 24 hours"
        # is urgent, not self-care), so that ambiguous phrases do not widen what a rephrasing may say.
        hits = [set(levels) for _, levels in _urgency_hits(sentence)]
        if hits:
            urgency |= set.intersection(*hits) or set.union(*hits)
    findings = {m.group(0) for m in re.finditer(r"\b[EV]_\d+\b", text)} & set(pack.finding_index)
    if detect is not None:
        findings |= {m.code for m in detect(text)}
    return Grounding(conditions=conditions, findings=findings, percents=percents, urgency=urgency, pack=pack)
