"""Choice of the next question by expected information gain with a safety term, and the stopping rule.

Scoring of an unanswered finding F with answer A, posterior p over conditions C:

    IG(F)     = I(C; A) = H(A) − Σ_c p_c · H(A | c)                     (nats)
    safety(F) = I(D; A),  D = "the condition is dangerous" (triage emergency or within 24 h)
    score(F)  = IG(F) + w_safety · safety(F)

Binary and categorical answers are exact. A multi-choice answer is a set of values that are
independent given the condition; its IG is scored by the upper bound Σ_v I(C; A_v), capped at H(C).
A question whose parent question (e.g. "where is the pain" under "do you have pain") has not been
answered "yes" is not asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from diagnostician.engine.posterior import State, posterior
from diagnostician.knowledge.schema import CATEGORICAL, Pack


@dataclass(frozen=True)
class InquiryPolicy:
    """Parameters of question choice and stopping (all configurable)."""

    max_questions: int = 30
    confidence: float = 0.99  # top posterior needed before the diagnostic phase may stop
    danger_threshold: float = 0.01  # keep asking while another dangerous condition has at least this
    min_gain: float = 0.005  # nats: below this no diagnostic question is worth asking
    safety_weight: float = 1.0
    review: bool = True  # after the diagnostic phase, review likely findings for the differential
    review_threshold: float = 0.15  # ask review questions whose answer is 'present' with at least this probability
    danger_rank: int = 1  # conditions with triage rank ≤ this count as dangerous (0 emergency, 1 within 24 h)


@dataclass(frozen=True)
class Question:
    """The next question and why it is asked."""

    code: str
    phase: str  # "diagnostic" or "review"
    expected_gain: float  # nats of information about the condition
    safety_gain: float  # nats of information about whether the condition is dangerous
    p_present: float  # predicted probability the answer reports the finding present
    separates: tuple[tuple[str, float], ...] = field(default=())  # (condition, P(present | condition))


@dataclass(frozen=True)
class StopDecision:
    """Whether to stop, and why."""

    stop: bool
    reason: str


@lru_cache(maxsize=8)
def _cell_tables(pack: Pack) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-cell conditional entropies, a categorical-column mask, the default column of each finding."""
    p = pack.p
    cat = np.array([pack.findings[f].kind == CATEGORICAL for f in pack.col_finding])
    bern_h = -(p * np.log(p) + (1 - p) * np.log1p(-p))
    cat_h = -p * np.log(p)
    h_cell = np.where(cat[None, :], cat_h, bern_h)
    # Probability that an answer reports "present": binary/multi columns are presence columns;
    # a categorical finding is "present" when its value is not the default.
    present_col = np.ones(p.shape[1], dtype=bool)
    for j, (f, v) in enumerate(zip(pack.col_finding, pack.col_value)):
        if cat[j] and v == pack.findings[f].default:
            present_col[j] = False
    parent = np.array(
        [pack.finding_index[f.parent] if f.parent is not None else -1 for f in pack.findings], dtype=int
    )
    return h_cell, cat, present_col, parent


def _col_entropy(a: np.ndarray, cat: np.ndarray) -> np.ndarray:
    a = np.clip(a, 1e-12, 1 - 1e-12)
    return np.where(cat, -a * np.log(a), -(a * np.log(a) + (1 - a) * np.log1p(-a)))


def _per_finding(pack: Pack, col_values: np.ndarray) -> np.ndarray:
    return np.bincount(pack.col_finding, weights=col_values, minlength=len(pack.findings))


def askable(pack: Pack, state: State) -> np.ndarray:
    """Mask of findings that may be asked now (unanswered, parent answered present)."""
    _, _, _, parent = _cell_tables(pack)
    mask = np.ones(len(pack.findings), dtype=bool)
    positive = np.zeros(len(pack.findings), dtype=bool)
    for a in state.answers:
        i = pack.finding_index[a.code]
        mask[i] = False
        positive[i] = a.is_positive(pack)
    has_parent = parent >= 0
    mask[has_parent] &= positive[parent[has_parent]]
    return mask


