"""Findings and questions in patient-facing words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from diagnostician.engine.inquiry import Question
from diagnostician.engine.posterior import AnswerValue
from diagnostician.knowledge.schema import BINARY, CATEGORICAL, Finding, Pack

DONT_KNOW = "don't know"


def is_scale(f: Finding) -> bool:
    """Whether a categorical finding is a 0–10 style numeric scale."""
    return f.kind == CATEGORICAL and all(v.isdigit() for v in f.values)


def answer_hint(f: Finding) -> str:
    """How to answer this finding's question."""
    if f.kind == BINARY:
        return "yes / no / ? (don't know)"
    if is_scale(f):
        return f"a number {f.values[0]}–{f.values[-1]}, or ?"
    if f.kind == CATEGORICAL:
        return "one number or name from the list, or ?"
    return "one or more numbers or names, separated by commas ('no' for none), or ?"


def options(f: Finding) -> list[tuple[int, str, str]]:
    """(menu number, value code, label) for list questions; empty for yes/no and scales."""
    if f.kind == BINARY or is_scale(f):
        return []
    return [(i + 1, v, lab) for i, (v, lab) in enumerate(zip(f.values, f.labels))]


def answer_menu(f: Finding) -> list[tuple[int, str, AnswerValue]]:
    """(number, label, engine value) of every allowed answer as a chat shows them: yes/no or the list, then don't know.

    Empty for scales, whose numbers are the answers themselves.
    """
    if is_scale(f):
        return []
    items: list[tuple[str, AnswerValue]] = [("yes", True), ("no", False)] if f.kind == BINARY else list(zip(f.labels, f.values))
    items.append((DONT_KNOW, None))
    return [(i, label, value) for i, (label, value) in enumerate(items, 1)]


def reason(pack: Pack, q: Question) -> str:
    """Why this question is asked, in plain words."""
    lead = ", ".join(f"{name} ({p:.0%})" for name, p in q.separates[:4])
    if q.phase == "record":
        return "The family health record lists this; it counts only once you confirm it is still true."
    if q.phase == "screening":
        return f"Screening for a danger sign ({q.screens.replace('_', ' ')}): with what you have, this answer decides whether you need urgent care."
    if q.phase == "review":
        return (
            f"To complete the picture for the differential: about {q.p_present:.0%} chance this is present. "
            f"How often it is present with the leading conditions: {lead}."
        )
    parts = [f"expected information gain {q.expected_gain / 0.6931:.2f} bits"]
    if q.safety_gain > 1e-3:
        parts.append(f"it helps rule serious conditions in or out ({q.safety_gain / 0.6931:.2f} bits)")
    return f"It separates the leading conditions — how often it is present with each: {lead}. " + "; ".join(parts) + "."


@dataclass(frozen=True)
class Audience:
    """Who answers the questions: the patient, or someone for them (a parent: relation 'son', 'child'…; sex if known)."""

    proxy: bool = False
    relation: str | None = None
    sex: str | None = None
    adult: bool = False  # someone writes about an adult ("a 27-year-old woman…"): not "your child"

    @property
    def who(self) -> str:
        """How the first mention names the patient ("your son", "your child", "the patient")."""
        if self.relation:
            return f"your {self.relation}"
        return "the patient" if self.adult else "your child"


def _proxy_tables() -> dict[str, Any]:
    from diagnostician.dialogue.nlu import language  # local: nlu imports render's neighbours, not render

    return language("en")["proxy_rewrite"]


def address(text: str, audience: Audience) -> str:
    """A question to the patient turned to whoever answers for them ("Do you…" → "Does your child…")."""
    if not audience.proxy:
        return text
    if re.search(r"\b(your|the) (baby|child|newborn|infant)\b", text, re.IGNORECASE):
        return text  # already asked of the parent ("Is your baby…"): nothing to turn
    tables = _proxy_tables()
    pron = tables["pronouns"].get(audience.sex or "", tables["pronouns"][""])
    first = [True]

    def fill(template: str) -> str:
        def name(_: re.Match[str]) -> str:
            if first[0]:
                first[0] = False
                return audience.who
            return pron["sub"]

        out = re.sub(r"\{who\}", name, template)
        return out.format(**pron)

    pattern = re.compile("|".join(f"(?P<r{i}>{rx})" for i, (rx, _) in enumerate(tables["rules"])), re.IGNORECASE)

    def swap(m: re.Match[str]) -> str:
        i = int(next(k for k, v in m.groupdict().items() if v is not None)[1:])
        rx, template = tables["rules"][i]
        return re.sub(rx, fill(template), m.group(0), flags=re.IGNORECASE)

    out = pattern.sub(swap, text)
    # Pronoun-led questions read better with the verb agreeing: "does they" → "do they".
    out = re.sub(r"\b(does|is|has|was) they\b", lambda m: {"does": "do", "is": "are", "has": "have", "was": "were"}[m.group(1)] + " they", out)
    return out[:1].upper() + out[1:]


def patient_question(f: Finding, audience: Audience | None = None) -> str:
    """The finding's question in patient-facing words, addressed to whoever answers."""
    return address(f.question, audience or Audience())


def plain_reason(pack: Pack, q: Question) -> str:
    """Why this question is asked, in a sentence a patient understands."""
    names = [name for name, _ in q.separates[:3]]
    listed = ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1] if names else "the conditions that fit so far"
    if q.phase == "record":
        return "Your family health record lists this; I use it only once you confirm it is still true."
    if q.phase == "screening":
        return "I ask to make sure you do not have a danger sign that needs urgent care."
    if q.phase == "review":
        return f"I ask to complete the picture before I summarise: the answer matters for {listed}."
    out = f"I ask because your answer helps tell apart conditions that fit so far: {listed}."
    if q.safety_gain > 1e-3:
        out += " It also helps make sure a serious condition is not missed."
    return out
