"""The clinical differential: which conditions a clinician should still consider, learned from reference differentials.

The naive-Bayes posterior names the most likely condition well but is far too peaked to be a
differential (it keeps about one condition above 1 %). The pack may ship a *differential model*
(differential_model.json): per condition, a logistic model of P(condition belongs in the
differential | answers), on the findings answered present, age, sex and features of how the
condition fits the answers (see `features`). The reported differential ranks conditions by the
posterior and lists those the model says to consider beside those the posterior holds at ≥ 1 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from diagnostician.engine.posterior import State, demographic_log_likelihood, log_likelihood, posterior
from diagnostician.errors import PackError
from diagnostician.knowledge.schema import Pack

FEATURES = (
    "log_posterior",
    "log_posterior_rank",
    "positive_loglik_rel",
    "negative_loglik_rel",
    "demographic_loglik_rel",
    "share_positive_in_kb",
    "share_kb_symptoms_present",
    "share_kb_symptoms_denied",
    "share_kb_antecedents_present",
    "n_positive_outside_kb",
    "chief_complaint_in_kb",
    "log_prior",
)


@lru_cache(maxsize=16)
def _kb(pack: Pack) -> tuple[np.ndarray, np.ndarray]:
    """(C, F) masks: finding is a listed symptom / antecedent of the condition in the pack."""
    sym = np.zeros((len(pack.conditions), len(pack.findings)), dtype=bool)
    ant = np.zeros_like(sym)
    for ci, c in enumerate(pack.conditions):
        for code in c.symptoms:
            if code in pack.finding_index:
                sym[ci, pack.finding_index[code]] = True
        for code in c.antecedents:
            if code in pack.finding_index:
                ant[ci, pack.finding_index[code]] = True
    return sym, ant


def features(pack: Pack, state: State) -> np.ndarray:
    """(C, len(FEATURES)) feature matrix describing how each condition fits the answers so far."""
    n_c, n_f = len(pack.conditions), len(pack.findings)
    sym, ant = _kb(pack)
    pos_ll = np.zeros(n_c)
    neg_ll = np.zeros(n_c)
    pos = np.zeros(n_f, dtype=bool)
    neg = np.zeros(n_f, dtype=bool)
    chief = -1
    for a in state.answers:
        if a.unknown:
            continue
        i = pack.finding_index[a.code]
        ll = log_likelihood(pack, a)
        if a.is_positive(pack):
            pos[i] = True
            pos_ll += ll
            if chief < 0:
                chief = i
        else:
            neg[i] = True
            neg_ll += ll
    p = posterior(state)
    lpost = np.log(np.clip(p, 1e-300, 1.0))
    rank = np.empty(n_c)
    rank[np.argsort(-p)] = np.arange(n_c)
    demo = demographic_log_likelihood(pack, state.age, state.sex)
    n_pos = max(1, int(pos.sum()))
    n_sym = np.maximum(1, sym.sum(1))
    n_ant = np.maximum(1, ant.sum(1))
    kb = sym | ant
    out = np.column_stack(
        [
            np.maximum(lpost, -50.0) / 10.0,
            np.log1p(rank),
            np.maximum(pos_ll - pos_ll.max(), -60.0) / 10.0,
            np.maximum(neg_ll - neg_ll.max(), -60.0) / 10.0,
            demo - demo.max(),
            (kb & pos).sum(1) / n_pos,
            (sym & pos).sum(1) / n_sym,
            (sym & neg).sum(1) / n_sym,
            (ant & pos).sum(1) / n_ant,
            np.log1p((pos & ~kb).sum(1)),
            kb[:, chief].astype(float) if chief >= 0 else np.zeros(n_c),
            pack.log_prior / 10.0,
        ]
    )
    return out


@lru_cache(maxsize=16)
def _history_index(pack: Pack) -> dict[str, int]:
    return {f.code: i for i, f in enumerate(f for f in pack.findings if f.stage == "history")}


def evidence_vector(pack: Pack, state: State) -> np.ndarray:
    """Patient-level inputs: which findings were answered present, plus scaled age and sex."""
    # Over the findings the inquiry asks: the model was trained on those; examination and test results
    # enter the posterior only.
    index = _history_index(pack)
    v = np.zeros(len(index) + 2)
    for a in state.answers:
        if a.code in index and a.is_positive(pack):
            v[index[a.code]] = 1.0
    v[-2] = state.age / 50.0
    v[-1] = 1.0 if state.sex == "M" else 0.0
    return v


@dataclass(frozen=True)
class DifferentialModel:
    """One L2-regularised logistic model per condition of 'belongs in the differential'.

    Input of condition c: the patient's evidence vector (findings present, age, sex) and c's row of
    `features`. Weights are (C, n_evidence) and (C, len(FEATURES)), plus an intercept per condition.
    """

    w_evidence: np.ndarray
    w_features: np.ndarray
    intercept: np.ndarray
    threshold: float

    @classmethod
    def from_json(cls, pack: Pack, obj: dict) -> "DifferentialModel":
        """Read the model stored in the pack."""
        if tuple(obj["features"]) != FEATURES:
            raise ValueError("differential model was trained on other features")
        ev_names = obj["evidence_inputs"]
        want = list(_history_index(pack)) + ["age/50", "male"]
        if ev_names != want:
            raise ValueError("differential model was trained on another finding list")
        rows = [obj["conditions"][c.code] for c in pack.conditions]
        return cls(
            np.array([r["w_evidence"] for r in rows], float),
            np.array([r["w_features"] for r in rows], float),
            np.array([r["intercept"] for r in rows], float),
            float(obj["threshold"]),
        )

    def inclusion(self, evidence: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """P(in differential) of every condition."""
        z = self.w_evidence @ evidence + (self.w_features * feats).sum(1) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


@lru_cache(maxsize=16)
def model_for(pack: Pack) -> DifferentialModel | None:
    """The pack's differential model, if it ships one."""
    if not pack.differential_model:
        return None
    try:
        return DifferentialModel.from_json(pack, pack.differential_model)
    except (KeyError, TypeError, ValueError) as exc:
        raise PackError(f"pack {pack.name}: differential_model.json is unusable: {exc!r}") from exc


