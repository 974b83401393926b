"""Question choice on the tiny pack: information gain and safety term against hand computation, parents, stopping."""

from __future__ import annotations

from math import log

import numpy as np
import pytest
from tinypack import FEVER, ONSET, P_AGE, P_SEX, PAIN, PRIOR, SITE, make_tiny_pack, tiny_pack_data, write_pack_files

from diagnostician.engine.inquiry import InquiryPolicy, askable, dangerous, next_question, scores, should_stop
from diagnostician.engine.posterior import Answer, start
from diagnostician.knowledge.schema import load_pack_dir

TOL = 1e-9
FINDINGS = ("fever", "pain", "onset", "site")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_pack(tmp_path_factory.mktemp("tiny"))


# ---- plain-Python reference formulas ---------------------------------------------------------------


def H(dist) -> float:
    """Entropy in nats of a discrete distribution."""
    return -sum(x * log(x) for x in dist if x > 0)


def bern(t: float) -> tuple[float, float]:
    return (t, 1 - t)


def mix(p, rows):
    """Σ_c p_c · rows[c] for rows of equal length."""
    return [sum(p[c] * rows[c][k] for c in range(len(p))) for k in range(len(rows[0]))]


def mutual_info(p, rows) -> float:
    """I(C; A) = H(A) − Σ_c p_c H(A | c), rows[c] = distribution of A given c."""
    return H(mix(p, rows)) - sum(p[c] * H(rows[c]) for c in range(len(p)))


def safety_info(p, rows, danger) -> float:
    """I(D; A) = H(A) − P(D) H(A | D) − P(not D) H(A | not D)."""
    p_d = sum(p[c] for c in range(len(p)) if danger[c])
    a_d = [sum(p[c] * rows[c][k] for c in range(len(p)) if danger[c]) / p_d for k in range(len(rows[0]))]
    a_n = [sum(p[c] * rows[c][k] for c in range(len(p)) if not danger[c]) / (1 - p_d) for k in range(len(rows[0]))]
    return H(mix(p, rows)) - p_d * H(a_d) - (1 - p_d) * H(a_n)


def binary_rows(t):
    return [bern(x) for x in t]


def onset_rows():
    return [(ONSET["gradual"][c], ONSET["fast"][c], ONSET["sudden"][c]) for c in range(3)]


def hand_ig(p, code, site=SITE) -> float:
    """IG per the module docstring: exact for binary/categorical, min(Σ_v I(C;A_v), H(C)) for multi."""
    if code == "fever":
        return mutual_info(p, binary_rows(FEVER))
    if code == "pain":
        return mutual_info(p, binary_rows(PAIN))
    if code == "onset":
        return mutual_info(p, onset_rows())
    return min(sum(mutual_info(p, binary_rows(t)) for t in site.values()), H(p))


def hand_safety(p, code, danger) -> float:
    if code == "fever":
        return safety_info(p, binary_rows(FEVER), danger)
    if code == "pain":
        return safety_info(p, binary_rows(PAIN), danger)
    if code == "onset":
        return safety_info(p, onset_rows(), danger)
    p_d = sum(p[c] for c in range(3) if danger[c])
    total = sum(safety_info(p, binary_rows(t), danger) for t in SITE.values())
    return min(max(total, 0.0), H((p_d, 1 - p_d)))


def hand_posterior(band: int, sex: int, lik=(1.0, 1.0, 1.0)):
    w = [PRIOR[c] * P_AGE[c][band] * P_SEX[c][sex] * lik[c] for c in range(3)]
    return [x / sum(w) for x in w]


P_SPREAD = (0.25, 0.35, 0.4)
P_SKEWED = (0.7, 0.2, 0.1)


# ---- information gain ------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [P_SPREAD, P_SKEWED, (1 / 3, 1 / 3, 1 / 3)])
@pytest.mark.parametrize("code", ["fever", "pain", "onset"])
def test_ig_binary_and_categorical_exact(tiny, p, code) -> None:
    ig, _, _ = scores(tiny, np.array(p), np.array([True, False, False]))
    assert abs(ig[tiny.finding_index[code]] - hand_ig(p, code)) < TOL


