"""Fact check of an agent's answer against the knowledge pack: supported, contradicted and unverifiable claims.

The answer is split into claims (sentences and list items). In each claim the checker finds the pack's
conditions it names, the findings it says are present (free-text reader) and the urgency it states
(the grounding module's phrase table), then checks what the pack can check:

- a condition named at all exists in the pack (supported);
- a condition named with a finding: the finding's likelihood ratio for that condition against the
  others (prior-weighted) is at least 2 (supported) or at most 1/2 (contradicted), else unverifiable;
- a condition named with an urgency: the condition's triage level in the pack is among the levels
  the phrase may mean (supported), or not (contradicted).

A claim is contradicted if any check is, supported if some check is and none contradicts, otherwise
unverifiable (nothing in it the pack knows). The hallucination rate is contradicted claims over the
claims that could be checked. It only knows the pack: a true statement about a condition outside it
is "unverifiable", never "supported".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diagnostician.dialogue.grounding import grounding_of, split_sentences
from diagnostician.dialogue.mentions import PRESENT
from diagnostician.dialogue.nlu import MAX_CHARS, read_text
from diagnostician.errors import InputError
from diagnostician.knowledge.schema import BINARY, Pack

SUPPORTED, CONTRADICTED, UNVERIFIABLE = "supported", "contradicted", "unverifiable"
LR_SUPPORT = 2.0  # a finding "goes with" a condition when it is at least twice as likely with it as without
LR_CONTRADICT = 0.5  # and "does not" when it is at most half as likely


@dataclass
class Claim:
    """One claim of an answer and what the pack says about it."""

    text: str
    verdict: str
    checks: list[str] = field(default_factory=list)  # one line per check made, with its outcome

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"text": self.text, "verdict": self.verdict, "checks": list(self.checks)}


def split_claims(text: str) -> list[str]:
    """Sentences and list items of an answer (numbered or bulleted lines are claims of their own)."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip()
        out += [s for s in split_sentences(line) if re.search(r"[A-Za-z]", s)]
    return out


def likelihood_ratio(pack: Pack, condition: str, finding: str) -> float | None:
    """P(finding | condition) / P(finding | another condition, prior-weighted), for a yes/no finding; None otherwise."""
    f = pack.finding(finding)
    if f.kind != BINARY:
        return None
    col = int(pack.finding_columns[pack.finding_index[finding]][0])
    c = pack.condition_index[condition]
    prior = np.exp(pack.log_prior)
    others = np.ones(len(pack.conditions), dtype=bool)
    others[c] = False
    p_rest = float((pack.p[others, col] * prior[others]).sum() / prior[others].sum())
    return float(pack.p[c, col]) / p_rest if p_rest > 0 else None


def check_claim(pack: Pack, text: str) -> Claim:
    """The verdict on one claim and the checks behind it."""
    found = grounding_of(text, pack)
    conditions = sorted(found.conditions)
    checks: list[tuple[str, str]] = []
    if conditions:
        try:
            # Symptoms only: a history finding that repeats the condition's name ("had pneumonia") checks nothing.
            mentions = read_text(pack, text[:MAX_CHARS]).mentions
            present = sorted({m.code for m in mentions if m.polarity == PRESENT and not pack.finding(m.code).antecedent})
        except InputError:
            present = []
        for code in conditions:
            cond = pack.conditions[pack.condition_index[code]]
            checks.append((SUPPORTED, f"{cond.name} is a condition of the pack"))
            for fcode in present:
                lr = likelihood_ratio(pack, code, fcode)
                if lr is None:
                    continue
                what = f"{pack.finding(fcode).question.rstrip('?')} with {cond.name}: likelihood ratio {lr:.2f}"
                if lr >= LR_SUPPORT:
                    checks.append((SUPPORTED, what))
                elif lr <= LR_CONTRADICT:
                    checks.append((CONTRADICTED, what))
            if found.urgency:
                levels = ", ".join(sorted(found.urgency))
                verdict = SUPPORTED if cond.triage in found.urgency else CONTRADICTED
                checks.append((verdict, f"urgency stated ({levels}) vs the pack's level for {cond.name} ({cond.triage})"))
    verdicts = {v for v, _ in checks}
    verdict = CONTRADICTED if CONTRADICTED in verdicts else SUPPORTED if SUPPORTED in verdicts else UNVERIFIABLE
    return Claim(text, verdict, [f"{v}: {what}" for v, what in checks])


def fact_check(pack: Pack, answer: str) -> dict[str, Any]:
    """Every claim of an answer with its verdict, the counts, and the hallucination rate."""
    claims = [check_claim(pack, c) for c in split_claims(answer)]
    counts = {v: sum(c.verdict == v for c in claims) for v in (SUPPORTED, CONTRADICTED, UNVERIFIABLE)}
    checked = counts[SUPPORTED] + counts[CONTRADICTED]
    return {
        "claims": [c.to_dict() for c in claims],
        **counts,
        "hallucination_rate": round(counts[CONTRADICTED] / checked, 4) if checked else None,
    }
