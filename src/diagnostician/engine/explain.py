"""Why a condition sits where it does: the answers that raised or lowered it most, as likelihood ratios.

For condition c and answer a, LR = P(a | c) / P(a | not c), where "not c" is the prior-weighted
mix of the other conditions. LR > 1 supports c, LR < 1 speaks against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnostician.engine.posterior import Answer, State, log_likelihood
from diagnostician.knowledge.schema import BINARY, Pack


@dataclass(frozen=True)
class Evidence:
    """One answer's weight for or against a condition."""

    code: str
    text: str  # plain words: the finding and the answer
    likelihood_ratio: float


@dataclass(frozen=True)
class Explanation:
    """The answers that most support and most oppose one condition."""

    condition: str
    supporting: tuple[Evidence, ...]
    opposing: tuple[Evidence, ...]

    def sentence(self) -> str:
        """The explanation in plain words."""
        parts = []
        if self.supporting:
            parts.append("for: " + "; ".join(f"{e.text} (×{e.likelihood_ratio:.1f})" for e in self.supporting))
        if self.opposing:
            parts.append("against: " + "; ".join(f"{e.text} (×{e.likelihood_ratio:.2f})" for e in self.opposing))
        return f"{self.condition} — " + (" | ".join(parts) if parts else "no answer weighs strongly either way")


def answer_text(pack: Pack, a: Answer) -> str:
    """A finding and its answer in plain words."""
    f = pack.finding(a.code)
    q = f.question.rstrip("?:. ")
    if a.value is None:
        return f"{q}: don't know"
    if f.kind == BINARY:
        return f"{q}: {'yes' if a.value else 'no'}"
    vals = (a.value,) if isinstance(a.value, str) else a.value
    return f"{q}: {', '.join(f.label_of(v) for v in vals) or 'none'}"


def log_lr_matrix(pack: Pack, state: State) -> np.ndarray:
    """(answers, conditions) log likelihood ratio of each known answer for each condition."""
    known = [a for a in state.answers if not a.unknown]
    if not known:
        return np.zeros((0, len(pack.conditions)))
    ll = np.stack([log_likelihood(pack, a) for a in known])  # (A, C)
    prior = np.exp(pack.log_prior)
    lik = np.exp(ll - ll.max(axis=1, keepdims=True))
    total = lik @ prior
    other = (total[:, None] - lik * prior[None, :]) / np.clip(1 - prior[None, :], 1e-12, None)
    return np.log(np.clip(lik, 1e-300, None)) - np.log(np.clip(other, 1e-300, None))


def explain(pack: Pack, state: State, conditions: list[int], k: int = 3, min_lr: float = 1.5) -> list[Explanation]:
    """Explanations for the given condition indices (answers with LR ≥ min_lr or ≤ 1/min_lr)."""
    known = [a for a in state.answers if not a.unknown]
    llr = log_lr_matrix(pack, state)
    out = []
    cut = np.log(min_lr)
    for ci in conditions:
        col = llr[:, ci] if len(known) else np.zeros(0)
        up = [i for i in np.argsort(-col)[:k] if col[i] >= cut]
        down = [i for i in np.argsort(col)[:k] if col[i] <= -cut]
        mk = lambda i: Evidence(known[i].code, answer_text(pack, known[i]), float(np.exp(col[i])))  # noqa: E731
        out.append(Explanation(pack.conditions[ci].name, tuple(map(mk, up)), tuple(map(mk, down))))
    return out