def scores(pack: Pack, p: np.ndarray, danger: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IG, safety gain, P(present)) of every finding under posterior p; all vectorised over findings."""
    h_cell, cat, present_col, _ = _cell_tables(pack)
    a = p @ pack.p
    col_ig = _col_entropy(a, cat) - p @ h_cell
    h_post = float(-(p * np.log(np.clip(p, 1e-300, 1))).sum())
    ig = np.minimum(_per_finding(pack, col_ig), h_post)
    p_d = float(p[danger].sum())
    if 1e-9 < p_d < 1 - 1e-9:
        a_d = (p * danger) @ pack.p / p_d
        a_n = (p * ~danger) @ pack.p / (1 - p_d)
        col_s = _col_entropy(a, cat) - p_d * _col_entropy(a_d, cat) - (1 - p_d) * _col_entropy(a_n, cat)
        h_d = -(p_d * np.log(p_d) + (1 - p_d) * np.log(1 - p_d))
        safety = np.clip(_per_finding(pack, col_s), 0, h_d)
    else:
        safety = np.zeros(len(pack.findings))
    # P(present): binary → a; categorical → 1 − P(default); multi → 1 − Π_v (1 − a_v) approximated
    # by the largest value share (a lower bound that keeps the computation vectorised).
    pres = np.zeros(len(pack.findings))
    np.maximum.at(pres, pack.col_finding[present_col & ~cat], a[present_col & ~cat])
    cat_present = _per_finding(pack, np.where(cat & present_col, a, 0.0))
    pres = np.maximum(pres, cat_present)
    return ig, safety, pres


def dangerous(pack: Pack, policy: InquiryPolicy) -> np.ndarray:
    """Mask of conditions that count as dangerous for the safety term and the stopping rule."""
    return pack.triage_rank <= policy.danger_rank


def should_stop(pack: Pack, state: State, policy: InquiryPolicy, p: np.ndarray | None = None) -> StopDecision:
    """Whether the diagnostic phase is done (confident, no dangerous rival, or nothing worth asking)."""
    p = posterior(state) if p is None else p
    n_asked = len(state.answers)
    if n_asked >= policy.max_questions:
        return StopDecision(True, f"question budget of {policy.max_questions} reached")
    top = int(np.argmax(p))
    danger = dangerous(pack, policy)
    rival = p * danger
    rival[top] = 0.0
    if p[top] >= policy.confidence and rival.sum() < policy.danger_threshold:
        return StopDecision(True, f"confident: {pack.conditions[top].name} at {p[top]:.1%}, no dangerous condition left above {policy.danger_threshold:.0%}")
    return StopDecision(False, "")


def next_question(pack: Pack, state: State, policy: InquiryPolicy = InquiryPolicy(), max_questions: int | None = None) -> Question | None:
    """The most useful next question, or None when the inquiry should stop."""
    budget = policy.max_questions if max_questions is None else max_questions
    if len(state.answers) >= budget:
        return None
    p = posterior(state)
    mask = askable(pack, state)
    if not mask.any():
        return None
    danger = dangerous(pack, policy)
    ig, safety, pres = scores(pack, p, danger)
    score = np.where(mask, ig + policy.safety_weight * safety, -np.inf)
    best = int(np.argmax(score))
    diag_done = should_stop(pack, state, policy, p).stop or score[best] < policy.min_gain
    phase = "diagnostic"
    if diag_done:
        if not policy.review:
            return None
        review = np.where(mask, pres, -np.inf)
        best = int(np.argmax(review))
        if review[best] < policy.review_threshold:
            return None
        phase = "review"
    return Question(
        code=pack.findings[best].code,
        phase=phase,
        expected_gain=float(ig[best]),
        safety_gain=float(safety[best]),
        p_present=float(pres[best]),
        separates=separates(pack, p, best),
    )


def separates(pack: Pack, p: np.ndarray, finding: int, k: int = 5) -> tuple[tuple[str, float], ...]:
    """The leading conditions and how likely each makes a 'present' answer to this finding."""
    _, cat, present_col, _ = _cell_tables(pack)
    cols = pack.finding_columns[finding]
    cols = cols[present_col[cols]]
    if len(cols) == 0:
        return ()
    lead = np.argsort(-p)[:k]
    pres = pack.p[np.ix_(lead, cols)]
    if cat[cols[0]]:
        val = pres.sum(axis=1)
    else:
        val = 1 - np.prod(1 - pres, axis=1)
    return tuple((pack.conditions[c].name, float(v)) for c, v in zip(lead, val))
