"""Which examinations and tests would settle the remaining differential.

Two kinds of knowledge, two rankings, each said plainly. Where a published source gives a result's
sensitivity and specificity (the result findings of knowledge/results.py), the expected information
a result would bring about the condition is computed (value of information, in bits) and the best
such results come first. The packs' test lists (MedlinePlus) say only which tests bear on which
conditions: those are ranked by the posterior probability of the differential's conditions they
bear on, chosen greedily so that each next one covers the most probability the earlier ones left
uncovered. Generic entries ("blood tests", "physical examination") are never suggested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnostician.knowledge.results import result_entries
from diagnostician.knowledge.schema import Pack, Test

BASIS = (
    "Ranked by how much of the differential's probability each test bears on (MedlinePlus test lists); "
    "the pack holds no result likelihoods for these tests, so this is not a value-of-information estimate."
)
VOI_BASIS = (
    "Results with a published sensitivity and specificity come first, ranked by the information a result would "
    "bring about the diagnosis (value of information, bits); the others by how much of the differential's "
    "probability they bear on (MedlinePlus test lists), which is not a value-of-information estimate."
)
MIN_BITS = 0.05  # a result expected to tell less than this about the diagnosis is not worth suggesting


@dataclass(frozen=True)
class TestSuggestion:
    """A test worth doing now, the share of the differential it bears on, and the conditions it addresses."""

    id: str
    name: str
    kind: str
    mass: float  # posterior probability of the listed conditions this test bears on
    new_mass: float  # of that, the part no earlier suggestion covered
    conditions: tuple[tuple[str, float], ...]  # (condition name, posterior), most likely first
    bits: float | None = None  # expected information about the diagnosis (results with known accuracy only)
    result: str | None = None  # the result finding to enter once known ("result:troponin-raised")


def _entropy(m: np.ndarray) -> np.ndarray:
    """Entropy in bits of each column of m (columns are distributions)."""
    safe = np.where(m > 0, m, 1.0)
    return -(m * np.log2(safe)).sum(axis=0)


def result_suggestions(pack: Pack, p: np.ndarray, answered: set[str], k: int = 3, floor: float = 0.01) -> list[TestSuggestion]:
    """Up to k unanswered results of known accuracy, by the expected information they bring about the diagnosis."""
    idx = [i for i in np.flatnonzero(~pack.history_mask) if pack.findings[i].code not in answered]
    if not idx:
        return []
    cols = np.array([pack.finding_columns[i][0] for i in idx])
    q = pack.p[:, cols]  # (C, R): P(result positive | condition)
    py = p @ q
    yes = p[:, None] * q / py
    no = p[:, None] * (1 - q) / (1 - py)
    bits = _entropy(p[:, None])[0] - py * _entropy(yes) - (1 - py) * _entropy(no)
    order = np.argsort(-bits, kind="stable")
    meta = result_entries(pack)
    out = []
    asked_about: set[frozenset[int]] = set()
    for r in order:
        if bits[r] < MIN_BITS or len(out) >= k:
            break
        f = pack.findings[idx[r]]
        info = meta.get(f.code, {})
        # The conditions the result is about (sensitivity above the false-positive rate), most likely first.
        target = q[:, r] > q[:, r].min()
        about = np.where(target & (p >= floor))[0]
        about = about[np.argsort(-p[about], kind="stable")]
        if len(about) == 0:
            continue  # never a test that bears on no condition of the differential
        targets = frozenset(np.flatnonzero(target).tolist())
        if targets in asked_about:
            continue  # a second test for the same conditions (HIV antibody, then HIV RNA): the better one is listed
        asked_about.add(targets)
        out.append(TestSuggestion(
            f.code, info.get("test", f.question), info.get("kind", f.stage), float(p[about].sum()), float(p[about].sum()),
            tuple((pack.conditions[c].name, float(p[c])) for c in about), float(bits[r]), f.code,
        ))  # fmt: skip
    return out


def suggest_tests(pack: Pack, p: np.ndarray, k: int = 5, floor: float = 0.01, answered: set[str] | None = None) -> list[TestSuggestion]:
    """Up to k tests: results of known accuracy by value of information first, then tests covering the most differential probability."""
    first = result_suggestions(pack, p, answered or set(), k=min(3, k), floor=floor) if result_entries(pack) else []
    return first + _by_mass(pack, p, k - len(first), floor, {t.name.lower() for t in first})


def _by_mass(pack: Pack, p: np.ndarray, k: int, floor: float, skip: set[str]) -> list[TestSuggestion]:
    """Up to k tests of the pack's test lists covering the most differential probability (conditions with posterior ≥ floor)."""
    tests = [t for t in pack.tests if not t.generic and t.name.lower() not in skip]
    if not tests or k <= 0:
        return []
    t_index = {t.id: j for j, t in enumerate(tests)}
    listed = np.where(p >= floor)[0]
    if len(listed) == 0:
        return []
    bears = np.zeros((len(listed), len(tests)), dtype=bool)
    for row, ci in enumerate(listed):
        for tid in pack.conditions[ci].tests:
            if tid in t_index:
                bears[row, t_index[tid]] = True
    mass = p[listed] @ bears
    uncovered = np.ones(len(listed), dtype=bool)
    out: list[TestSuggestion] = []
    while len(out) < k:
        gain = (p[listed] * uncovered) @ bears
        j = int(np.argmax(gain))
        if gain[j] <= 0:
            break
        rows = np.where(bears[:, j])[0]
        order = rows[np.argsort(-p[listed[rows]], kind="stable")]
        t: Test = tests[j]
        out.append(TestSuggestion(t.id, t.name, t.kind, float(mass[j]), float(gain[j]), tuple((pack.conditions[listed[r]].name, float(p[listed[r]])) for r in order)))
        uncovered &= ~bears[:, j]
        bears[:, j] = False
    return out


def suggestion_lines(tests: tuple[TestSuggestion, ...] | list[TestSuggestion]) -> list[str]:
    """Each suggested test in words: its kind, why (information it would bring, or the share of the differential it bears on), the leading conditions."""
    out = []
    for t in tests:
        names = ", ".join(name for name, _ in t.conditions[:3])
        if t.bits is not None:
            out.append(f"{t.name} ({t.kind}) — a result would tell {t.bits:.2f} bits about the diagnosis" + (f"; it bears on {names}" if names else ""))
        else:
            out.append(f"{t.name} ({t.kind}) — bears on {t.mass:.0%} of the differential: {names}")
    return out


def basis_of(tests: tuple[TestSuggestion, ...] | list[TestSuggestion]) -> str:
    """How these suggestions were ranked, in one sentence."""
    return VOI_BASIS if any(t.bits is not None for t in tests) else BASIS
