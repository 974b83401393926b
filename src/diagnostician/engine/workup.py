"""Which examinations and tests would settle the remaining differential.

The packs hold which tests bear on which conditions (MedlinePlus test lists) but no result
likelihoods, so no value of information can be computed. The ranking is said plainly: each
suggestion addresses the posterior probability of the differential's conditions it bears on, and
tests are chosen greedily so that each next one covers the most probability the earlier ones left
uncovered. Generic entries ("blood tests", "physical examination") are never suggested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnostician.knowledge.schema import Pack, Test

BASIS = (
    "Ranked by how much of the differential's probability each test bears on (MedlinePlus test lists); "
    "the pack has no test-result likelihoods, so this is not a value-of-information estimate."
)


@dataclass(frozen=True)
class TestSuggestion:
    """A test worth doing now, the share of the differential it bears on, and the conditions it addresses."""

    id: str
    name: str
    kind: str
    mass: float  # posterior probability of the listed conditions this test bears on
    new_mass: float  # of that, the part no earlier suggestion covered
    conditions: tuple[tuple[str, float], ...]  # (condition name, posterior), most likely first


def suggest_tests(pack: Pack, p: np.ndarray, k: int = 5, floor: float = 0.01) -> list[TestSuggestion]:
    """Up to k tests covering the most differential probability (conditions with posterior ≥ floor)."""
    tests = [t for t in pack.tests if not t.generic]
    if not tests:
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
    """Each suggested test in words: its kind, the share of the differential it bears on, the leading conditions."""
    return [f"{t.name} ({t.kind}) — bears on {t.mass:.0%} of the differential: " + ", ".join(name for name, _ in t.conditions[:3]) for t in tests]