def test_ig_fever_worked_example(tiny) -> None:
    # p = (0.25, 0.35, 0.4), P(fever | c) = 0.2, 0.9, 0.5 → P(fever) = 0.05 + 0.315 + 0.2 = 0.565.
    a = 0.565
    h_a = -(a * log(a) + (1 - a) * log(1 - a))
    h_given = (
        0.25 * -(0.2 * log(0.2) + 0.8 * log(0.8))
        + 0.35 * -(0.9 * log(0.9) + 0.1 * log(0.1))
        + 0.4 * -(0.5 * log(0.5) + 0.5 * log(0.5))
    )
    ig, _, _ = scores(tiny, np.array(P_SPREAD), np.array([True, False, False]))
    assert abs(ig[0] - (h_a - h_given)) < TOL


@pytest.mark.parametrize("p", [P_SPREAD, P_SKEWED])
def test_ig_multi_choice_is_sum_of_value_gains_when_below_entropy(tiny, p) -> None:
    per_value = sum(mutual_info(p, binary_rows(t)) for t in SITE.values())
    assert per_value < H(p)  # the cap does not bind here
    ig, _, _ = scores(tiny, np.array(p), np.array([True, False, False]))
    assert abs(ig[tiny.finding_index["site"]] - per_value) < TOL


def test_ig_multi_choice_capped_at_posterior_entropy(tmp_path) -> None:
    meta, tables = tiny_pack_data()
    sharp = {"chest": (0.999, 0.5, 0.001), "throat": (0.001, 0.5, 0.999)}
    for row in range(3):
        tables["p"][row][5] = sharp["chest"][row]
        tables["p"][row][6] = sharp["throat"][row]
    pk = load_pack_dir(write_pack_files(tmp_path / "sharp", meta, tables))
    p = (0.49, 0.02, 0.49)
    per_value = sum(mutual_info(p, binary_rows(t)) for t in sharp.values())
    assert per_value > H(p) + 0.1  # the cap binds here
    ig, _, _ = scores(pk, np.array(p), np.array([True, False, False]))
    assert abs(ig[pk.finding_index["site"]] - H(p)) < TOL


# ---- safety term -----------------------------------------------------------------------------------


def test_dangerous_set_follows_triage_rank(tiny) -> None:
    assert dangerous(tiny, InquiryPolicy()).tolist() == [True, False, False]  # CA emergency only
    assert dangerous(tiny, InquiryPolicy(danger_rank=2)).tolist() == [True, True, False]  # + see_doctor
    assert dangerous(tiny, InquiryPolicy(danger_rank=0)).tolist() == [True, False, False]


@pytest.mark.parametrize("danger", [(True, False, False), (True, True, False), (False, True, True)])
@pytest.mark.parametrize("p", [P_SPREAD, P_SKEWED])
@pytest.mark.parametrize("code", FINDINGS)
def test_safety_term_by_hand(tiny, p, danger, code) -> None:
    _, safety, _ = scores(tiny, np.array(p), np.array(danger))
    assert abs(safety[tiny.finding_index[code]] - hand_safety(p, code, danger)) < TOL


def test_safety_worked_example_binary(tiny) -> None:
    # D = {CA}, p = (0.25, 0.35, 0.4): P(D) = 0.25; P(fever | D) = 0.2;
    # P(fever | not D) = (0.35·0.9 + 0.4·0.5) / 0.75 = 0.515 / 0.75; P(fever) = 0.565.
    def hb(t):
        return -(t * log(t) + (1 - t) * log(1 - t))

    expected = hb(0.565) - 0.25 * hb(0.2) - 0.75 * hb(0.515 / 0.75)
    _, safety, _ = scores(tiny, np.array(P_SPREAD), np.array([True, False, False]))
    assert abs(safety[0] - expected) < TOL


