"""Structured answers typed by a person (yes/no, a value, several values) turned into engine answers."""

from __future__ import annotations

import re

from diagnostician.dialogue.render import answer_menu
from diagnostician.engine.posterior import Answer, AnswerValue
from diagnostician.errors import InvalidAnswerError
from diagnostician.knowledge.schema import BINARY, CATEGORICAL, Finding

YES = {"y", "yes", "yeah", "yep", "true", "1", "oui", "present", "si"}
NO = {"n", "no", "nope", "false", "0", "non", "absent", "none"}
UNKNOWN = {"?", "dk", "don't know", "dont know", "unknown", "not sure", "idk", "skip"}


def is_number(text: str) -> bool:
    """Whether text is a menu-sized whole number: ASCII digits only ('²' passes isdigit but int() refuses it), at most 6."""
    return text.isascii() and text.isdigit() and len(text) <= 6  # int() refuses over 4300 digits; no menu is that long


def _match_value(f: Finding, token: str) -> str:
    t = token.strip().lower()
    for code, label in zip(f.values, f.labels):
        if t == code.lower() or t == label.lower():
            return code
    if is_number(t) and 1 <= int(t) <= len(f.values) and not all(v.isdigit() for v in f.values):
        return f.values[int(t) - 1]  # a menu number
    starts = [code for code, label in zip(f.values, f.labels) if label.lower().startswith(t)]
    if len(starts) == 1:
        return starts[0]
    inside = starts or [code for code, label in zip(f.values, f.labels) if t and t in label.lower()]
    if len(inside) == 1:
        return inside[0]
    if len(inside) > 1:
        labels = [f.label_of(code) for code in inside]
        raise InvalidAnswerError(f"{token.strip()!r} could be any of: {', '.join(labels[:12])}{'…' if len(labels) > 12 else ''}; please be more specific")
    raise InvalidAnswerError(f"{token.strip()!r} is not an answer to '{f.question}' (try one of: {', '.join(f.labels[:8])}{'…' if len(f.labels) > 8 else ''})")


def parse_answer(f: Finding, text: str) -> AnswerValue:
    """The engine value for a typed answer: yes/no, a value code, label or menu number, comma-separated values, or '?'."""
    t = text.strip().lower()
    if t in UNKNOWN:
        return None
    if f.kind == BINARY:
        if t in YES:
            return True
        if t in NO:
            return False
        raise InvalidAnswerError(f"please answer yes, no or ? (don't know); got {text.strip()!r}")
    if f.kind == CATEGORICAL:
        return _match_value(f, t)
    if t in NO and f.default is not None:
        return (f.default,)
    parts = [p for p in re.split(r"[,;]", text) if p.strip()]
    if not parts:
        raise InvalidAnswerError("give at least one value, separated by commas")
    return tuple(sorted({_match_value(f, p) for p in parts}))


def parse_menu_answer(f: Finding, text: str) -> AnswerValue:
    """Like parse_answer, also reading one number of the menu `render.answer_menu` shows (2 = no, last = don't know)."""
    t = text.strip()
    menu = answer_menu(f)
    # Only a lone number is a menu pick; lists ("1, 3") are value numbers, which parse_answer reads.
    if is_number(t) and menu and 1 <= int(t) <= len(menu):
        n = int(t)
        if f.kind == BINARY or n == len(menu):
            return menu[n - 1][2]
    return parse_answer(f, text)


def as_answer(f: Finding, value: object) -> Answer:
    """An Answer from a typed string or an already structured value."""
    if isinstance(value, str):
        return Answer(f.code, parse_answer(f, value))
    if f.kind == BINARY and isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        value = bool(value)
    if isinstance(value, list):
        value = tuple(str(v) for v in value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and f.kind == CATEGORICAL:
        value = str(int(value)) if float(value).is_integer() else str(value)
    return Answer(f.code, value)  # type: ignore[arg-type]
