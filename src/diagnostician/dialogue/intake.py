"""The intake before the questions: age, sex and the main complaint, shared by the terminal and the chat."""

from __future__ import annotations

import re
from dataclasses import dataclass

from diagnostician.dialogue.answers import is_number
from diagnostician.engine.posterior import check_age, normalise_sex
from diagnostician.errors import InputError
from diagnostician.knowledge.schema import BINARY, Pack

COMPLAINT_PROMPT = "What brings you here today?"
NO_MATCH = "Nothing matched; try another word or pick a number."
SEARCH_LIMIT = 15

_AGE = re.compile(r"^(\d+(?:[.,]\d+)?)\s*(years?( old)?|yrs?|y|yo|months?( old)?|mo)?\.?$")


def common_complaints(pack: Pack) -> list[str]:
    """Finding codes offered as the main complaint: the pack's common complaints, else its first symptoms."""
    common = [c for c in pack.meta.get("common_complaints", []) if c in pack.finding_index]
    return common or [f.code for f in pack.findings if not f.antecedent and f.kind == BINARY][:12]


def search_complaints(pack: Pack, text: str, limit: int = SEARCH_LIMIT) -> list[str]:
    """Yes/no symptom findings whose question contains `text` (case-insensitive), at most `limit`."""
    t = text.strip().lower()
    if not t:
        return []
    return [f.code for f in pack.findings if f.kind == BINARY and not f.antecedent and t in f.question.lower()][:limit]


@dataclass(frozen=True)
class ComplaintPick:
    """What a reply to the complaint menu chose: a finding code, or a new menu of matching ones."""

    code: str | None = None
    matches: tuple[str, ...] = ()


def pick_complaint(pack: Pack, menu: list[str], text: str) -> ComplaintPick:
    """Read a reply to the complaint menu: a menu number, a yes/no finding code, or a word to search (InputError if nothing matched)."""
    t = text.strip()
    if is_number(t) and 1 <= int(t) <= len(menu):
        return ComplaintPick(code=menu[int(t) - 1])
    # Only yes/no findings can be "the complaint": a list question has no single value to set to yes.
    if t in pack.finding_index and pack.finding(t).kind == BINARY:
        return ComplaintPick(code=t)
    hits = search_complaints(pack, t)
    if not hits:
        raise InputError(NO_MATCH)
    return ComplaintPick(matches=tuple(hits))


def parse_age(text: str) -> float:
    """An age typed as '54', '54 years', '54 yo' or '6 months' (InputError outside 0–120 years or unreadable)."""
    t = text.strip().lower()
    m = _AGE.match(t)
    if m is None:
        return check_age(text.strip())  # raises with the usual message
    number = m.group(1).replace(",", ".")
    if m.group(2) and m.group(2).startswith("mo"):
        return check_age(float(number) / 12)
    return check_age(number)  # the string, so an error quotes what was typed


def parse_sex(text: str) -> str:
    """Sex typed as F/M, female/male, woman/man, or the menu number 1 (female) / 2 (male)."""
    t = text.strip().rstrip(".!")
    return {"1": "F", "2": "M"}.get(t) or normalise_sex(t)


_STOP = frozenset(
    "have has had been being with your you that this they them there their what when where which would could should "
    "about from into more than very some also just like feel feels felt much many does did doing are were was "
    # Demographic and time words say nothing about which symptom is meant ("25 year old female").
    "year years old male female woman man girl boy past last days weeks months time ago since".split()
)


def rank_by_words(pack: Pack, text: str, limit: int = 8) -> list[str]:
    """Yes/no findings whose question shares the most content words with `text` (a menu when nothing was read)."""
    from diagnostician.dialogue.nlu import normalise, tokenize  # local: nlu builds on this module's neighbours

    def content(s: str) -> set[str]:
        return {t.stem for t in tokenize(normalise(s)) if t.is_word and len(t.raw) >= 4 and t.raw not in _STOP}

    said = content(text)
    if not said:
        return []
    scored = []
    for f in pack.findings:
        if f.kind != BINARY:
            continue
        words = content(f.question)
        shared = len(said & words)
        if shared:
            scored.append((-shared, len(words), f.code))
    return [code for _, _, code in sorted(scored)[:limit]]