def test_no_safety_term_when_danger_is_settled(tiny) -> None:
    _, safety, _ = scores(tiny, np.array(P_SPREAD), np.array([False, False, False]))
    assert np.all(safety == 0)
    _, safety, _ = scores(tiny, np.array(P_SPREAD), np.array([True, True, True]))
    assert np.all(safety == 0)


# ---- choice of the next question -------------------------------------------------------------------


def test_next_question_is_the_argmax_of_ig_plus_safety(tiny) -> None:
    # 40-year-old woman (band 1, F) who reported pain: P(pain | c) = 0.9, 0.5, 0.2.
    state = start(tiny, 40, "F", [Answer("pain", True)])
    p = hand_posterior(1, 0, PAIN)
    danger = (True, False, False)
    candidates = {code: hand_ig(p, code) + hand_safety(p, code, danger) for code in ("fever", "onset", "site")}
    best = max(candidates, key=candidates.get)
    q = next_question(tiny, state, InquiryPolicy())
    assert q is not None and q.phase == "diagnostic"
    assert q.code == best
    assert abs(q.expected_gain - hand_ig(p, best)) < TOL
    assert abs(q.safety_gain - hand_safety(p, best, danger)) < TOL


def test_safety_weight_enters_the_score(tiny) -> None:
    # 10-year-old girl with throat pain: fever carries more IG, onset more safety information, so
    # the argmax of IG + w · safety moves from fever to onset as the safety weight grows.
    state = start(tiny, 10, "F", [Answer("pain", True), Answer("site", ("throat",))])
    lik = [PAIN[c] * (1 - SITE["chest"][c]) * SITE["throat"][c] for c in range(3)]
    p = hand_posterior(0, 0, lik)
    danger = (True, False, False)
    chosen = []
    for w in (0.0, 1.0, 50.0):
        candidates = {code: hand_ig(p, code) + w * hand_safety(p, code, danger) for code in ("fever", "onset")}
        best = max(candidates, key=candidates.get)
        q = next_question(tiny, state, InquiryPolicy(safety_weight=w, confidence=1.1, review=False))
        assert q is not None and q.code == best, (w, candidates, q)
        chosen.append(q.code)
    assert chosen[0] == "fever" and chosen[-1] == "onset"


def test_child_finding_waits_for_its_parent(tiny) -> None:
    state = start(tiny, 40, "F")
    p = hand_posterior(1, 0)
    danger = (True, False, False)
    total = {code: hand_ig(p, code) + hand_safety(p, code, danger) for code in FINDINGS}
    assert max(total, key=total.get) == "site"  # the child would win if it could be asked
    assert askable(tiny, state).tolist() == [True, True, True, False]
    q = next_question(tiny, state, InquiryPolicy())
    assert q is not None and q.code != "site"
    assert q.code == max(("fever", "pain", "onset"), key=total.get)

    for pain in (False, None):  # 'no' and 'don't know' keep the child closed
        s = start(tiny, 40, "F", [Answer("pain", pain)])
        assert not askable(tiny, s)[tiny.finding_index["site"]]
        s = start(tiny, 40, "F", [Answer("pain", pain), Answer("fever", True), Answer("onset", "fast")])
        assert next_question(tiny, s, InquiryPolicy(confidence=1.1)) is None

    s = start(tiny, 40, "F", [Answer("pain", True), Answer("fever", True), Answer("onset", "fast")])
    assert askable(tiny, s).tolist() == [False, False, False, True]
    q = next_question(tiny, s, InquiryPolicy(confidence=1.1))
    assert q is not None and q.code == "site"


def test_answered_findings_are_not_asked_again(tiny) -> None:
    s = start(tiny, 40, "F", [Answer("fever", None), Answer("onset", "gradual")])
    assert askable(tiny, s).tolist() == [False, True, False, False]
    q = next_question(tiny, s, InquiryPolicy(confidence=1.1))
    assert q is not None and q.code == "pain"


# ---- stopping rule ---------------------------------------------------------------------------------

