"""The stateful consultation on the shipped DDXPlus pack: pending question, undo, save/restore, bad answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diagnostician.consult import Consultation
from diagnostician.engine import InquiryPolicy, posterior
from diagnostician.errors import InputError, InvalidAnswerError, SessionError, UnknownFindingError
from diagnostician.knowledge.schema import Finding

START = {"E_53": True, "E_91": True}  # pain, fever


def good_value(f: Finding) -> object:
    """A valid answer whatever the finding's kind: 'no', the default value, or the first non-default value."""
    if f.kind == "binary":
        return False
    if f.kind == "categorical":
        return f.default if f.default is not None else f.values[0]
    return [next(v for v in f.values if v != f.default)]


def bad_values(f: Finding) -> list[object]:
    """Answers that do not fit the finding."""
    if f.kind == "binary":
        return ["maybe", 7]
    if f.kind == "categorical":
        return ["certainly-not-a-value", "V_no_such_value"]
    return [["V_no_such_value"], [f.values[0], "V_no_such_value"]]


def run(c: Consultation, n: int) -> list[str]:
    """Answer the next n questions with valid values; return their codes."""
    asked = []
    for _ in range(n):
        q = c.next_question()
        assert q is not None
        c.answer(q.code, good_value(c.pack.finding(q.code)))
        asked.append(q.code)
    return asked


@pytest.fixture
def consult(pack) -> Consultation:
    return Consultation.begin(45, "F", START, pack=pack)


def test_begin_counts_findings_given_up_front(consult) -> None:
    assert consult.initial == 2 and consult.questions_asked == 0
    assert [a.code for a in consult.state.answers] == ["E_53", "E_91"]


def test_answer_must_match_the_pending_question(consult) -> None:
    with pytest.raises(SessionError):
        consult.answer("E_91", True)  # nothing asked yet
    q = consult.next_question()
    assert q is not None
    other = next(f for f in consult.pack.findings if f.code != q.code and f.code not in START)
    state = consult.state
    with pytest.raises(SessionError):
        consult.answer(other.code, good_value(other))
    assert consult.state is state
    assert consult.pending is not None and consult.pending.code == q.code
    assert consult.next_question() == q  # the same question until it is answered


def test_undo_restores_the_previous_posterior_exactly(consult) -> None:
    run(consult, 3)
    before_state = consult.state
    before = posterior(consult.state).copy()
    q = consult.next_question()
    assert q is not None
    consult.answer(q.code, good_value(consult.pack.finding(q.code)))
    assert not np.array_equal(posterior(consult.state), before)
    undone = consult.undo()
    assert undone.code == q.code
    assert consult.state.answers == before_state.answers
    assert np.array_equal(posterior(consult.state), before)
    assert consult.questions_asked == 3
    q2 = consult.next_question()
    assert q2 is not None and q2.code == q.code  # the same question comes back


def test_undo_everything_then_nothing_left(consult) -> None:
    start_post = posterior(consult.state).copy()
    run(consult, 2)
    consult.undo()
    consult.undo()
    assert consult.questions_asked == 0
    assert np.array_equal(posterior(consult.state), start_post)
    with pytest.raises(SessionError):
        consult.undo()  # answers given up front cannot be undone
    assert consult.questions_asked == 0


def test_undo_on_a_fresh_consultation_raises(pack) -> None:
    with pytest.raises(SessionError):
        Consultation.begin(30, "M", pack=pack).undo()
    with pytest.raises(SessionError):
        Consultation.begin(30, "M", START, pack=pack).undo()


