"""Choice of the next question by expected information gain with a safety term, and the stopping rule.

Scoring of an unanswered finding F with answer A, posterior p over conditions C:

    IG(F)     = I(C; A) = H(A) − Σ_c p_c · H(A | c)                     (nats)
    safety(F) = I(D; A),  D = "the condition is dangerous" (triage emergency or within 24 h)
    score(F)  = IG(F) + w_safety · safety(F)

Binary and categorical answers are exact. A multi-choice answer is a set of values that are
independent given the condition; its IG is scored by the upper bound Σ_v I(C; A_v), capped at H(C).
A question whose parent question (e.g. "where is the pain" under "do you have pain") has not been
answered "yes" is not asked.

Red-flag screening comes first: when a finding named in a red flag's `ask_when` is present, the
flag's unanswered findings are asked before any diagnostic question (phase "screening"), the one
most likely present under the current posterior first, as a clinician screens chest pain for
breathlessness and sweating at once. At most `max_screening` such questions are asked; the
remaining danger findings stay open to the diagnostic phase, whose safety term scores them.
Screening questions count toward the budget but are never cut by the stopping rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from diagnostician.engine.posterior import State, posterior
from diagnostician.engine.triage import present_findings
from diagnostician.knowledge.ages import ask_age_limits
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
    max_screening: int = 5  # red-flag screening questions before the diagnostic phase takes over


@dataclass(frozen=True)
class Question:
    """The next question and why it is asked."""

    code: str
    phase: str  # "record" (confirming the family record), "screening", "diagnostic" or "review"
    expected_gain: float  # nats of information about the condition
    safety_gain: float  # nats of information about whether the condition is dangerous
    p_present: float  # predicted probability the answer reports the finding present
    separates: tuple[tuple[str, float], ...] = field(default=())  # (condition, P(present | condition))
    screens: str = ""  # id of the red flag this screening question checks


@dataclass(frozen=True)
class StopDecision:
    """Whether to stop, and why."""

    stop: bool
    reason: str


@dataclass(frozen=True)
class _Tables:
    """Per-pack arrays for scoring, computed once. Columns of one finding are contiguous."""

    starts: np.ndarray  # first column of each finding (for reduceat)
    bern: np.ndarray  # indices of presence columns (binary findings, multi-choice values)
    cat: np.ndarray  # indices of categorical value columns
    h_cell: np.ndarray  # (C, K) conditional entropy contribution of each cell
    cat_finding: np.ndarray  # (F,) finding is categorical
    present_col: np.ndarray  # (K,) column means "present" (not a categorical default)
    parent: np.ndarray  # (F,) parent finding index or −1
    p_mat: _ColumnBase  # P(column | condition) for products with a weight vector over conditions
    h_mat: _ColumnBase  # h_cell likewise


# Below this share of cells differing from their column's most common value, products go sparse.
SPARSE_DENSITY = 0.15


@dataclass(frozen=True)
class _ColumnBase:
    """A (C, K) matrix as a per-column base value plus the cells that differ (sparse when few do)."""

    dense: np.ndarray | None
    base: np.ndarray  # (K,)
    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray  # cell − base

    @staticmethod
    def of(m: np.ndarray) -> "_ColumnBase":
        """Split m into column bases and deviations; keep it dense when deviations are many."""
        base = np.zeros(m.shape[1])
        for k, col in enumerate(m.T):
            values, counts = np.unique(col, return_counts=True)
            base[k] = values[counts.argmax()]
        dev = m - base[None, :]
        rows, cols = np.nonzero(dev)
        if len(rows) > SPARSE_DENSITY * m.size:
            return _ColumnBase(m, base, rows[:0], cols[:0], dev[rows[:0], cols[:0]])
        return _ColumnBase(None, base, rows, cols, dev[rows, cols])

    def left(self, w: np.ndarray) -> np.ndarray:
        """w @ matrix for a weight vector w over conditions."""
        if self.dense is not None:
            return w @ self.dense
        return w.sum() * self.base + np.bincount(self.cols, weights=w[self.rows] * self.vals, minlength=len(self.base))


@lru_cache(maxsize=16)
def _tables(pack: Pack) -> _Tables:
    p = pack.p
    cat_col = np.array([pack.findings[f].kind == CATEGORICAL for f in pack.col_finding])
    h_cell = np.where(cat_col[None, :], -p * np.log(p), -(p * np.log(p) + (1 - p) * np.log1p(-p)))
    present_col = ~np.array([cat_col[j] and v == pack.findings[f].default for j, (f, v) in enumerate(zip(pack.col_finding, pack.col_value))])
    parent = np.array([pack.finding_index[f.parent] if f.parent is not None else -1 for f in pack.findings], dtype=int)
    starts = np.searchsorted(pack.col_finding, np.arange(len(pack.findings)))
    return _Tables(
        starts=starts,
        bern=np.where(~cat_col)[0],
        cat=np.where(cat_col)[0],
        h_cell=h_cell,
        cat_finding=np.array([f.kind == CATEGORICAL for f in pack.findings]),
        present_col=present_col,
        parent=parent,
        p_mat=_ColumnBase.of(p),
        h_mat=_ColumnBase.of(h_cell),
    )


def _entropy_cols(t: _Tables, a: np.ndarray) -> np.ndarray:
    """Per-column answer entropy terms: binary entropy for presence columns, −a log a for categorical ones."""
    a = np.minimum(np.maximum(a, 1e-12), 1 - 1e-12)
    out = np.empty(a.shape)
    ab = a[..., t.bern]
    out[..., t.bern] = -(ab * np.log(ab) + (1 - ab) * np.log1p(-ab))
    ac = a[..., t.cat]
    out[..., t.cat] = -ac * np.log(ac)
    return out


def askable(pack: Pack, state: State) -> np.ndarray:
    """Mask of findings that may be asked now (unanswered, parent answered present, sensible at the patient's age)."""
    t = _tables(pack)
    lo, hi = ask_age_limits(pack)
    mask = (lo <= state.age) & (state.age < hi) & pack.history_mask  # results are entered, never asked
    positive = np.zeros(len(pack.findings), dtype=bool)
    for a in state.answers:
        i = pack.finding_index[a.code]
        mask[i] = False
        positive[i] = a.is_positive(pack)
    has_parent = t.parent >= 0
    mask[has_parent] &= positive[t.parent[has_parent]]
    return mask


def scores(pack: Pack, p: np.ndarray, danger: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IG, safety gain, P(present)) of every finding under posterior p; all vectorised over findings."""
    t = _tables(pack)
    a = t.p_mat.left(p)  # P(column) under the posterior
    h_a = _entropy_cols(t, a)
    h_post = float(-(p * np.log(np.maximum(p, 1e-300))).sum())
    ig = np.minimum(np.add.reduceat(h_a - t.h_mat.left(p), t.starts), h_post)
    p_d = float(p[danger].sum())
    if 1e-6 < p_d < 1 - 1e-6:
        a_d = t.p_mat.left(p * danger)  # P(column, dangerous)
        col_s = h_a - p_d * _entropy_cols(t, a_d / p_d) - (1 - p_d) * _entropy_cols(t, (a - a_d) / (1 - p_d))
        h_d = -(p_d * np.log(p_d) + (1 - p_d) * np.log(1 - p_d))
        safety = np.minimum(np.maximum(np.add.reduceat(col_s, t.starts), 0.0), h_d)
    else:
        safety = np.zeros(len(pack.findings))
    # P(present): binary → a; categorical → 1 − P(default); multi-choice → the largest value's
    # share (a lower bound of 1 − Π(1 − a_v) that keeps this vectorised).
    a_present = np.where(t.present_col, a, 0.0)
    pres = np.where(t.cat_finding, np.add.reduceat(a_present, t.starts), np.maximum.reduceat(a_present, t.starts))
    return ig, safety, pres


def dangerous(pack: Pack, policy: InquiryPolicy) -> np.ndarray:
    """Mask of conditions that count as dangerous for the safety term and the stopping rule."""
    return pack.triage_rank <= policy.danger_rank


def should_stop(
    pack: Pack, state: State, policy: InquiryPolicy, p: np.ndarray | None = None, max_questions: int | None = None
) -> StopDecision:
    """Whether the diagnostic phase is done (budget reached, or confident with no dangerous rival).

    max_questions is the budget in answers held by the state (default policy.max_questions);
    a consultation passes its up-front findings plus the policy's budget.
    """
    p = posterior(state) if p is None else p
    budget = policy.max_questions if max_questions is None else max_questions
    if len(state.answers) >= budget:
        return StopDecision(True, f"question budget of {policy.max_questions} reached")
    top = int(np.argmax(p))
    danger = dangerous(pack, policy)
    rival = p * danger
    rival[top] = 0.0
    if p[top] >= policy.confidence and rival.sum() < policy.danger_threshold:
        return StopDecision(True, f"confident: {pack.conditions[top].name} at {p[top]:.1%}, no dangerous condition left above {policy.danger_threshold:.0%}")
    return StopDecision(False, "")


def screening_candidates(pack: Pack, state: State) -> tuple[dict[int, str], int]:
    """Unanswered findings of red flags a present finding asks to screen for (index → flag id), and how many were answered."""
    candidates: dict[int, str] = {}
    screened = 0
    if not any(r.ask_when for r in pack.red_flags):
        return candidates, screened
    answered = state.answered
    present = present_findings(pack, state)
    asked: set[str] = set()
    for rf in pack.red_flags:
        if not present.intersection(rf.ask_when):
            continue
        # A flag one of whose findings was denied can no longer fire: nothing left to screen.
        if any(code in answered and not answered[code].is_positive(pack) and not answered[code].unknown for code, _ in rf.when):
            asked.update(code for code, _ in rf.when if code in answered and code not in rf.ask_when)
            continue
        for code, _ in rf.when:
            if code in answered:
                if code not in rf.ask_when:
                    asked.add(code)
            elif code not in present:
                candidates.setdefault(pack.finding_index[code], rf.id)
    return candidates, len(asked)


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
    candidates, screened = screening_candidates(pack, state)
    candidates = {i: flag for i, flag in candidates.items() if mask[i]}
    if candidates and screened < policy.max_screening:
        # The danger sign most likely present under the current differential first.
        i = max(sorted(candidates), key=lambda j: pres[j])
        return Question(pack.findings[i].code, "screening", float(ig[i]), float(safety[i]), float(pres[i]), separates(pack, p, i), candidates[i])
    score = np.where(mask, ig + policy.safety_weight * safety, -np.inf)
    best = int(np.argmax(score))
    diag_done = should_stop(pack, state, policy, p, budget).stop or score[best] < policy.min_gain
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
    t = _tables(pack)
    cols = pack.finding_columns[finding]
    cols = cols[t.present_col[cols]]
    if len(cols) == 0:
        return ()
    lead = np.argsort(-p)[:k]
    pres = pack.p[np.ix_(lead, cols)]
    if t.cat_finding[finding]:
        val = pres.sum(axis=1)
    else:
        val = 1 - np.prod(1 - pres, axis=1)
    return tuple((pack.conditions[c].name, float(v)) for c, v in zip(lead, val))
