"""The plan that ends every assessment: when to check again, which danger signs to watch, what would change the advice.

Follow-up consultations use the same knowledge: a course rule ("a fever that has lasted 3 days or
more") that holds at a follow-up becomes a danger sign of its stated level, so the triage floor moves
with the course of the illness exactly as a red flag moves it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from diagnostician.engine.posterior import Answer, State, log_likelihood
from diagnostician.engine.triage import TriageResult, fired_red_flags, present_findings
from diagnostician.knowledge.followup import FollowupKnowledge, load_followup
from diagnostician.knowledge.schema import Pack, RedFlag

WATCH_FLOOR = 0.005  # a danger sign less likely than this under the differential is not worth a line (5× the answer-noise floor)
WORSE = "If you feel worse, or a new symptom worries you, do not wait for the re-check: seek care sooner."


@dataclass(frozen=True)
class CarePlan:
    """When to check again and what would change the advice."""

    level: str
    recheck_hours: int | None  # None: act now (emergency), no home re-check
    text: str
    watch_for: tuple[str, ...]  # danger signs worth watching for, most likely first, each with its advice
    change: tuple[str, ...]  # what would change the advice (symptoms lasting too long, getting worse)
    basis: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["watch_for"], d["change"] = list(self.watch_for), list(self.change)
        return d


def course_flags(pack: Pack, state: State, days: Mapping[str, float], knowledge: FollowupKnowledge | None = None) -> tuple[RedFlag, ...]:
    """Course rules that hold now: the finding is present and has lasted (days[code]) at least the rule's days."""
    kn = knowledge or load_followup()
    present = present_findings(pack, state)
    out = []
    for rule in kn.rules_for(pack):
        code = kn.code_in(rule, pack)
        if code is None or code not in present or not rule.applies(state.age):
            continue
        if days.get(code, 0.0) >= rule.days:
            out.append(RedFlag(rule.id, ((code, ()),), rule.level, rule.advice, rule.basis))
    return tuple(out)


def _watch(pack: Pack, state: State, p: np.ndarray, k: int) -> tuple[str, ...]:
    """Advice of the danger signs not (yet) present that the differential makes most likely.

    Denied signs count too: "no" today is exactly what may change by tomorrow.
    """
    answered = state.answered
    fired = {r.id for r in fired_red_flags(pack, state)}
    scored: list[tuple[float, str]] = []
    seen: set[str] = set()
    for rf in pack.red_flags:
        if rf.id in fired or rf.advice in seen:
            continue
        log_joint = np.zeros(len(p))
        for code, values in rf.when:
            if code in answered and answered[code].is_positive(pack):
                continue
            f = pack.finding(code)
            if values and f.kind != "binary":
                value = values[0] if f.kind == "categorical" else (values[0],)
                log_joint = log_joint + log_likelihood(pack, Answer(code, value))
            else:
                log_joint = log_joint + log_likelihood(pack, Answer(code, True))
        score = float(p @ np.exp(log_joint))
        if score >= WATCH_FLOOR:
            scored.append((score, rf.advice))
            seen.add(rf.advice)
    scored.sort(key=lambda t: -t[0])
    return tuple(advice for _, advice in scored[:k])


def care_plan(
    pack: Pack, state: State, triage: TriageResult, p: np.ndarray, knowledge: FollowupKnowledge | None = None, watch: int = 3
) -> CarePlan:
    """The plan for an assessment at this triage level: re-check time, danger signs to watch, course rules that apply."""
    kn = knowledge or load_followup()
    rc = kn.recheck[triage.level]
    present = present_findings(pack, state)
    fired = {r.id for r in triage.red_flags}
    change = []
    for rule in kn.rules_for(pack):
        code = kn.code_in(rule, pack)
        if code in present and rule.applies(state.age) and rule.id not in fired:
            change.append(rule.advice)
    change.append(WORSE)
    if rc.hours is None:  # emergency: the only plan is to go now
        return CarePlan(triage.level, None, rc.text, (), (), rc.basis)
    watch_for = _watch(pack, state, p, watch)
    return CarePlan(triage.level, rc.hours, rc.text, watch_for, tuple(change), rc.basis)