def test_save_and_restore_round_trip(consult) -> None:
    run(consult, 3)
    answered = {a.code for a in consult.state.answers}
    free = {k: [f for f in consult.pack.findings if f.kind == k and f.code not in answered] for k in ("binary", "categorical", "multi")}
    multi, cat, binary = free["multi"][0], free["categorical"][0], free["binary"][0]
    consult.volunteer(multi.code, [v for v in multi.values if v != multi.default][:2])
    consult.volunteer(cat.code, cat.values[-1])
    consult.volunteer(binary.code, None)  # don't know
    saved = json.loads(json.dumps(consult.to_dict()))
    back = Consultation.from_dict(saved, pack=consult.pack)
    assert back.state.answers == consult.state.answers
    assert (back.state.age, back.state.sex, back.initial) == (consult.state.age, consult.state.sex, consult.initial)
    assert back.questions_asked == consult.questions_asked
    assert back.policy.max_questions == consult.policy.max_questions
    np.testing.assert_allclose(posterior(back.state), posterior(consult.state), rtol=0, atol=1e-12)
    q1, q2 = consult.next_question(), back.next_question()
    assert q1 is not None and q2 is not None and q1.code == q2.code


def test_restore_rejects_what_is_not_a_saved_consultation(pack) -> None:
    with pytest.raises(InputError):
        Consultation.from_dict({"format": "something-else"}, pack=pack)
    with pytest.raises(InputError):
        Consultation.from_dict(["not", "a", "mapping"], pack=pack)  # type: ignore[arg-type]
    good = Consultation.begin(45, "F", START, pack=pack).to_dict()
    for key in ("age", "answers", "initial"):
        broken = dict(good)
        del broken[key]
        with pytest.raises(InputError):
            Consultation.from_dict(broken, pack=pack)
    with pytest.raises(InputError):
        Consultation.from_dict({**good, "age": 300}, pack=pack)
    with pytest.raises(UnknownFindingError):
        Consultation.from_dict({**good, "answers": [{"code": "E_NOPE", "value": True}]}, pack=pack)


def test_bad_answer_to_the_pending_question_leaves_state_unchanged(consult) -> None:
    kinds = set()
    for _ in range(12):  # walk through several questions, trying bad answers on each
        q = consult.next_question()
        assert q is not None
        f = consult.pack.finding(q.code)
        kinds.add(f.kind)
        state, post = consult.state, posterior(consult.state).copy()
        for bad in bad_values(f):
            with pytest.raises(InvalidAnswerError):
                consult.answer(q.code, bad)
            assert consult.state is state
            assert np.array_equal(posterior(consult.state), post)
            assert consult.pending == q
        consult.answer(q.code, good_value(f))
    assert kinds == {"binary", "categorical", "multi"}  # every kind was exercised


def test_bad_volunteered_answers(consult) -> None:
    state = consult.state
    with pytest.raises(UnknownFindingError):
        consult.volunteer("E_NOPE", True)
    for value in ("11", 11, -1, "ten", ["3", "4"]):  # E_59 is a 0..10 scale
        with pytest.raises(InvalidAnswerError):
            consult.volunteer("E_59", value)
    with pytest.raises(InvalidAnswerError):
        consult.volunteer("E_55", ["V_14", "V_no_such_value"])
    with pytest.raises(InvalidAnswerError):
        consult.volunteer("E_129", "perhaps")
    assert consult.state is state
    with pytest.raises(SessionError):
        consult.volunteer("E_91", False)  # already answered: undo first
    assert consult.state is state


def test_findings_given_up_front_do_not_use_the_question_budget(pack) -> None:
    # Three findings given up front, a budget of three questions: the diagnostic inquiry must still
    # ask its three questions (the budget counts questions asked, not findings given up front).
    findings = {"E_53": True, "E_91": True, "E_201": True}
    ref = Consultation.begin(35, "M", findings, pack=pack, policy=InquiryPolicy(review=False))
    q = ref.next_question()
    assert q is not None and q.phase == "diagnostic"  # precondition: there is something to ask

    c = Consultation.begin(35, "M", findings, pack=pack, policy=InquiryPolicy(max_questions=3, review=False))
    q = c.next_question()
    assert q is not None and q.phase == "diagnostic", c.stop_reason
    assert q.code == ref.pending.code
    c.answer(q.code, good_value(pack.finding(q.code)))
    run(c, 2)
    assert c.questions_asked == 3
    assert c.next_question() is None
    assert "budget of 3" in c.stop_reason
