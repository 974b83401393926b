"""The assessment at any point of an inquiry: differential, triage, explanation and the safety notice."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from diagnostician.engine.differential import LIST_FLOOR, differential
from diagnostician.engine.explain import Explanation, explain
from diagnostician.engine.plan import CarePlan, care_plan
from diagnostician.engine.posterior import State, posterior
from diagnostician.engine.triage import TriagePolicy, TriageResult, triage
from diagnostician.engine.workup import TestSuggestion, basis_of, suggest_tests
from diagnostician.knowledge.schema import Pack, RedFlag

NOTICE = (
    "This is decision support, not a diagnosis. It is based only on the answers given and on the "
    "knowledge pack in use, and it can be wrong. If you feel worse, are worried, or a danger sign "
    "appears, seek medical care; in an emergency call your local emergency number."
)


@dataclass(frozen=True)
class DifferentialEntry:
    """One condition of the differential."""

    code: str
    name: str
    icd10: str
    probability: float  # differential probability (listed conditions have at least 1 %)
    posterior: float  # naive-Bayes posterior
    severity: int
    triage: str
    role: str = "likely"  # "likely": posterior ≥ 1 %; "consider": listed by the differential model to rule out


@dataclass(frozen=True)
class Assessment:
    """Everything the engine concludes from a state."""

    differential: tuple[DifferentialEntry, ...]  # listed conditions, most likely first
    triage: TriageResult
    explanations: tuple[Explanation, ...]
    questions_asked: int
    notice: str = NOTICE
    stop_reason: str = ""
    ranking: tuple[str, ...] = field(default=(), repr=False)  # all condition codes, most likely first
    tests: tuple[TestSuggestion, ...] = ()  # examinations and tests that would settle the differential
    plan: CarePlan | None = None  # when to check again and what would change the advice

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "differential": [asdict(e) for e in self.differential],
            "triage": {
                "level": self.triage.level,
                "advice": self.triage.advice,
                "red_flags": [{"id": r.id, "advice": r.advice, "basis": r.basis, "level": r.level} for r in self.triage.red_flags],
                "reasons": list(self.triage.reasons),
            },
            "explanations": [
                {
                    "condition": e.condition,
                    "supporting": [asdict(x) for x in e.supporting],
                    "opposing": [asdict(x) for x in e.opposing],
                    "text": e.sentence(),
                }
                for e in self.explanations
            ],
            "questions_asked": self.questions_asked,
            "stop_reason": self.stop_reason,
            **({"tests": {"basis": basis_of(self.tests), "suggested": [asdict(t) for t in self.tests]}} if self.tests else {}),
            **({"plan": self.plan.to_dict()} if self.plan is not None else {}),
            "notice": self.notice,
        }


def assess(
    pack: Pack,
    state: State,
    triage_policy: TriagePolicy = TriagePolicy(),
    explain_top: int = 5,
    stop_reason: str = "",
    questions_asked: int | None = None,
    course: tuple[RedFlag, ...] = (),
) -> Assessment:
    """Differential, triage, explanations, tests and the care plan for a state (`course`: course rules holding at a follow-up)."""
    post = posterior(state)
    probs, consider = differential(pack, state)
    order = np.argsort(-probs, kind="stable")
    listed = [i for i in order if consider[i]]
    entries = tuple(
        DifferentialEntry(
            code=pack.conditions[i].code,
            name=pack.conditions[i].name,
            icd10=pack.conditions[i].icd10,
            probability=float(probs[i]),
            posterior=float(post[i]),
            severity=pack.conditions[i].severity,
            triage=pack.conditions[i].triage,
            role="likely" if post[i] >= LIST_FLOOR else "consider",
        )
        for i in listed
    )
    tri = triage(pack, state, post, triage_policy, extra=course)
    return Assessment(
        differential=entries,
        triage=tri,
        explanations=tuple(explain(pack, state, listed[:explain_top])) if explain_top else (),
        questions_asked=len(state.answers) if questions_asked is None else questions_asked,
        stop_reason=stop_reason,
        ranking=tuple(pack.conditions[i].code for i in order),
        tests=tuple(suggest_tests(pack, post, answered=set(state.answered))),
        plan=care_plan(pack, state, tri, post),
    )
