"""Meaning-based matching for what the lexicon missed: sentence embeddings of a clause against each finding.

The lexicon reads most text; some patients describe a finding in words no lexicon lists ("I have a
hard time opening my eyelids"). For such a clause the MiniLM embedding (dialogue.embed) is compared
with an embedding of each yes/no finding, written as the patient's own statement of its question
and as its lexicon terms. A close enough match becomes a mention with a modest confidence, so it is
confirmed with the patient before it counts. Only used when the model is installed; the lexical
reader works alone otherwise.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass


from diagnostician.knowledge.lexicon import Lexicon
from diagnostician.knowledge.schema import BINARY, Pack

THRESHOLD = 0.70  # cosine a clause needs to its best finding (best of 0.50–0.75 on the odd-numbered half of the intake set)
MARGIN = 0.03  # and its lead over the second finding, so a clause close to two findings is left alone
CONFIDENCE = 0.6  # below the confirmation threshold: a meaning match is always confirmed with the patient
ENV_SWITCH = "DIAGNOSTICIAN_SEMANTIC"  # "0" turns the embedding matcher off even when the model is installed


def statement(question: str) -> str:
    """A yes/no question as the patient's statement ("Do you have a cough?" → "I have a cough")."""
    from diagnostician.dialogue.nlu import language

    rules = language("en")["statement_rewrite"]
    text = question.strip().rstrip("?").strip()
    for rx, repl in rules["lead"]:
        if re.match(rx, text, re.IGNORECASE):
            text = re.sub(rx, repl, text, count=1, flags=re.IGNORECASE)
            break
    head, rest = text.split(" ", 1) if " " in text else (text, "")
    for rx, repl in rules["swap"]:
        rest = re.sub(rx, repl, rest, flags=re.IGNORECASE)
    return f"{head} {rest}".strip()


@dataclass(frozen=True)
class SemanticHit:
    """The finding a clause means, and how close it is."""

    code: str
    score: float


class SemanticMatcher:
    """Embeddings of every yes/no finding of a pack (its statement and its terms), compared with clauses."""

    def __init__(self, pack: Pack, lexicon: Lexicon, encoder: object) -> None:
        self.encoder = encoder
        texts, owners = [], []
        for f in pack.findings:
            if f.kind != BINARY:
                continue
            texts.append(statement(f.question))
            owners.append(f.code)
            ts = lexicon.findings.get(f.code)
            for term in (ts.terms if ts else ())[:6]:
                if len(term.split()) >= 2:  # one-word terms carry little meaning out of context
                    texts.append(f"I have {term}" if not term.startswith(("i ", "my ")) else term)
                    owners.append(f.code)
        self.owners = list(owners)
        self.codes = sorted(set(owners))
        self.vectors = encoder.encode(texts)  # type: ignore[attr-defined]

    def best(self, clauses: list[str]) -> list[SemanticHit | None]:
        """For each clause, the finding it means when the match is close and clear enough, else None."""
        if not clauses:
            return []
        sims = self.encoder.encode(clauses) @ self.vectors.T  # type: ignore[attr-defined]
        out: list[SemanticHit | None] = []
        for row in sims:
            per_code: dict[str, float] = {}
            for code, s in zip(self.owners, row):
                if s > per_code.get(code, -1.0):
                    per_code[code] = float(s)
            ranked = sorted(per_code.items(), key=lambda kv: -kv[1])
            top, second = ranked[0], ranked[1] if len(ranked) > 1 else ("", -1.0)
            ok = top[1] >= THRESHOLD and top[1] - second[1] >= MARGIN
            out.append(SemanticHit(str(top[0]), top[1]) if ok else None)
        return out


_LOCK = threading.Lock()
_MATCHERS: dict[Pack, SemanticMatcher | None] = {}


def matcher_for(pack: Pack, lexicon: Lexicon) -> SemanticMatcher | None:
    """The pack's semantic matcher (built once), or None when the model is absent or the matcher is switched off."""
    if os.environ.get(ENV_SWITCH, "").strip() == "0":
        return None
    with _LOCK:
        if pack not in _MATCHERS:
            from diagnostician.dialogue.embed import load_encoder

            encoder = load_encoder()
            _MATCHERS[pack] = SemanticMatcher(pack, lexicon, encoder) if encoder is not None else None
        return _MATCHERS[pack]
