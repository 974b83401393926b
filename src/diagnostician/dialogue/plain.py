"""Plain-language answers to one question: "yeah, a bit", "not really", "about a 6", "the left side of my chest"."""

from __future__ import annotations

import re

from diagnostician.dialogue.answers import parse_answer, parse_menu_answer
from diagnostician.dialogue.mentions import ABSENT, PRESENT, Reading
from diagnostician.dialogue.nlu import MAX_CHARS, check_text, language, normalise, reader_for, tokenize
from diagnostician.dialogue.render import is_scale
from diagnostician.engine.posterior import AnswerValue
from diagnostician.errors import InputError, InvalidAnswerError
from diagnostician.knowledge.schema import BINARY, CATEGORICAL, Finding, Pack

_SCORE = re.compile(r"(?<![\d.])(\d{1,2})(?:\s*(?:/|out of|outta)\s*10)?(?![\d.])")


def _phrase_words(text: str) -> tuple[str, ...]:
    return tuple(t.raw.replace("'", "") for t in tokenize(normalise(text)) if t.is_word or t.raw == "?")


def _leading(text: str) -> str | None:
    """'yes', 'no' or 'unknown' from how an answer begins, the longest matching phrase winning."""
    words = _phrase_words(text)
    if not words:
        return None
    best: tuple[int, str] | None = None
    for kind, phrases in language("en")["answers"].items():
        for p in phrases:
            pw = _phrase_words(p)
            if pw and words[: len(pw)] == pw and (best is None or len(pw) > best[0]):
                best = (len(pw), kind)
    return None if best is None else best[1]


def is_why(text: str) -> bool:
    """Whether the reply asks why the question is asked."""
    t = " ".join(_phrase_words(text)).rstrip("?").strip()
    return t in {" ".join(_phrase_words(w)).rstrip("?").strip() for w in language("en")["why"]}


def understand_answer(pack: Pack, f: Finding, text: str) -> AnswerValue:
    """The engine value of a plain reply to the question of `f` (InvalidAnswerError when it cannot be read)."""
    check_text(text, MAX_CHARS)
    try:
        return parse_menu_answer(f, text)  # exact forms first: yes/no/?, numbers, labels, menu numbers
    except InputError:
        pass
    if f.kind == BINARY:
        return _binary(pack, f, text)
    if is_scale(f):
        return _scale(pack, f, text)
    lead = _leading(text)
    if lead == "unknown":
        return None
    if lead == "no" and f.default is not None and len(_phrase_words(text)) <= 4:
        return (f.default,) if f.kind != CATEGORICAL else f.default
    return _values(pack, f, text)


def _binary(pack: Pack, f: Finding, text: str) -> AnswerValue:
    reading = reader_for(pack).read(text)
    own = [m for m in reading.mentions if m.code == f.code]
    if own:
        return {PRESENT: True, ABSENT: False}.get(own[0].polarity)
    lead = _leading(text)
    if lead is not None:
        return {"yes": True, "no": False, "unknown": None}[lead]
    raise InvalidAnswerError("please answer yes, no or don't know (in your own words is fine)")


def _scale(pack: Pack, f: Finding, text: str) -> AnswerValue:
    lo, hi = int(f.values[0]), int(f.values[-1])
    m = _SCORE.search(normalise(text))
    if m and lo <= int(m.group(1)) <= hi:
        return m.group(1)
    if _leading(text) == "unknown":
        return None
    lex = reader_for(pack).lexicon.scales.get(f.code)
    if lex is not None:
        words = _phrase_words(text)
        joined = " " + " ".join(words) + " "
        hits = [(len(t), ts.value) for ts in lex.sets for t in ts.terms if f" {' '.join(_phrase_words(t))} " in joined]
        if hits:
            return max(hits)[1]
    raise InvalidAnswerError(f"please give a number from {lo} to {hi} (or say mild, moderate, severe), or don't know")


def _values(pack: Pack, f: Finding, text: str) -> AnswerValue:
    """List answers in words: body sites with their side, pain characters, regions — read with the pack lexicon."""
    reader = reader_for(pack)
    # The question itself is the cue: prefix one of the finding's cue words so the reader ties the values to it.
    cues = reader.lexicon.values.get(f.code)
    if cues is None:
        return parse_answer(f, text)
    cue = cues.cues[0] if cues.cues else ""
    reading: Reading = reader.read(f"{cue} {text}" if cue else text)
    found = [m for m in reading.mentions if m.code == f.code and m.value not in (None, ())]
    if not found:
        raise InvalidAnswerError(f"I could not match that to an answer for: {f.question} (try: {', '.join(f.labels[1:6])}…)")
    values: set[str] = set()
    for m in found:
        if m.confidence < 0.6 and isinstance(m.value, tuple) and len(m.value) == 2:
            labels = " or ".join(f.label_of(v) for v in m.value)
            raise InvalidAnswerError(f"which side: {labels}? (say left, right or both)")
        values |= set(m.value) if isinstance(m.value, tuple) else {m.value}
    if f.kind == CATEGORICAL:
        if len(values) > 1:
            raise InvalidAnswerError("please give one answer: " + ", ".join(sorted(f.label_of(v) for v in values)))
        return values.pop()
    return tuple(sorted(values))
