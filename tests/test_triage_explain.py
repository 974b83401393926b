"""Triage (red flags first, then posterior mass) and likelihood-ratio explanations on the tiny pack."""

from __future__ import annotations

from math import log

import numpy as np
import pytest
from tinypack import make_tiny_pack

from diagnostician.engine.assess import assess
from diagnostician.engine.explain import explain, log_lr_matrix
from diagnostician.engine.posterior import Answer, posterior, start
from diagnostician.engine.triage import TriagePolicy, fired_red_flags, triage

SELF_CARE_CERTAIN = np.array([1e-9, 1e-9, 1 - 2e-9])  # CA emergency, CB see_doctor, CC self-care


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_pack(tmp_path_factory.mktemp("tiny"))


def flags(tiny, answers) -> list[str]:
    return [r.id for r in fired_red_flags(tiny, start(tiny, 40, "F", answers))]


# ---- red flags -------------------------------------------------------------------------------------


def test_red_flag_overrides_a_self_care_posterior(tiny) -> None:
    calm = start(tiny, 40, "F", [Answer("onset", "fast")])
    r = triage(tiny, calm, SELF_CARE_CERTAIN)
    assert r.level == "self_care" and r.red_flags == ()

    s = start(tiny, 40, "F", [Answer("onset", "sudden")])
    r = triage(tiny, s, SELF_CARE_CERTAIN)
    assert r.level == "emergency"
    assert [f.id for f in r.red_flags] == ["sudden_onset"]
    assert r.advice == "Sudden onset: call your local emergency number now."
    assert r.reasons and "danger sign" in r.reasons[0]


def test_red_flag_fires_with_the_real_posterior_too(tiny) -> None:
    # A child with throat pain and sudden onset: the self-care condition leads, yet the flag rules.
    s = start(tiny, 10, "F", [Answer("pain", True), Answer("site", ("throat",)), Answer("fever", False), Answer("onset", "sudden")])
    p = posterior(s)
    assert int(np.argmax(p)) == 2 and p[0] < 0.05  # the posterior alone would not say emergency
    assert assess(tiny, s).triage.level == "emergency"


@pytest.mark.parametrize(
    "answers, fired",
    [
        ([Answer("fever", True)], []),
        ([Answer("pain", True)], []),
        ([Answer("fever", True), Answer("pain", False)], []),
        ([Answer("fever", True), Answer("pain", None)], []),
        ([Answer("fever", False), Answer("pain", True)], []),
        ([Answer("fever", True), Answer("pain", True)], ["fever_with_pain"]),
        ([Answer("pain", True), Answer("fever", True), Answer("onset", "sudden")], ["sudden_onset", "fever_with_pain"]),
        ([Answer("onset", "fast")], []),
        ([Answer("onset", "gradual")], []),
        ([Answer("onset", None)], []),
    ],
)
def test_red_flag_conditions(tiny, answers, fired) -> None:
    assert flags(tiny, answers) == fired


def test_two_finding_flag_sets_its_own_level_as_a_floor(tiny) -> None:
    one = start(tiny, 40, "F", [Answer("fever", True)])
    assert triage(tiny, one, SELF_CARE_CERTAIN).level == "self_care"
    both = start(tiny, 40, "F", [Answer("fever", True), Answer("pain", True)])
    r = triage(tiny, both, SELF_CARE_CERTAIN)
    assert r.level == "urgent_24h"
    assert r.advice == "Fever with pain: see a doctor within 24 hours."
    # The flag is a floor: a posterior pointing to an emergency still gives emergency.
    r = triage(tiny, both, np.array([0.5, 0.25, 0.25]))
    assert r.level == "emergency"
    assert [f.id for f in r.red_flags] == ["fever_with_pain"]


# ---- posterior-mass thresholds ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "p, level",
    [
        ((0.06, 0.0, 0.94), "emergency"),
        ((0.05, 0.0, 0.95), "emergency"),  # reaching the threshold counts
        ((0.04, 0.0, 0.96), "self_care"),
        ((0.04, 0.02, 0.94), "see_doctor"),  # 0.04 + 0.02 = 0.06 at see_doctor or sooner
        ((0.0, 0.2, 0.8), "see_doctor"),
        ((0.0, 0.04, 0.96), "self_care"),
        ((0.0, 0.0, 1.0), "self_care"),
    ],
)
def test_default_thresholds(tiny, p, level) -> None:
    s = start(tiny, 40, "F")
    r = triage(tiny, s, np.array(p))
    assert r.level == level
    # Mass at each level or more urgent: emergency CA; urgent_24h (none in the pack) CA; see_doctor CA + CB.
    expected_mass = (p[0], p[0], p[0] + p[1], p[0] + p[1] + p[2])
    assert all(abs(a - b) < 1e-12 for a, b in zip(r.mass, expected_mass))