LIST_FLOOR = 0.01  # a condition in the differential is shown with at least this probability


def differential(pack: Pack, state: State) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, consider-mask) of the clinical differential over all conditions.

    Listed: every condition the differential model says to consider, and every condition whose
    posterior is at least LIST_FLOOR. Probabilities keep the posterior's order at the top; listed
    conditions are lifted to at least LIST_FLOOR (then all are renormalised), every other condition
    is capped just below it, so 'listed' always means 'probability ≥ 1 %'.
    """
    p = posterior(state)
    model = model_for(pack)
    if model is None:
        return p, p >= LIST_FLOOR
    incl = model.inclusion(evidence_vector(pack, state), features(pack, state))
    # The model adds conditions to consider; it never hides one the posterior itself holds at ≥ 1 %
    # (early in an inquiry the posterior is broad and the model, trained on finished inquiries, is not).
    consider = (incl >= model.threshold) | (p >= LIST_FLOOR)
    consider[int(np.argmax(p))] = True
    n_consider = int(consider.sum())
    # Mass for listed conditions: the posterior, floored; unlisted share what remains, below the floor.
    q = np.where(consider, np.maximum(p, 2 * LIST_FLOOR) + 0.01 * p, np.minimum(p, 0.2 * LIST_FLOOR / len(p)))
    q = q / q.sum()
    # After renormalising, listed ones must still clear the floor (they do unless > ~40 are listed).
    if n_consider and q[consider].min() < LIST_FLOOR:
        q[consider] = np.maximum(q[consider], LIST_FLOOR)
        q = q / q.sum()
    return q, consider
