"""Naive-Bayes posterior on the tiny pack, checked against products of the pack's numbers worked out by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from tinypack import make_tiny_pack

from diagnostician.engine.posterior import Answer, posterior, rebuild, start, update


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_pack(tmp_path_factory.mktemp("tiny"))


def normalised(w: list[float]) -> list[float]:
    total = sum(w)
    return [x / total for x in w]


def assert_close(got, expected, tol=1e-9) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert abs(float(g) - e) <= tol, (list(got), expected)


# Rows below are (CA, CB, CC). Age 40 is band [18, 65): P(band) 0.4, 0.4, 0.4; sex F: 0.4, 0.5, 0.6.
BASE_40F = [0.2 * 0.4 * 0.4, 0.3 * 0.4 * 0.5, 0.5 * 0.4 * 0.6]


def test_prior_times_demographics(tiny) -> None:
    s = start(tiny, 40, "F")
    assert_close(posterior(s), normalised(BASE_40F))
    # Age 70 is band [65, 200): 0.5, 0.3, 0.1; sex M: 0.6, 0.5, 0.4.
    s = start(tiny, 70, "male")
    assert s.sex == "M"
    assert_close(posterior(s), normalised([0.2 * 0.5 * 0.6, 0.3 * 0.3 * 0.5, 0.5 * 0.1 * 0.4]))
    # Age 10 is band [0, 18): 0.1, 0.3, 0.5.
    s = start(tiny, 10, "f")
    assert_close(posterior(s), normalised([0.2 * 0.1 * 0.4, 0.3 * 0.3 * 0.5, 0.5 * 0.5 * 0.6]))


def test_age_band_edges(tiny) -> None:
    # 18 opens the middle band, 65 the last, 120 (the maximum) stays in the last.
    s18, s17 = start(tiny, 18, "F"), start(tiny, 17.9, "F")
    assert_close(posterior(s18), normalised(BASE_40F))
    assert_close(posterior(s17), normalised([0.2 * 0.1 * 0.4, 0.3 * 0.3 * 0.5, 0.5 * 0.5 * 0.6]))
    last = normalised([0.2 * 0.5 * 0.4, 0.3 * 0.3 * 0.5, 0.5 * 0.1 * 0.6])
    assert_close(posterior(start(tiny, 65, "F")), last)
    assert_close(posterior(start(tiny, 120, "F")), last)


def test_binary_yes_and_no(tiny) -> None:
    s = start(tiny, 40, "F", [Answer("fever", True)])
    assert_close(posterior(s), normalised([BASE_40F[0] * 0.2, BASE_40F[1] * 0.9, BASE_40F[2] * 0.5]))
    s = start(tiny, 40, "F", [Answer("fever", False)])
    assert_close(posterior(s), normalised([BASE_40F[0] * 0.8, BASE_40F[1] * 0.1, BASE_40F[2] * 0.5]))


def test_categorical_value(tiny) -> None:
    s = start(tiny, 40, "F", [Answer("onset", "fast")])
    assert_close(posterior(s), normalised([BASE_40F[0] * 0.3, BASE_40F[1] * 0.3, BASE_40F[2] * 0.1]))
    # The default value is a value like any other for the likelihood.
    s = start(tiny, 40, "F", [Answer("onset", "gradual")])
    assert_close(posterior(s), normalised([BASE_40F[0] * 0.2, BASE_40F[1] * 0.5, BASE_40F[2] * 0.8]))


@pytest.mark.parametrize(
    "values, lik",
    [
        # P(set | c) = Π over listed values of (p if chosen else 1 − p); chest 0.9 0.5 0.1, throat 0.1 0.2 0.8.
        (("chest",), [0.9 * 0.9, 0.5 * 0.8, 0.1 * 0.2]),
        (("throat",), [0.1 * 0.1, 0.5 * 0.2, 0.9 * 0.8]),
        (("chest", "throat"), [0.9 * 0.1, 0.5 * 0.2, 0.1 * 0.8]),
        (("throat", "chest"), [0.9 * 0.1, 0.5 * 0.2, 0.1 * 0.8]),
        (("nowhere",), [0.1 * 0.9, 0.5 * 0.8, 0.9 * 0.2]),  # default: every value absent
    ],
)
def test_multi_choice_set(tiny, values, lik) -> None:
    s = start(tiny, 40, "F", [Answer("site", values)])
    assert_close(posterior(s), normalised([b * x for b, x in zip(BASE_40F, lik)]))


def test_dont_know_changes_nothing_but_is_recorded(tiny) -> None:
    base = start(tiny, 40, "F", [Answer("fever", True)])
    s = update(tiny, base, Answer("onset", None))
    assert_close(posterior(s), normalised([BASE_40F[0] * 0.2, BASE_40F[1] * 0.9, BASE_40F[2] * 0.5]))
    assert [a.code for a in s.answers] == ["fever", "onset"]
    assert s.answered["onset"].unknown


ALL = [Answer("fever", False), Answer("pain", True), Answer("onset", "fast"), Answer("site", ("chest", "throat"))]
ALL_LIK = [
    0.8 * 0.9 * 0.3 * (0.9 * 0.1),
    0.1 * 0.5 * 0.3 * (0.5 * 0.2),
    0.5 * 0.2 * 0.1 * (0.1 * 0.8),
]


def test_several_answers(tiny) -> None:
    s = start(tiny, 40, "F", ALL)
    assert_close(posterior(s), normalised([b * x for b, x in zip(BASE_40F, ALL_LIK)]))
    # The same answers given one by one through update.
    t = start(tiny, 40, "F")
    for a in ALL:
        t = update(tiny, t, a)
    assert_close(posterior(t), normalised([b * x for b, x in zip(BASE_40F, ALL_LIK)]))


def test_order_independence(tiny) -> None:
    ref = normalised([b * x for b, x in zip(BASE_40F, ALL_LIK)])
    for perm in itertools.permutations(ALL):
        assert_close(posterior(start(tiny, 40, "F", list(perm))), ref, tol=1e-12)


def test_replacing_an_answer_equals_a_fresh_start(tiny) -> None:
    s = start(tiny, 40, "F", [Answer("fever", True), Answer("onset", "sudden"), Answer("site", ("chest",))])
    s = update(tiny, s, Answer("fever", False))
    s = update(tiny, s, Answer("site", ("throat",)))
    fresh = start(tiny, 40, "F", [Answer("onset", "sudden"), Answer("fever", False), Answer("site", ("throat",))])
    assert len(s.answers) == 3
    assert s.answered == fresh.answered
    expected = normalised(
        [
            BASE_40F[0] * 0.8 * 0.5 * (0.1 * 0.1),
            BASE_40F[1] * 0.1 * 0.2 * (0.5 * 0.2),
            BASE_40F[2] * 0.5 * 0.1 * (0.9 * 0.8),
        ]
    )
    assert_close(posterior(s), expected)
    assert_close(posterior(fresh), expected)


def test_replacing_with_dont_know_removes_the_evidence(tiny) -> None:
    s = start(tiny, 40, "F", [Answer("fever", True), Answer("pain", True)])
    s = update(tiny, s, Answer("fever", None))
    assert_close(posterior(s), normalised([BASE_40F[0] * 0.9, BASE_40F[1] * 0.5, BASE_40F[2] * 0.2]))
    assert s.answered["fever"].unknown and len(s.answers) == 2


def test_rebuild_equals_fresh_start(tiny) -> None:
    full = start(tiny, 40, "F", ALL)
    part = rebuild(tiny, full, tuple(ALL[:2]))
    assert part.answers == tuple(ALL[:2])
    assert (part.age, part.sex) == (40.0, "F")
    expected = normalised([BASE_40F[0] * 0.8 * 0.9, BASE_40F[1] * 0.1 * 0.5, BASE_40F[2] * 0.5 * 0.2])
    assert_close(posterior(part), expected)
    assert_close(posterior(start(tiny, 40, "F", ALL[:2])), expected)
    # Rebuilding with every answer gives the incremental result back.
    assert_close(posterior(rebuild(tiny, part, tuple(ALL))), list(posterior(full)), tol=1e-12)


def test_states_are_not_mutated(tiny) -> None:
    s0 = start(tiny, 40, "F")
    before = np.array(s0.log_post, copy=True)
    update(tiny, s0, Answer("fever", True))
    rebuild(tiny, s0, (Answer("pain", True),))
    assert s0.answers == ()
    assert np.array_equal(s0.log_post, before)