def test_custom_thresholds(tiny) -> None:
    s = start(tiny, 40, "F")
    pol = TriagePolicy(thresholds=(0.5, 0.4, 0.3))
    assert triage(tiny, s, np.array([0.45, 0.0, 0.55]), pol).level == "urgent_24h"  # 0.45 ≥ 0.4
    assert triage(tiny, s, np.array([0.5, 0.0, 0.5]), pol).level == "emergency"
    assert triage(tiny, s, np.array([0.1, 0.25, 0.65]), pol).level == "see_doctor"  # 0.35 ≥ 0.3
    assert triage(tiny, s, np.array([0.1, 0.1, 0.8]), pol).level == "self_care"


# ---- explanations ----------------------------------------------------------------------------------

# Normalised prior (0.2, 0.3, 0.5). LR of an answer a for c: P(a | c) / [Σ_{c'≠c} π_c' P(a | c') / (1 − π_c)].


def lr(lik, c) -> float:
    prior = (0.2, 0.3, 0.5)
    other = sum(prior[k] * lik[k] for k in range(3) if k != c) / (1 - prior[c])
    return lik[c] / other


def test_likelihood_ratio_matrix_by_hand(tiny) -> None:
    answers = [Answer("fever", True), Answer("pain", None), Answer("onset", "sudden"), Answer("site", ("chest",))]
    s = start(tiny, 70, "M", answers)  # demographics do not enter the ratios
    m = log_lr_matrix(tiny, s)
    assert m.shape == (3, 3)  # the don't-know answer is left out
    liks = [
        (0.2, 0.9, 0.5),  # fever yes
        (0.5, 0.2, 0.1),  # onset sudden
        (0.9 * 0.9, 0.5 * 0.8, 0.1 * 0.2),  # site = {chest}: chest present, throat absent
    ]
    for row, lik in enumerate(liks):
        for c in range(3):
            assert abs(float(np.exp(m[row, c])) - lr(lik, c)) < 1e-9, (row, c)
    # Worked example: fever for CA: 0.2 / ((0.3·0.9 + 0.5·0.5) / 0.8) = 0.2 / 0.65.
    assert abs(float(np.exp(m[0, 0])) - 0.2 / 0.65) < 1e-9


def test_explanation_lists_supporting_and_opposing_answers(tiny) -> None:
    answers = [Answer("fever", True), Answer("onset", "sudden"), Answer("site", ("chest",)), Answer("pain", True)]
    s = start(tiny, 40, "F", answers)
    (ex,) = explain(tiny, s, [0], k=3, min_lr=1.5)
    assert ex.condition == "Condition A"
    # For CA: site {chest} 0.81 / (0.13 / 0.8) ≈ 4.98; pain 0.9 / (0.25 / 0.8) = 2.88;
    # onset sudden 0.5 / (0.11 / 0.8) ≈ 3.64; fever 0.2 / 0.65 ≈ 0.31.
    assert [e.code for e in ex.supporting] == ["site", "onset", "pain"]
    assert abs(ex.supporting[0].likelihood_ratio - 0.81 / ((0.3 * 0.4 + 0.5 * 0.02) / 0.8)) < 1e-9
    assert abs(ex.supporting[1].likelihood_ratio - 0.5 / ((0.3 * 0.2 + 0.5 * 0.1) / 0.8)) < 1e-9
    assert abs(ex.supporting[2].likelihood_ratio - 0.9 / ((0.3 * 0.5 + 0.5 * 0.2) / 0.8)) < 1e-9
    assert [e.code for e in ex.opposing] == ["fever"]
    assert abs(ex.opposing[0].likelihood_ratio - 0.2 / 0.65) < 1e-9
    assert "fever" in ex.opposing[0].text.lower() and "yes" in ex.opposing[0].text
    # For CC the picture is reversed: sudden onset 0.1 / ((0.2·0.5 + 0.3·0.2) / 0.5) = 0.3125 opposes.
    (ec,) = explain(tiny, s, [2], k=5, min_lr=1.5)
    opposing = {e.code: e.likelihood_ratio for e in ec.opposing}
    assert abs(opposing["onset"] - 0.1 / ((0.2 * 0.5 + 0.3 * 0.2) / 0.5)) < 1e-9
    assert "fever" not in opposing and "fever" not in {e.code for e in ec.supporting}  # LR 0.806: too weak


def test_weak_answers_are_not_listed(tiny) -> None:
    # Fever for CC: LR = 0.5 / ((0.2·0.2 + 0.3·0.9) / 0.5) = 0.5 / 0.62 ≈ 0.81, within (1/1.5, 1.5).
    s = start(tiny, 40, "F", [Answer("fever", True)])
    (ex,) = explain(tiny, s, [2])
    assert ex.supporting == () and ex.opposing == ()
    assert abs(log_lr_matrix(tiny, s)[0, 2] - log(0.5 / 0.62)) < 1e-9
