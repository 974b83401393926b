"""Vectorised naive-Bayes posterior over all conditions of a pack, in log space."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Union

import numpy as np

from diagnostician.errors import InputError, InvalidAnswerError
from diagnostician.knowledge.schema import BINARY, CATEGORICAL, Pack

AnswerValue = Union[bool, str, tuple[str, ...], None]
MIN_AGE, MAX_AGE = 0.0, 120.0
SEXES = {"F": 0, "FEMALE": 0, "W": 0, "WOMAN": 0, "M": 1, "MALE": 1, "MAN": 1}


@dataclass(frozen=True)
class Answer:
    """An answer to one finding: True/False (binary), a value (categorical), values (multi) or None (don't know)."""

    code: str
    value: AnswerValue

    @property
    def unknown(self) -> bool:
        """Whether the patient did not know."""
        return self.value is None

    def is_positive(self, pack: Pack) -> bool:
        """Whether the answer reports the finding as present (not absent, not default, not unknown)."""
        if self.value is None or self.value is False:
            return False
        if self.value is True:
            return True
        f = pack.finding(self.code)
        vals = (self.value,) if isinstance(self.value, str) else self.value
        return any(v != f.default for v in vals)


@dataclass(frozen=True)
class State:
    """Demographics, answers in order and the unnormalised log posterior: pure data, cheap to copy."""

    pack_name: str
    pack_version: str
    age: float
    sex: str
    answers: tuple[Answer, ...]
    log_post: np.ndarray = field(repr=False, compare=False)

    @property
    def answered(self) -> dict[str, Answer]:
        """Answers by finding code."""
        return {a.code: a for a in self.answers}


def normalise_sex(sex: str) -> str:
    """Map free spellings of sex to 'F' or 'M'."""
    key = str(sex).strip().upper()
    if key not in SEXES:
        raise InputError(f"sex must be F or M, got {sex!r}")
    return "FM"[SEXES[key]]


def check_age(age: float) -> float:
    """Validate an age in years."""
    try:
        value = float(age)
    except (TypeError, ValueError) as exc:
        raise InputError(f"age must be a number of years, got {age!r}") from exc
    if not (MIN_AGE <= value <= MAX_AGE) or value != value:
        raise InputError(f"age must lie between {MIN_AGE:g} and {MAX_AGE:g} years, got {age!r}")
    return value


@lru_cache(maxsize=16)
def _tables(pack: Pack) -> tuple[dict[tuple[str, str | None], int], np.ndarray, np.ndarray]:
    """Column lookup, per-finding sum of log(1−p) (for multi-choice) and log(p)−log(1−p)."""
    lookup = {(pack.findings[f].code, v): j for j, (f, v) in enumerate(zip(pack.col_finding, pack.col_value))}
    q_sum = np.zeros((len(pack.conditions), len(pack.findings)))
    np.add.at(q_sum.T, pack.col_finding, pack.log_q.T)
    return lookup, q_sum, pack.log_p - pack.log_q


def validate_answer(pack: Pack, answer: Answer) -> Answer:
    """Check an answer against its finding and return it in canonical form."""
    f = pack.finding(answer.code)
    v = answer.value
    if v is None:
        return answer
    if f.kind == BINARY:
        if not isinstance(v, bool):
            raise InvalidAnswerError(f"{f.code} is a yes/no question; got {v!r}")
        return answer
    if f.kind == CATEGORICAL:
        if isinstance(v, (list, tuple)):
            if len(v) != 1:
                raise InvalidAnswerError(f"{f.code} takes exactly one value; got {v!r}")
            v = v[0]
        v = str(v)
        if v not in f.values:
            raise InvalidAnswerError(f"{f.code}: value {v!r} is not one of {', '.join(f.values)}")
        return Answer(f.code, v)
    vals = (v,) if isinstance(v, str) else tuple(v) if isinstance(v, (list, tuple)) else None
    if vals is None:
        raise InvalidAnswerError(f"{f.code} takes a list of values; got {v!r}")
    bad = [x for x in vals if str(x) not in f.values]
    if bad:
        raise InvalidAnswerError(f"{f.code}: values {bad!r} are not among its {len(f.values)} values")
    clean = tuple(sorted({str(x) for x in vals} - {f.default}))
    return Answer(f.code, clean if clean else (f.default,) if f.default is not None else ())


def log_likelihood(pack: Pack, answer: Answer) -> np.ndarray:
    """log P(answer | condition) for every condition (zeros for 'don't know')."""
    lookup, q_sum, lr = _tables(pack)
    v = answer.value
    if v is None:
        return np.zeros(len(pack.conditions))
    f = pack.finding(answer.code)
    if f.kind == BINARY:
        j = lookup[(f.code, None)]
        return pack.log_p[:, j] if v else pack.log_q[:, j]
    if f.kind == CATEGORICAL:
        return pack.log_p[:, lookup[(f.code, v)]]
    fi = pack.finding_index[f.code]
    cols = [lookup[(f.code, x)] for x in v if x != f.default]
    return q_sum[:, fi] + lr[:, cols].sum(axis=1)


def demographic_log_likelihood(pack: Pack, age: float, sex: str) -> np.ndarray:
    """log P(age band, sex | condition), from the pack's smoothed tables."""
    return np.log(pack.p_age[:, pack.age_band(age)]) + np.log(pack.p_sex[:, 0 if sex == "F" else 1])


def start(pack: Pack, age: float, sex: str, answers: tuple[Answer, ...] | list[Answer] = ()) -> State:
    """A new state from demographics and optional first answers."""
    age_v, sex_v = check_age(age), normalise_sex(sex)
    lp = pack.log_prior + demographic_log_likelihood(pack, age_v, sex_v)
    state = State(pack.name, pack.version, age_v, sex_v, (), lp)
    given = {a.code for a in answers}
    # Findings the age decides ("a baby under 3 months") are answered from it, never asked.
    for f in pack.age_decided:
        if f.code not in given:
            state = update(pack, state, Answer(f.code, f.age_range[0] <= age_v < f.age_range[1]))  # type: ignore[index]
    for a in answers:
        state = update(pack, state, a)
    return state


def update(pack: Pack, state: State, answer: Answer) -> State:
    """The state after one more answer (a repeated finding replaces its earlier answer)."""
    answer = validate_answer(pack, answer)
    if any(a.code == answer.code for a in state.answers):
        kept = tuple(a for a in state.answers if a.code != answer.code) + (answer,)
        return rebuild(pack, state, kept)
    return replace(state, answers=state.answers + (answer,), log_post=state.log_post + log_likelihood(pack, answer))


def rebuild(pack: Pack, state: State, answers: tuple[Answer, ...]) -> State:
    """Recompute a state from scratch with the given answers (used by undo and replacement)."""
    lp = pack.log_prior + demographic_log_likelihood(pack, state.age, state.sex)
    for a in answers:
        lp = lp + log_likelihood(pack, validate_answer(pack, a))
    return replace(state, answers=tuple(answers), log_post=lp)


def posterior(state: State) -> np.ndarray:
    """Normalised posterior probabilities of every condition."""
    lp = state.log_post - state.log_post.max()
    w = np.exp(lp)
    return w / w.sum()
