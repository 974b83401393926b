"""Examination and test results in words ("troponin raised, chest X-ray normal") → result findings.

Each result of known accuracy (knowledge/results.py) has the words for a positive and for a normal
or negative result; those are matched like symptom terms (stems, light words skipped). A positive
term under a negation in its clause ("no consolidation on the X-ray") reads as negative. A test the
text names that has no result of known accuracy is returned as uninterpreted: the engine records it
and says it cannot weigh it, rather than inventing a likelihood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from diagnostician.dialogue.nlu import PhraseIndex, Target, _phrase, _select, check_text, normalise, stem, tokenize
from diagnostician.knowledge.results import result_entries
from diagnostician.knowledge.schema import Pack

NEGATIONS = {"no", "not", "without", "negative", "normal", "absent", "clear", "unremarkable", "nil", "none"}
# Words that name an examination or test in any pack (language, not medicine: no result is read from them).
TEST_WORDS = {"mri", "ct", "scan", "x", "xray", "ultrasound", "ecg", "ekg", "echo", "echocardiogram", "biopsy", "swab", "culture", "endoscopy",
              "colonoscopy", "test", "tests", "bloods", "panel", "smear", "serology", "titre", "titer", "level", "levels", "count", "spirometry"}
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
        self.tests = sorted({t.name.lower() for t in pack.tests if not t.generic} | {r["test"].lower() for r in results}, key=len, reverse=True)

    def read(self, text: str) -> ResultsRead:
        norm = normalise(text)
        out: dict[str, ResultReading] = {}
        clauses = [c for c in re.split(r"[.;,\n]|\bbut\b", norm) if c.strip()]
        covered: list[str] = []
        for clause in clauses:
            words = [t for t in tokenize(clause) if t.is_word]
            if not words:
                continue
            matches = _select(self.index.find(words, [{w.stem} for w in words], gaps=True, light=LIGHT))
            for m in matches:
                value = m.target.values == ("yes",)
                if value and any(w.raw in NEGATIONS for w in words[: m.start]):
                    value = False  # "no consolidation on chest X-ray"
                span = clause[words[m.start].start : words[m.end - 1].end]
                out.setdefault(m.target.code, ResultReading(m.target.code, value, span.strip()))
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