# A 10-year-old girl (band 0, F) without fever, gradual onset: hand posterior about (0.020, 0.035, 0.944).
STOP_ANSWERS = [Answer("fever", False), Answer("onset", "gradual")]
STOP_LIK = [(1 - FEVER[c]) * ONSET["gradual"][c] for c in range(3)]


def test_budget_reached_returns_none(tiny) -> None:
    s = start(tiny, 40, "F", [Answer("pain", True), Answer("fever", True)])
    pol = InquiryPolicy(max_questions=2, confidence=1.1)
    assert next_question(tiny, s, pol) is None
    d = should_stop(tiny, s, pol)
    assert d.stop and "budget" in d.reason
    # One answer fewer: the budget is not reached and a question comes.
    s1 = start(tiny, 40, "F", [Answer("pain", True)])
    assert next_question(tiny, s1, pol) is not None
    assert not should_stop(tiny, s1, pol).stop
    # The explicit max_questions argument overrides the policy's budget downwards.
    assert next_question(tiny, s1, InquiryPolicy(confidence=1.1), max_questions=1) is None


def test_max_questions_argument_can_raise_the_budget(tiny) -> None:
    # next_question(..., max_questions=budget) is how a consultation counts findings given up front
    # outside the policy's budget: 2 answers, budget 4 → the diagnostic phase goes on.
    s = start(tiny, 40, "F", [Answer("pain", True), Answer("fever", True)])
    pol = InquiryPolicy(max_questions=2, confidence=1.1, review=False)
    q = next_question(tiny, s, pol, max_questions=4)
    assert q is not None and q.phase == "diagnostic"


def test_confident_without_dangerous_rival_stops_diagnostic_phase(tiny) -> None:
    s = start(tiny, 10, "F", STOP_ANSWERS)
    p = hand_posterior(0, 0, STOP_LIK)
    assert p[2] > 0.9 and 0.01 < p[0] < 0.05  # preconditions of the scenario
    pol = InquiryPolicy(confidence=0.9, danger_threshold=0.05, review=False)
    d = should_stop(tiny, s, pol)
    assert d.stop and "confident" in d.reason
    assert next_question(tiny, s, pol) is None
    # With review on, the remaining question comes in the review phase (P(pain) ≈ 0.22 ≥ 0.15).
    q = next_question(tiny, s, InquiryPolicy(confidence=0.9, danger_threshold=0.05, review=True))
    assert q is not None and q.phase == "review" and q.code == "pain"
    assert abs(q.p_present - sum(p[c] * PAIN[c] for c in range(3))) < TOL


def test_dangerous_rival_keeps_the_inquiry_going(tiny) -> None:
    s = start(tiny, 10, "F", STOP_ANSWERS)
    p = hand_posterior(0, 0, STOP_LIK)
    pol = InquiryPolicy(confidence=0.9, danger_threshold=0.01, review=False)  # CA ≈ 0.02 ≥ 0.01
    assert p[2] >= pol.confidence and p[0] >= pol.danger_threshold
    assert not should_stop(tiny, s, pol).stop
    q = next_question(tiny, s, pol)
    assert q is not None and q.phase == "diagnostic" and q.code == "pain"


def test_not_confident_keeps_asking(tiny) -> None:
    s = start(tiny, 10, "F", STOP_ANSWERS)
    pol = InquiryPolicy(confidence=0.99, danger_threshold=0.05, review=False)
    assert not should_stop(tiny, s, pol).stop
    q = next_question(tiny, s, pol)
    assert q is not None and q.phase == "diagnostic"


def test_low_gain_ends_diagnostic_phase(tiny) -> None:
    s = start(tiny, 10, "F", STOP_ANSWERS)
    p = hand_posterior(0, 0, STOP_LIK)
    danger = (True, False, False)
    score = hand_ig(p, "pain") + hand_safety(p, "pain", danger)
    assert next_question(tiny, s, InquiryPolicy(confidence=1.1, min_gain=score * 0.99, review=False)) is not None
    assert next_question(tiny, s, InquiryPolicy(confidence=1.1, min_gain=score * 1.01, review=False)) is None
