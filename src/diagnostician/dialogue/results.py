"""Examination and test results in words ("troponin raised, chest X-ray normal") → result findings.

Each result of known accuracy (knowledge/results.py) has the words for a positive and for a normal
or negative result; those are matched like symptom terms (stems, light words skipped). A positive
term under a negation in its clause ("no consolidation on the X-ray") reads as negative. A lab
result with a decision threshold is also read from its number ("TSH: 12.1 mIU/L" is above 4.5):
the number must follow the analyte's name closely, and a unit the text states must be the table's
(units are not converted; a value in another unit stays unread). A test the
text names that has no result of known accuracy is returned as uninterpreted: the engine records it
and says it cannot weigh it, rather than inventing a likelihood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from diagnostician.dialogue.nlu import PhraseIndex, Target, _phrase, _select, check_text, language, normalise, stem, tokenize
from diagnostician.knowledge.lexicon import load_lexicon
from diagnostician.knowledge.results import ValueRule, parse_value, result_entries
from diagnostician.knowledge.schema import Pack

# Words before a positive term that deny it ("no consolidation", "negative for troponin"), within NEGATION_REACH words.
# Not "normal" or "absent": "normal sinus rhythm with ST elevation" and "absent breath sounds" report something.
NEGATIONS = {"no", "not", "without", "negative", "nil", "none"}
NEGATION_REACH = 4
# Words that name an examination or test in any pack (language, not medicine: no result is read from them).
TEST_WORDS = {"mri", "ct", "scan", "x", "xray", "ultrasound", "ecg", "ekg", "echo", "echocardiogram", "biopsy", "swab", "culture", "endoscopy",
              "colonoscopy", "test", "tests", "bloods", "panel", "smear", "serology", "titre", "titer", "level", "levels", "count", "spirometry"}
# Clauses end at sentence marks, but not inside numbers ("12.5", "15,000").
# Nor after an initial ("C. difficile toxin positive", "E. coli").
CLAUSE = re.compile(r"(?<!\d)(?<!\b[a-z])\.|(?<!\b[a-z])\.(?!\d)|[;\n]|,(?!\d{3}\b)|\bbut\b")
# A specimen named before an analyte makes it another measurement ("urine sodium" is not serum sodium).
SPECIMENS = frozenset({"urine", "urinary", "csf", "stool", "fecal", "faecal", "pleural", "synovial", "ascitic", "peritoneal", "sweat", "sputum"})
# After an analyte's name: a few linking words at most ("level", "was", "of"), then the number and its unit.
NUMBER = re.compile(r"[\s:=(]*(?:[a-z]+[\s:=(]+){0,3}?[<>≤≥]?\s*(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*([a-zµμ%/][a-z0-9µμ%/^.*]*)?")
# A lab report's word for where a value lies ("WBC: Elevated", "Hemoglobin: Slightly Decreased").
HIGH_WORDS = frozenset({"elevated", "raised", "high", "increased", "above"})
LOW_WORDS = frozenset({"low", "decreased", "reduced", "below", "depressed"})
NORMAL_WORDS = frozenset({"normal", "unremarkable", "wnl"})
DIRECTION = re.compile(r"[\s:=(]*(?:(?:mildly|slightly|markedly|significantly|very|moderately|severely|is|was|are|were)\s+){0,2}(" + "|".join(sorted(HIGH_WORDS | LOW_WORDS | NORMAL_WORDS)) + r")\b")
UNIT_WORD = re.compile(r"(?:[mµunpkd]?(?:g|l|mol|eq|iu|u)|mm|cm|mmhg|fl|s|sec|seconds|min|bpm|kg|mm3|cells)$")
UNIT_SAME = {"µiu/ml": "miu/l", "uiu/ml": "miu/l", "mcg": "ug", "µg": "ug", "μg": "ug", "µl": "ul", "μl": "ul", "mm3": "ul", "iu": "u", "cells": ""}
LIGHT = frozenset(stem(w) for w in ("the", "a", "an", "my", "her", "his", "their", "your", "of", "on", "in", "from", "with", "was", "is", "were", "came", "back", "showed", "shows"))


@dataclass(frozen=True)
class ResultReading:
    """One result read from text: its finding code, positive (True) or not (False), and the words."""

    code: str
    value: bool
    text: str


@dataclass(frozen=True)
class ResultsRead:
    """Everything read: results of known accuracy, and tests named without one (uninterpreted)."""

    results: tuple[ResultReading, ...]
    uninterpreted: tuple[str, ...]


class _ResultReader:
    def __init__(self, pack: Pack) -> None:
        entries = []
        results = result_entries(pack).values()
        for r in results:
            entries += [(_phrase(t), Target("finding", r["code"], ("yes",))) for t in r["terms"]]
            entries += [(_phrase(t), Target("finding", r["code"], ("no",))) for t in r["negative_terms"]]
        self.index = PhraseIndex(entries)
        # Numeric readings: the analyte names of each thresholded result.
        self.rules = {r["code"]: parse_value(r["value"], r["code"]) for r in results if r.get("value")}
        self.analytes = PhraseIndex([(_phrase(a), Target("finding", code)) for code, v in self.rules.items() for a in v.analytes])
        self.tests = sorted({t.name.lower() for t in pack.tests if not t.generic} | {r["test"].lower() for r in results}, key=len, reverse=True)

    def read(self, text: str) -> ResultsRead:
        norm = normalise(text)
        out: dict[str, ResultReading] = {}
        clauses = [c for c in CLAUSE.split(norm) if c.strip()]
        covered: list[str] = []
        for clause in clauses:
            words = [t for t in tokenize(clause) if t.is_word]
            if not words:
                continue
            equal = [{w.stem} for w in words]
            matches = _select(self.index.find(words, equal, gaps=True, light=LIGHT))
            for m in matches:
                value = m.target.values == ("yes",)
                if value and any(w.raw in NEGATIONS for w in words[max(0, m.start - NEGATION_REACH) : m.start]):
                    value = False  # "no consolidation on chest X-ray"
                span = clause[words[m.start].start : words[m.end - 1].end]
                out.setdefault(m.target.code, ResultReading(m.target.code, value, span.strip()))
                covered.append(clause)
            for m in self.analytes.find(words, equal, gaps=False):
                if m.target.code in out:
                    continue  # the words said it ("TSH elevated at 12")
                if m.start > 0 and words[m.start - 1].raw in SPECIMENS:
                    continue
                got = number_after(clause, words[m.end - 1].end, self.rules[m.target.code])
                if got is not None:
                    value, end = got
                    out[m.target.code] = ResultReading(m.target.code, value, clause[words[m.start].start : end].strip())
                    covered.append(clause)
        # A clause that names a test (the pack's test list, or a common test word) but no result of known accuracy.
        named = []
        for clause in clauses:
            if clause in covered:
                continue
            words = {t.raw for t in tokenize(clause) if t.is_word}
            if words & TEST_WORDS or any(re.search(rf"\b{re.escape(t)}\b", clause) for t in self.tests):
                named.append(" ".join(clause.split())[:120])
        return ResultsRead(tuple(out.values()), tuple(dict.fromkeys(named)))


def _unit(text: str) -> str:
    u = text.lower().replace("μ", "µ").rstrip(".")
    for a, b in UNIT_SAME.items():
        u = u.replace(a, b)
    return u


def number_after(clause: str, pos: int, rule: ValueRule) -> tuple[bool, int] | None:
    """The reading of the number (or direction word) that follows an analyte's name at `pos`: (positive?, end of what was read), or None."""
    m = NUMBER.match(clause, pos)
    if m is None:
        w = DIRECTION.match(clause, pos)
        if w is None:
            return None  # "TSH: Elevated" reads as above the threshold, "TSH: Normal" as within it
        word = w.group(1)
        positive = word in HIGH_WORDS if rule.above else word in LOW_WORDS
        return positive, w.end()
    unit = m.group(2)
    if unit and not ("/" in unit or "%" in unit or UNIT_WORD.match(unit.lower().rstrip("."))):
        unit = None  # a word after the number ("12 and rising"), not a unit
    if unit and rule.unit and all(_unit(unit) != _unit(u) for u in rule.unit.split("|")):
        return None  # another unit: not converted, not guessed
    return rule.positive(float(m.group(1).replace(",", ""))), m.end()


