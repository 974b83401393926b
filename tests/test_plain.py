"""Plain answers to one question, and questions addressed to whoever answers (the patient or a parent)."""

from __future__ import annotations

import pytest

from diagnostician.dialogue.plain import is_why, understand_answer
from diagnostician.dialogue.render import Audience, patient_question, plain_reason
from diagnostician.engine import next_question, start
from diagnostician.errors import InvalidAnswerError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", True), ("Yeah, I do", True), ("yep", True), ("a little", True), ("I think so", True),
        ("no", False), ("nope", False), ("not really", False), ("I don't think so", False), ("never", False),
        ("not sure", None), ("I don't know", None), ("no idea", None), ("?", None),
        ("I do have a cough", True), ("no cough at all", False),  # the finding itself, said with its polarity
    ],
)
def test_yes_no_in_many_phrasings(pack, text: str, value: object) -> None:
    assert understand_answer(pack, pack.finding("E_201"), text) == value


def test_unreadable_yes_no_is_asked_again(pack) -> None:
    with pytest.raises(InvalidAnswerError, match="yes, no or don't know"):
        understand_answer(pack, pack.finding("E_201"), "purple monkey dishwasher")


def test_scales_take_numbers_and_words(pack) -> None:
    f = pack.finding("E_56")  # pain intensity 0-10
    assert understand_answer(pack, f, "7") == "7"
    assert understand_answer(pack, f, "about a 6") == "6"
    assert understand_answer(pack, f, "8/10") == "8"
    assert understand_answer(pack, f, "not sure") is None
    worst = understand_answer(pack, f, "unbearable, the worst pain of my life")
    mild = understand_answer(pack, f, "mild")
    assert int(worst) >= 8 and int(mild) <= 4  # type: ignore[arg-type]
    with pytest.raises(InvalidAnswerError):
        understand_answer(pack, f, "42")


def test_sites_in_words_with_their_side(pack) -> None:
    f = pack.finding("E_55")
    left_chest = understand_answer(pack, f, "the left side of my chest")
    assert [f.label_of(v) for v in left_chest] == ["side of the chest(L)"]  # type: ignore[union-attr]
    several = understand_answer(pack, f, "my lower back and my right knee")
    assert {f.label_of(v) for v in several} >= {"knee(R)"} and len(several) == 2  # type: ignore[arg-type]
    with pytest.raises(InvalidAnswerError, match="which side"):
        understand_answer(pack, f, "my knee")
    assert understand_answer(pack, f, "nowhere") == (f.default,)
    assert understand_answer(pack, f, "1, 3") == tuple(sorted((f.values[0], f.values[2])))  # menu numbers still work


def test_why_is_recognised() -> None:
    assert is_why("why?") and is_why("Why do you ask?") and is_why("why is that important")
    assert not is_why("why not, yes")


def test_questions_to_a_parent(pack) -> None:
    f = pack.finding("E_91")
    assert patient_question(f) == f.question
    assert patient_question(f, Audience(True, "son", "M")).startswith("Does your son have a fever")
    assert patient_question(pack.finding("E_82"), Audience(True, "daughter", "F")) == (
        "Does your daughter feel lightheaded and dizzy or does she feel like she is about to faint?"
    )
    assert patient_question(pack.finding("E_82"), Audience(True, None, None)).startswith("Does your child feel")
    assert "do they feel" in patient_question(pack.finding("E_82"), Audience(True, None, None))


def test_plain_reason_names_the_conditions(pack) -> None:
    state = start(pack, 40, "F", [])
    from diagnostician.engine.posterior import Answer, update

    state = update(pack, state, Answer("E_201", True))
    q = next_question(pack, state)
    text = plain_reason(pack, q)  # type: ignore[arg-type]
    assert text.startswith("I ask") and q.separates[0][0] in text  # type: ignore[union-attr]
