"""Triage: red flags first, then the posterior mass of conditions at each urgency level.

Rule (explicit, in this order):
1. Every red flag whose findings are all answered present fires; the most urgent fired level is a
   floor that nothing can lower.
2. For each level L from most to least urgent: if the posterior mass of conditions whose own
   triage is L or more urgent reaches threshold[L], the level is at least L. Only conditions that
   account for something the patient reports count (a finding the knowledge lists for them, not
   the leak of a sparse pack): a fracture that explains none of a red eye's symptoms does not make
   the red eye an emergency, however much prior mass a long differential leaves it.
3. Otherwise self-care. The result is the most urgent of 1 and 2.
Thresholds are low on purpose: under-triage is the worst error, over-triage the price paid for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diagnostician.engine.posterior import State
from diagnostician.knowledge.schema import TRIAGE_LEVELS, TRIAGE_TEXT, Pack, RedFlag


@dataclass(frozen=True)
class TriagePolicy:
    """Posterior-mass thresholds per level (mass of conditions at that level or more urgent)."""

    thresholds: tuple[float, float, float] = (0.05, 0.05, 0.05)  # emergency, urgent_24h, see_doctor


@dataclass(frozen=True)
class TriageResult:
    """A triage level with the advice and what drove it."""

    level: str
    advice: str
    red_flags: tuple[RedFlag, ...] = ()
    reasons: tuple[str, ...] = field(default=())
    mass: tuple[float, ...] = ()  # posterior mass at each level or more urgent

    @property
    def rank(self) -> int:
        """0 = emergency … 3 = self-care."""
        return TRIAGE_LEVELS.index(self.level)


def present_findings(pack: Pack, state: State) -> set[str]:
    """Findings answered present, and the broader findings those entail (pack "implies")."""
    present = {code for code, a in state.answered.items() if a.is_positive(pack)}
    return present | {b for code in present for b in pack.implies.get(code, ())}


def flag_evidence(pack: Pack, rf: RedFlag, state: State) -> list[str]:
    """The answered findings that satisfy a red flag: its own findings, or narrower ones that entail them."""
    answered = state.answered
    out: list[str] = []
    for code, _ in rf.when:
        if code in answered and answered[code].is_positive(pack):
            out.append(code)
        else:
            out += [a for a, ans in answered.items() if ans.is_positive(pack) and code in pack.implies.get(a, ())]
    return list(dict.fromkeys(out))


def fired_red_flags(pack: Pack, state: State) -> tuple[RedFlag, ...]:
    """Red flags whose findings are all answered present, or entailed by a narrower one (with a listed value where one is given)."""
    answered = state.answered
    entailed = present_findings(pack, state)
    fired = []
    for rf in pack.red_flags:
        ok = True
        for code, values in rf.when:
            a = answered.get(code)
            if not values and code in entailed:
                continue
            if a is None or not a.is_positive(pack):
                ok = False
                break
            if values and not isinstance(a.value, bool):  # values qualify categorical / multi-choice findings only
                got = (a.value,) if isinstance(a.value, str) else tuple(a.value or ())
                if not set(got) & set(values):
                    ok = False
                    break
        if ok:
            fired.append(rf)
    return tuple(fired)


def accounting(pack: Pack, state: State) -> np.ndarray:
    """Which conditions account for at least one finding the patient reports (a listed cell, not the pack's leak)."""
    everyone = np.ones(len(pack.conditions), dtype=bool)
    if pack.unlisted_source is None:
        return everyone
    cols: list[int] = []
    for a in state.answers:
        if not a.is_positive(pack):
            continue
        own = pack.finding_columns[pack.finding_index[a.code]]
        if a.value is True:
            cols.append(int(own[0]))
        else:
            given = {a.value} if isinstance(a.value, str) else set(a.value or ())
            cols += [int(j) for j in own if pack.col_value[j] in given - {pack.finding(a.code).default}]
    if not cols:
        return everyone
    return (pack.p_source[:, cols] != pack.unlisted_source).any(axis=1)


def triage(pack: Pack, state: State, p: np.ndarray, policy: TriagePolicy = TriagePolicy(), extra: tuple[RedFlag, ...] = ()) -> TriageResult:
    """Triage level for the current state and posterior p; `extra` danger signs (course rules at a follow-up) count as fired."""
    flags = fired_red_flags(pack, state) + tuple(extra)
    rank = pack.triage_rank
    counts = accounting(pack, state)
    mass = tuple(float(p[(rank <= lvl) & counts].sum()) for lvl in range(len(TRIAGE_LEVELS)))
    level = len(TRIAGE_LEVELS) - 1
    reasons: list[str] = []
    for lvl, thr in enumerate(policy.thresholds):
        if mass[lvl] >= thr:
            level = lvl
            names = [pack.conditions[i].name for i in np.argsort(-p) if rank[i] <= lvl and counts[i] and p[i] >= 0.01][:3]
            reasons.append(
                f"{mass[lvl]:.0%} probability of conditions needing '{TRIAGE_LEVELS[lvl]}' care or sooner"
                + (f" ({', '.join(names)})" if names else "")
            )
            break
    if flags:
        flag_level = min(TRIAGE_LEVELS.index(r.level) for r in flags)
        if flag_level <= level:
            reasons.insert(0, "danger sign: " + "; ".join(r.id.replace("_", " ") for r in flags))
        level = min(level, flag_level)
    name = TRIAGE_LEVELS[level]
    advice = " ".join([r.advice for r in flags if TRIAGE_LEVELS.index(r.level) == level] or [TRIAGE_TEXT[name]])
    return TriageResult(name, advice, flags, tuple(reasons), mass)