@lru_cache(maxsize=8)
def _reader(pack: Pack) -> _ResultReader:
    return _ResultReader(pack)


def read_results(pack: Pack, text: str, max_chars: int = 5000) -> ResultsRead:
    """The examination and test results a text reports, and the tests it names that the pack cannot interpret."""
    check_text(text, max_chars)
    return _reader(pack).read(text)


def other_words(text: str, read: ResultsRead) -> str:
    """The text without the results and test names it was read for: what is left may name findings ("temperature 38.9")."""
    for piece in sorted([r.text for r in read.results] + list(read.uninterpreted), key=len, reverse=True):
        text = re.sub(re.escape(piece), " ", text, flags=re.IGNORECASE)
    return text


def read_vital_signs(pack: Pack, text: str, age: float | None) -> list[tuple[str, bool, str]]:
    """Findings an examination record's vital signs show ("HR 128 bpm" → fast heartbeat): (code, True, words) each.

    Thresholds are the pack's (lexicon measurements, each with its source and the youngest age it
    holds for); a reading between a rule's two thresholds decides nothing, and a rule is skipped when
    the patient's age is unknown or below its `min_age`. A finding two readings decide (systolic and
    diastolic pressure) is present when either says so."""
    rules = [m for m in load_lexicon(pack).measurements.values() if m.quantity != "temperature" and age is not None and age >= m.min_age]
    if not rules:
        return []
    norm = normalise(text)
    found: dict[str, str] = {}
    for quantity, rx in _vital_patterns():
        for m in rx.finditer(norm):
            if quantity == "blood_pressure":
                values = {"systolic_bp": float(m.group(1)), **({"diastolic_bp": float(m.group(2))} if m.group(2) else {})}
            else:
                values = {quantity: float(m.group(1))}
            # Only what a reading shows is entered: a pulse of 72 at the examination does not deny the fast
            # heartbeat a patient felt in episodes, so a normal reading is no "no" to the symptom.
            for r in rules:
                if r.quantity in values and r.finding not in found and r.decide(values[r.quantity]):
                    found[r.finding] = text[m.start() : m.end()]
    return [(code, True, span) for code, span in found.items()]


@lru_cache(maxsize=1)
def _vital_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Per vital sign, the pattern of its words and reading ("HR: 128", "BP 85/50"), from the language file."""
    words = language("en").get("vital_sign_words", {})
    return tuple(
        (quantity, re.compile(r"\b(?:" + "|".join(re.escape(c) for c in sorted(cues, key=len, reverse=True)) + r")\b[\s:=,()a-z]{0,12}?(\d{2,3})(?:\s*/\s*(\d{2,3}))?"))
        for quantity, cues in words.items()
        if quantity != "about"
    )
