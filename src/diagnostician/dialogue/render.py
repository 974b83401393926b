"""Findings and questions in patient-facing words."""

from __future__ import annotations

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
    if q.phase == "review":
        return (
            f"To complete the picture for the differential: about {q.p_present:.0%} chance this is present. "
            f"How often it is present with the leading conditions: {lead}."
        )
    parts = [f"expected information gain {q.expected_gain / 0.6931:.2f} bits"]
    if q.safety_gain > 1e-3:
        parts.append(f"it helps rule serious conditions in or out ({q.safety_gain / 0.6931:.2f} bits)")
    return f"It separates the leading conditions — how often it is present with each: {lead}. " + "; ".join(parts) + "."
