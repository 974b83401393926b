"""Free text → findings of a knowledge pack, offline: lexicon matching, ConText-style negation, numbers and demographics.

The reader works on tokens of the lowercased text, each with its character span. It matches the pack
lexicon's lay terms (light stemming on both sides; misspellings matched to the lexicon's vocabulary
by edit distance; up to two filler words inside a multi-word term), then decides each match's
polarity the way the ConText algorithm does: negation and uncertainty triggers open a scope that runs
forward (or backward) until the clause ends, a terminator ("but", "though") or a new clause starts.
Trigger words inside a matched term ("can't breathe", "no appetite") are part of the term, and
pseudo-triggers ("won't go away") negate nothing. Every mention keeps a confidence: exact matches
high, filler words and misspellings lower, so a caller can confirm doubtful findings with the
patient instead of entering them silently.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from diagnostician.dialogue.mentions import ABSENT, PRESENT, UNCERTAIN, Mention, Reading
from diagnostician.errors import InputError
from diagnostician.knowledge.lexicon import Lexicon, load_lexicon
from diagnostician.knowledge.schema import CATEGORICAL, Pack

MAX_CHARS = 5000  # a patient's message; longer text is refused, never truncated silently
CONFIRM_BELOW = 0.8  # mentions below this confidence are confirmed with the patient before they count

EXACT, GAP_COST, FUZZY_COST, UNSIDED = 0.95, 0.08, 0.22, 0.5
# "Breathing is fine" denies shortness of breath less directly than "no shortness of breath": a named
# finding said in the same text wins over it, and it still counts without a confirmation question.
NORMAL_STATE = 0.85
MAX_GAP = 2  # filler words allowed inside a multi-word term ("coughing up [some] blood")
NEAR_CUE = 4  # words between a 0–10 score and the cue that names its scale ("pain is about 7/10")
NAMED_CUE_REACH = 30  # words between a value and the symptom word that can serve as its cue (bounds the work)
SETTLED = 3  # lexicon texts a word must appear in to be taken as spelt right (one text may list a misspelling)
MAX_SCOPE = 10  # words a negation or uncertainty trigger reaches at most
SIDE_WINDOW = 4  # words around a body site searched for "left" / "right"

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[^\sa-z0-9'-]")
_CLAUSE_BREAK = set(".!;\n") | {"…"}  # not ":" nor "?" — "fever: none", "chills? no" are one clause each
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "–": "-", "—": "-"})


@lru_cache(maxsize=4)
def language(lang: str = "en") -> dict[str, Any]:
    """The function-word tables of a language (negation, uncertainty, kinship, numbers)."""
    path = Path(__file__).parent / "data" / f"{lang}.json"
    if not path.exists():
        raise InputError(f"no language data for {lang!r}")
    return json.loads(path.read_text(encoding="utf-8"))


def stem(word: str) -> str:
    """A light English stem, the same on both sides of a match ("coughing" → "cough", "dizziness" → "dizzi")."""
    w = word.replace("'", "")
    if len(w) <= 3 or not w.isalpha():
        return w
    if len(w) > 5 and w.endswith("ness"):
        w = w[:-4]
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 4 and w.endswith("ing"):
        w = w[:-3]
        if len(w) == 3:
            w += "e"  # aching → ache, so that it meets "aches" and "ache"
    elif len(w) > 5 and w.endswith("in") and w[-3] not in "aeiouy":
        w = w[:-2]  # texting style: "coughin", "vomitin"
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    if len(w) > 4 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]  # throbbing → throbb → throb
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]  # not in four-letter words: "hive" must not become "hiv"
    if len(w) > 3 and w.endswith("y"):
        w = w[:-1] + "i"
    return w


@dataclass(frozen=True)
class Token:
    """One word or punctuation mark: its stem, its raw text and its character span in the original text."""

    stem: str
    raw: str
    start: int
    end: int

    @property
    def is_word(self) -> bool:
        """Whether this is a word (not punctuation)."""
        return self.raw[0].isalnum()


def normalise(text: str) -> str:
    """Lowercase with the same length as `text`, typographic quotes straightened, so spans map back one to one."""
    if text.isascii() and text.isprintable():
        return text.lower()  # the common case, without the per-character work below
    out = []
    for ch in text.translate(_APOSTROPHES):
        low = ch.lower()
        if len(low) != 1:
            low = ch
        if unicodedata.category(low)[0] in "CS" and low != "\n":  # control characters, emoji, symbols
            low = " " if low not in "°%/+" else low
        out.append(low)
    return "".join(out)


# Negative contractions read as their two words, on both sides of a match: "inhaler isn't helping"
# meets "inhaler is not helping", and "doesn't" is the same trigger as "does not".
_CONTRACTED = {"can't": "can", "cannot": "can", "won't": "will", "shan't": "shall", "ain't": "is", "cant": "can", "wont": "will", "aint": "is"}
# Written without the apostrophe, as people type: "dont", "doesnt", "isnt".
_AUXILIARIES = ("do", "does", "did", "is", "are", "was", "were", "have", "has", "had", "could", "would", "should", "must", "need")
_CONTRACTED.update({aux + "nt": aux for aux in _AUXILIARIES})


def tokenize(text: str) -> list[Token]:
    """Tokens of normalised text (hyphens split words: "light-headed" → light, headed; "isn't" → is, not)."""
    out = []
    for m in _TOKEN.finditer(text):
        word = m.group()
        base = _CONTRACTED.get(word) or (word[:-3] if word.endswith("n't") and len(word) > 4 else None)
        if base is None:
            out.append(Token(stem(word), word, m.start(), m.end()))
        else:
            cut = m.start() + len(base) if word.startswith(base) else m.end() - 3  # "not" takes the rest of the word
            out += [Token(stem(base), base, m.start(), cut), Token("not", "not", cut, m.end())]
    return out


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(t.stem for t in tokenize(normalise(text)) if t.is_word)


def _damerau(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment edit distance, stopping early past `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


@dataclass(frozen=True)
class Target:
    """What a lexicon phrase stands for: a yes/no finding, some values of a list finding, a cue or a trigger."""

    kind: str  # finding | values | cue | neg_fwd | neg_bwd | unc_fwd | unc_bwd | pseudo | term | side
    code: str = ""
    values: tuple[str, ...] = ()
    value: str | None = None
    owners: tuple[str, ...] = ()  # for values: the list findings whose lexicon gives this phrase these values


@dataclass(frozen=True)
class Match:
    """A phrase found in the text: token range (end exclusive), target, and how loosely it matched."""

    start: int
    end: int
    target: Target
    length: int  # words of the phrase
    gaps: int = 0
    fuzzy: int = 0

    @property
    def confidence(self) -> float:
        """How sure the match is: exact high, lowered by filler words and misspellings."""
        return max(0.3, EXACT - GAP_COST * self.gaps - FUZZY_COST * self.fuzzy)


class PhraseIndex:
    """Phrases (stem tuples) indexed by first stem, matched longest first, optionally with gaps and fuzzy words."""

    def __init__(self, entries: Iterable[tuple[tuple[str, ...], Target]]) -> None:
        self.by_first: dict[str, list[tuple[tuple[str, ...], Target]]] = {}
        for phrase, target in entries:
            if phrase:
                self.by_first.setdefault(phrase[0], []).append((phrase, target))
        for items in self.by_first.values():
            items.sort(key=lambda it: -len(it[0]))
        self.vocab = {w for items in self.by_first.values() for phrase, _ in items for w in phrase}

    def find(
        self, words: Sequence[Token], equal: Sequence[set[str]], gaps: bool, no_gap: frozenset[str] = frozenset(), light: frozenset[str] = frozenset()
    ) -> list[Match]:
        """Every phrase occurrence among `words` (one clause); equal[i] is the set of stems token i may stand for.

        With `gaps`, up to MAX_GAP filler words may sit inside a phrase, but never a word of `no_gap`
        (joiners and negations: "had a stroke or heart attack" is not "had a heart attack"); `light` words
        (articles, possessives, prepositions) inside a phrase are skipped at no cost.
        """
        out = []
        for i in range(len(words)):
            for first in sorted(equal[i]):  # sorted: the same text must give the same reading in every process
                for phrase, target in self.by_first.get(first, ()):
                    m = self._match_at(words, equal, i, phrase, target, gaps, no_gap, light)
                    if m is not None:
                        out.append(m)
        return out

    @staticmethod
    def _match_at(
        words: Sequence[Token], equal: Sequence[set[str]], i: int, phrase: tuple[str, ...], target: Target, gaps: bool, no_gap: frozenset[str],
        light: frozenset[str] = frozenset(),
    ) -> Match | None:  # fmt: skip
        j, used_gaps = i, 0
        fuzzy = 0 if words[i].stem == phrase[0] else 1
        for w in phrase[1:]:
            j += 1
            while j < len(words) and w not in equal[j] and gaps and words[j].stem in light:
                j += 1  # "relief from her inhaler" meets "relief with inhaler": light words cost nothing
            while j < len(words) and w not in equal[j] and gaps and used_gaps < MAX_GAP and words[j].stem not in no_gap:
                j += 1
                used_gaps += 1
            if j >= len(words) or w not in equal[j]:
                return None
            fuzzy += words[j].stem != w
        return Match(i, j + 1, target, len(phrase), used_gaps, fuzzy)


class Reader:
    """A compiled reader for one pack and language; build once (`reader_for`) and call `read` per text."""

    def __init__(self, pack: Pack, lexicon: Lexicon, lang: dict[str, Any], semantic: bool = False) -> None:
        self.pack = pack
        self.lexicon = lexicon
        self.lang = lang
        terms: list[tuple[tuple[str, ...], Target]] = []
        self.light = frozenset(stem(w) for w in lang.get("light_words", ()))
        self.possessives = {stem(w) for w in lang["possessives"]}
        self.negation_leads = leads = frozenset(_phrase(w)[0] for w in lang["negation_forward"] if len(_phrase(w)) == 1)
        negated: list[tuple[tuple[str, ...], Target]] = []
        for code, ts in lexicon.findings.items():
            terms += [(self._content(_phrase(t)), Target("finding", code)) for t in ts.terms]
            # A term that is itself a denial ("no relief with inhaler") also matches when the denial is said
            # another way before the rest of it: "did not get any relief from her inhaler".
            for t in ts.terms:
                ph = self._content(_phrase(t))
                if len(ph) >= 3 and ph[0] in leads:
                    negated.append((ph[1:], Target("finding", code)))
        self.negated = PhraseIndex(negated)
        # "Knee swelling" is also "swelling in the right knee": a body part and a symptom noun, said the other way round.
        heads = frozenset(stem(w) for w in lang.get("inverted_heads", {}).get("words", ()))
        have = {ph for ph, _ in terms}
        for ph, target in list(terms):
            turned = ph[::-1]
            if len(ph) == 2 and ph[1] in heads and ph[0] not in heads and ph[0] not in self.light and turned not in have:
                terms.append((turned, target))
                have.add(turned)
        # "Red eyes" is also "my eyes are red": a two-word term read across a linking verb (see `_predicates`).
        said = lang.get("predicates", {})
        self.linking = frozenset(stem(w) for w in said.get("linking", ()))
        self.degree = frozenset(stem(w) for w in said.get("degree", ()))
        self.predicate_negation = frozenset(said.get("negation", ()))
        self.auxiliary = frozenset(stem(w) for w in said.get("auxiliary", ()))  # "my tummy doesn't hurt": "do", not a linking verb
        self.predicate_terms: dict[tuple[str, str], list[Target]] = {}
        self.single_findings = frozenset(ph[0] for ph, _ in terms if len(ph) == 1)
        for ph, target in terms:
            if len(ph) == 2 and ph[0] not in leads and not {*ph} & (self.light | self.linking):
                self.predicate_terms.setdefault(ph, []).append(target)
        # Blocked phrases win as longer matches and are then dropped: "hay fever" hides its "fever".
        terms += [(_phrase(t), Target("blocked")) for t in lexicon.blocked]
        self.terms = PhraseIndex(terms)
        # Abbreviations of three letters or fewer ("SOB", "DOE") count only as written: by stem, "does" would be "doe".
        self.short_terms: dict[str, set[str]] = {}
        for code, ts in lexicon.findings.items():
            for t in ts.terms:
                written = _raw_phrase(t)
                if len(written) == 1 and len(written[0]) <= 3:
                    self.short_terms.setdefault(_phrase(t)[0], set()).add(written[0])
        values: list[tuple[tuple[str, ...], Target]] = []
        cues: list[tuple[tuple[str, ...], Target]] = []
        # Value ids are shared ("yes" of every yes/no list): a phrase belongs to the findings that list it, not to every
        # finding with the same value id ("peeling off" is E_131's "yes", not E_135's).
        said: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
        for code, vl in lexicon.values.items():
            for ts in vl.sets:
                for t in ts.terms:
                    said.setdefault((_phrase(t), tuple(ts.values)), []).append(code)
            cues += [(_phrase(t), Target("cue", code)) for t in vl.cues]
        values += [(ph, Target("values", codes[0], vals, owners=tuple(dict.fromkeys(codes)))) for (ph, vals), codes in said.items()]
        for code, vl in lexicon.scales.items():
            cues += [(_phrase(t), Target("cue", code)) for t in vl.cues]
        self.values = PhraseIndex(values)
        # Words that give a scale its value ("very itchy" → itch 8, "painless" → rash pain 0), by scale.
        self.scale_words = PhraseIndex((_phrase(t), Target("scale", code, (ts.value,))) for code, vl in lexicon.scales.items() for ts in vl.sets if ts.value is not None for t in ts.terms)
        self.cue_owners: dict[tuple[str, ...], set[str]] = {}
        for phrase, target in cues:
            self.cue_owners.setdefault(phrase, set()).add(target.code)
        self.cues = PhraseIndex(cues)
        triggers = []
        for key, kind in (("negation_forward", "neg_fwd"), ("negation_backward", "neg_bwd"), ("uncertain_forward", "unc_fwd"), ("uncertain_backward", "unc_bwd"), ("pseudo", "pseudo"), ("terminators", "term")):
            # Function words match as written, not stemmed: "none" must not match the "non" of "non-restful".
            triggers += [(_raw_phrase(t), Target(kind)) for t in lang[key]]
        self.triggers = PhraseIndex(triggers)
        self.answer_denials = {_raw_phrase(w) for w in lang.get("negation_as_answer", {}).get("words", ())}
        self.starters = {_phrase(w)[0] for w in lang["clause_starters"] if _phrase(w)}
        self.joiners = {stem(w) for w in lang["list_joiners"]}
        self.sides = {side: {_phrase(w) for w in words} for side, words in lang["sides"].items()}
        self.vocab = self.terms.vocab | self.values.vocab | self.cues.vocab
        self.family_words = {_phrase(w) for w in lang["family_words"]}
        self.part_breaks = {stem(w) for w in ("but", "however", "although", "though", "whereas", "except")}
        self.uncertain_leads = {_phrase(w)[0] for w in lang["uncertain_forward"] if len(_phrase(w)) == 1}
        self._normal_rx, self._exception_rx = _normal_state_patterns(lexicon, lang)
        double = lang.get("without_after_negative", {})
        self.without_leads = {w.replace("'", "") for w in double.get("leads", ())}
        self.without_modals = set(double.get("modals", ()))
        self.semantic = semantic
        # Joiners and trigger words may not sit inside a term; the light words of some triggers ("free of") may.
        self.no_gap = frozenset(self.joiners | ({stem(w) for p, _ in triggers for w in p} - self.light))
        self.kin = {stem(w) for group in lang["kin"].values() for w in group}
        self.reporting = frozenset(lang["reporting_verbs"])
        kin_words = "|".join(re.escape(w) for group in lang["kin"].values() for w in group)
        family_rx = re.compile(rf"\b(?:family|relatives?|{kin_words})\b", re.IGNORECASE)
        self.family_findings = {f.code for f in pack.findings if family_rx.search(f.question)}
        # A personal finding maps to the family finding whose question names one of its terms ("asthma").
        # Only unambiguous names of 6+ letters count: "fever" sits inside "hay fever", "cancer" in two questions.
        self.family_of: dict[str, str] = {}
        questions = {fam: normalise(pack.finding(fam).question) for fam in self.family_findings}
        for code, ts in lexicon.findings.items():
            if code in self.family_findings:
                continue
            hits = {fam for fam in self.family_findings for t in ts.terms if len(t) >= 6 and t in questions[fam] and re.search(rf"\b{re.escape(t)}\b", questions[fam])}
            if len(hits) == 1:
                self.family_of[code] = hits.pop()
        texts = [_raw_phrase(text) for text in _lexicon_texts(lexicon)]
        self.raw_vocab = {w for words in texts for w in words}
        # A word of one longer term only may be a misspelling the lexicon lists for that term ("got the chils"):
        # it is still corrected elsewhere ("fevr and chils"). Words of two terms or a term of their own are settled.
        self.seen = Counter(w for words in {*texts} for w in {*words})
        self.settled = {w for w, n in self.seen.items() if n >= SETTLED} | {words[0] for words in texts if len(words) == 1}
        # Two settled words written as one ("sorethroat", "backpain") are split where they make a pair of some term.
        self.joined_pairs = {(a, b) for words in texts for a, b in zip(words, words[1:]) if a in self.settled and b in self.settled and len(a) >= 3 and len(b) >= 3}
        self._deletes: dict[str, set[str]] = {}
        for w in self.raw_vocab:
            if len(w) >= 4 and w.isalpha():
                deletions = _deletions(w)
                if len(w) >= 8:
                    deletions |= {d2 for d in deletions for d2 in _deletions(d)}
                for d in deletions:
                    self._deletes.setdefault(d, set()).add(w)
        self.function_words = {stem(w) for w in self.triggers.vocab} | self.starters | {stem(w) for w in ("have", "had", "with", "from", "feel", "that", "this", "when", "then", "them", "than", "what", "some", "very", "really", "been", "like", "much", "more", "less", "also", "just", "right", "left", "back", "side", "time", "since", "days", "week", "year", "month")}

    # --- tokens -------------------------------------------------------------------------------
    def _content(self, phrase: tuple[str, ...]) -> tuple[str, ...]:
        """A term without its light words (inside it, or a possessive that opens it), when at least two words remain."""
        # "My tummy hurts" is also "his tummy hurts" and "tummy hurts": whose body it is, the clause says.
        kept = tuple(w for k, w in enumerate(phrase) if w not in self.light or (k == 0 and w not in self.possessives) or k == len(phrase) - 1)
        if len(kept) < 2 or (kept[0] in self.negation_leads and sum(len(w) > 2 for w in kept[1:]) < 1):
            return phrase  # "not with it" must not become "not … it", which any "can't see it" would match
        return kept

    def _as_written(self, tok: Token) -> bool:
        """Whether a word may stand for a short abbreviation term: only when written exactly so."""
        forms = self.short_terms.get(tok.stem)
        return forms is None or tok.raw.replace("'", "") in forms

    def _alternatives(self, tok: Token) -> set[str]:
        """The stems a word may stand for: itself, and that of a lexicon word one or two typos away."""
        s, raw = tok.stem, tok.raw.replace("'", "")
        known = raw in self.settled if raw in self.raw_vocab else s in self.vocab
        if known or not raw.isalpha() or len(raw) < 4 or s in self.function_words:
            return {s}
        # Typos are judged on the written words, not on stems: "weezing" is one letter from "wheezing".
        limit = 1 if len(raw) < 8 else 2
        deletions = _deletions(raw)
        if limit == 2:  # two typos in a long word: compare two-letter deletions too ("nautious" → "nauseous")
            deletions |= {d2 for d in deletions for d2 in _deletions(d)}
        candidates = set(self._deletes.get(raw, ())) | {w for d in deletions for w in self._deletes.get(d, ())}
        candidates |= {d for d in deletions if d in self.raw_vocab}
        # Short words must keep their first two letters ("pian" → "pain", not "rain"); longer ones their first.
        keep = 2 if len(raw) < 5 else 1
        candidates.discard(raw)
        if raw in self.raw_vocab:
            # A word of the lexicon's own may be a real word ("snore", "band"): only a letter left out ("chils", "blod")
            # or two swapped corrects it, never another letter in its place ("band" is not "bang").
            candidates = {w for w in candidates if len(w) == len(raw) + 1 or (len(w) == len(raw) and sorted(w) == sorted(raw))}
        # Of as near words (two are kept), a settled word first (not another listed misspelling: "brething" is
        # "breathing" before "breething"), then a doubled letter written once ("chils", "runy"), then the commoner word.
        near = sorted(
            (_damerau(raw, w, limit), w not in self.settled, not _undoubled(raw, w), -self.seen[w], w)
            for w in candidates
            if w[:keep] == raw[:keep] or (keep == 2 and sorted(w[:2]) == sorted(raw[:2]))
        )
        best = [stem(w) for dist, *_, w in near if dist <= limit and dist == near[0][0]] if near else []
        return {s, *best[:2]}

    def _split_joined(self, tokens: list[Token]) -> list[Token]:
        """Tokens with a word unknown to the lexicon split in two where its halves are a word pair of a term."""
        out = []
        for t in tokens:
            raw = t.raw
            if len(raw) >= 6 and raw.isalpha() and raw not in self.raw_vocab and t.stem not in self.vocab:
                k = next((k for k in range(3, len(raw) - 2) if (raw[:k], raw[k:]) in self.joined_pairs), None)
                if k is not None:
                    out += [Token(stem(raw[:k]), raw[:k], t.start, t.start + k), Token(stem(raw[k:]), raw[k:], t.start + k, t.end)]
                    continue
            out.append(t)
        return out

    # --- reading ------------------------------------------------------------------------------
    def read(self, text: str, max_chars: int = MAX_CHARS) -> Reading:
        """Everything the text says: demographics, numbers and each finding with polarity, value, confidence and span."""
        check_text(text, max_chars)
        norm = normalise(text)
        reading = Reading(text=text)
        read_demographics(norm, reading, self.lang)
        tokens = self._split_joined(tokenize(norm))
        mentions: list[Mention] = []
        for clause in _clauses(tokens):
            mentions += self._read_clause(text, clause, reading.relation)
        mentions += self._numbers(text, norm, tokens)
        mentions += self._normal_states(text, norm, tokens, reading.relation)
        if self.semantic:
            mentions += self._by_meaning(text, tokens, mentions, reading.relation)
        reading.mentions = self._merge(mentions, reading)
        if not reading.mentions and not re.search(r"[a-z]{2}", norm):
            reading.notes.append("no English words found; please describe the symptoms in English")
        return reading

    def _by_meaning(self, text: str, tokens: Sequence[Token], found: Sequence[Mention], relation: str | None) -> list[Mention]:
        """Findings of the parts of sentences the lexicon read nothing in, matched by sentence embeddings."""
        from diagnostician.dialogue.semantic import CONFIDENCE, matcher_for

        matcher = matcher_for(self.pack, self.lexicon)
        if matcher is None:
            return []
        parts = []
        for clause in _clauses(tokens):
            part: list[Token] = []
            for t in clause + [Token(",", ",", -1, -1)]:
                if t.raw == "," or t.stem in self.part_breaks:
                    words = [w for w in part if w.is_word]
                    taken = any(m.span[0] < part[-1].end and part[0].start < m.span[1] for m in found) if part else True
                    if len(words) >= 3 and not taken and not self._about_relative(words, relation):
                        parts.append(words)
                    part = []
                else:
                    part.append(t)
        hits = matcher.best([text[p[0].start : p[-1].end] for p in parts])
        out = []
        for words, hit in zip(parts, hits):
            if hit is None:
                continue
            lead = {t.stem for t in words[:3]}
            polarity = ABSENT if lead & self.negation_leads else UNCERTAIN if lead & self.uncertain_leads else PRESENT
            start, end = words[0].start, words[-1].end
            out.append(Mention(hit.code, polarity, None, CONFIDENCE, (start, end), text[start:end], "embedding"))
        return out

    def _as_family(self, m: Match) -> Match | None:
        """The family-history counterpart of a finding said of a relative (asthma → family asthma), if the pack has one."""
        if m.target.code in self.family_findings:
            return m
        family = self.family_of.get(m.target.code)
        return None if family is None else Match(m.start, m.end, Target("finding", family), m.length, m.gaps, m.fuzzy)

    def _about_relative(self, words: Sequence[Token], relation: str | None) -> bool:
        """Whether a clause speaks of a relative other than the patient ("my mum has asthma", "runs in the family")."""
        stems = [w.stem for w in words]
        if any(tuple(stems[i : i + len(p)]) == p for p in self.family_words for i in range(len(stems))):
            return True
        relation_stem = stem(relation or "")
        return any(
            s in self.kin and s != relation_stem and i > 0 and stems[i - 1] in self.possessives
            and not {w.raw for w in words[i + 1 : i + 3]} & self.reporting  # "my partner says I snore": the partner only reports
            for i, s in enumerate(stems)
        )  # fmt: skip

    def _read_clause(self, text: str, clause: list[Token], relation: str | None = None) -> list[Mention]:
        words = [t for t in clause if t.is_word]
        if not words:
            return []
        positions = {id(t): i for i, t in enumerate(words)}
        equal = [self._alternatives(t) for t in words]
        # Commas matter for scope, so remember where they were in word positions.
        commas, marks = set(), set()
        for k, t in enumerate(clause):
            if t.raw in ",/" or t.raw == "-":
                before = [positions[id(x)] for x in clause[:k] if x.is_word]
                if before:
                    commas.add(before[-1] + 1)
                    if t.raw != "/":  # "and/or", "on/off": a slash joins words
                        marks.add(before[-1] + 1)
        found = self.terms.find(words, equal, gaps=True, no_gap=self.no_gap, light=self.light)
        # A filler word may sit inside a term, or a comma ("Leg, pain" as a form lists it), not both: "my chest, it's
        # burning" is not "chest burning" (light words count here: they are words the term does not have).
        found = [m for m in found if m.end - m.start == m.length or not any(k in marks for k in range(m.start + 1, m.end))]
        predicates, denied = self._predicates(words, equal)
        found += predicates
        said_do, denied_do = self._auxiliary(words, equal)
        found += said_do
        denied |= denied_do
        for m in self.negated.find(words, equal, gaps=True, no_gap=self.no_gap, light=self.light):
            lead = next((k for k in range(m.start - 1, max(-1, m.start - 4), -1) if words[k].stem in self.negation_leads), None)
            if lead is not None:  # the denial word joins the term: it does not negate the finding
                found.append(Match(lead, m.end, m.target, m.length + 1, m.gaps + (m.start - lead - 1), m.fuzzy))
        found = [m for m in found if not (m.length == 1 and m.end - m.start == 1 and not self._as_written(words[m.start]))]
        selected = self._coordinated(words, equal, _select(found))
        findings = [m for m in selected if m.target.kind == "finding"]
        if self._about_relative(words, relation):
            # The experiencer is a relative ("my mum has asthma"): a family-history finding applies, not the patient's own.
            findings = [self._as_family(m) for m in findings]
            findings = [m for m in findings if m is not None]
        inside = {k for m in selected for k in range(m.start, m.end)}
        # Forward and backward readings of a word ("no") are chosen separately; pseudo-triggers and longer triggers win in each.
        raw = [{t.raw.replace("'", "")} for t in words]
        every = [m for m in self.triggers.find(words, raw, gaps=False) if not any(k in inside for k in range(m.start, m.end))]
        fwd = _select(m for m in every if m.target.kind in ("neg_fwd", "unc_fwd", "pseudo", "term"))
        bwd = _select(m for m in every if m.target.kind in ("neg_bwd", "unc_bwd", "pseudo", "term"))
        triggers = fwd + [m for m in bwd if m.target.kind in ("neg_bwd", "unc_bwd")]
        # "Unable to type without pain": a double negative; "without" ends the first one's scope instead.
        triggers = [self._double_negative(words, m) for m in triggers]
        # "pain is maybe a 6", "probably about 7": the hedge is on the number, not on the finding.
        triggers = [m for m in triggers if not (m.target.kind in ("unc_fwd", "unc_bwd") and self._before_number(words, m.end))]
        # Words a longer symptom term took ("sore throat") are not also a body site ("throat").
        cue_matches = self.cues.find(words, equal, gaps=False)
        value_matches = [v for v in _select(self.values.find(words, equal, gaps=True, no_gap=self.no_gap)) if not self._taken(v, findings)]
        polarity = self._scopes(words, triggers, [*findings, *value_matches], commas)
        polarity.update({m.start: ABSENT for m in findings if (m.start, m.end) in denied})
        out = []
        for m in findings:
            pol = polarity.get(m.start, PRESENT)
            out.append(self._mention(text, words, m, m.target.code, pol, None, m.confidence))
        out += self._values(text, words, value_matches, cue_matches, polarity, triggers, findings)
        out += self._scale_words(text, words, equal, cue_matches)
        return out

    def _scale_words(
        self, text: str, words: Sequence[Token], equal: Sequence[set[str]], cues: Sequence[Match]
    ) -> list[Mention]:
        """A scale denied in words ("no itching", "painless"), tied to a scale whose cue is within NEAR_CUE words.

        Other scale words ("very itchy", "came on suddenly") are vague about the number; the scale's own
        question asks for it, and the answer's words are mapped there (dialogue.plain)."""
        spans: dict[tuple[int, int], dict[str, str]] = {}
        for m in self.scale_words.find(words, equal, gaps=False):
            spans.setdefault((m.start, m.end), {})[m.target.code] = m.target.values[0]
        taken: set[int] = set()
        out = []
        for (start, end), by_code in sorted(spans.items(), key=lambda kv: (-(kv[0][1] - kv[0][0]), kv[0][0])):
            if any(k in taken for k in range(start, end)):
                continue  # a longer scale phrase already read these words ("very itchy" before "itchy")
            near = [c for c in cues if c.target.code in by_code and min(abs(c.start - end), abs(start - c.end), 0 if c.start < end and start < c.end else 99) <= NEAR_CUE]
            if not near:
                continue
            code = min(near, key=lambda c: (0 if c.start < end and start < c.end else min(abs(c.start - end), abs(start - c.end)), c.start)).target.code
            value = by_code[code]
            taken.update(range(start, end))
            if value == self.pack.finding(code).default:
                out.append(Mention(code, ABSENT, value, EXACT, (words[start].start, words[end - 1].end), text[words[start].start : words[end - 1].end], "scale"))
        return out

    def _coordinated(self, words: Sequence[Token], equal: Sequence[set[str]], selected: list[Match]) -> list[Match]:
        """A modifier shared by two joined words: "testicular pain and swelling" also says testicular swelling.

        The second word's own reading gives way when it was a bare word ("swelling") and the shared
        modifier makes it a longer term of another finding."""
        out = list(selected)
        for m in selected:
            k = m.end  # the joiner, then the second head right after it
            if m.target.kind != "finding" or m.end - m.start < 2 or m.gaps or k + 1 >= len(words) or words[k].stem not in ("and", "or"):
                continue
            lead = list(range(m.start, m.end - 1))
            for extra in (1, 2):
                tail = list(range(k + 1, min(len(words), k + 1 + extra)))
                idx = lead + tail
                hits = [h for h in self.terms.find([words[i] for i in idx], [equal[i] for i in idx], gaps=False)
                        if h.start == 0 and h.end == len(idx) and h.target.kind == "finding" and h.target.code != m.target.code]  # fmt: skip
                if not hits:
                    continue
                h = max(hits, key=lambda h: h.length)
                new = Match(k + 1, tail[-1] + 1, h.target, h.length, 0, h.fuzzy)
                clash = [o for o in out if o is not m and o.start < new.end and new.start < o.end]
                if all(o.length < new.length for o in clash):
                    out = [o for o in out if o not in clash] + [new]
                break
        # The other way round: "pain and swelling in the right knee" also says pain in the right knee.
        for m in selected:
            k = m.start - 1  # the joiner, then the first head right before it
            if m.target.kind != "finding" or m.end - m.start < 2 or k < 1 or words[k].stem not in ("and", "or"):
                continue
            if any(o.target.kind == "finding" and o.start <= k - 1 < o.end for o in out):
                continue  # the first head is read already ("chest pain and swelling in the knee")
            tail = list(range(m.start + 1, m.end))
            for extra in (1, 2):
                lead = list(range(max(0, k - extra), k))
                idx = lead + tail
                hits = [h for h in self.terms.find([words[i] for i in idx], [equal[i] for i in idx], gaps=True, no_gap=self.no_gap, light=self.light)
                        if h.start == 0 and h.end == len(idx) and h.target.kind == "finding" and h.target.code != m.target.code]  # fmt: skip
                if hits:
                    h = max(hits, key=lambda h: h.length)
                    out.append(Match(lead[0], k, h.target, h.length, h.gaps, h.fuzzy))
                    break
        return sorted(out, key=lambda m: m.start)

    def _predicates(self, words: Sequence[Token], equal: Sequence[set[str]]) -> tuple[list[Match], set[tuple[int, int]]]:
        """Two-word terms said across a linking verb ("his speech is slurred", "eyes are watery and red"), and which are denied.

        The subject is the word right before the verb; one or more describing words follow it, joined by
        "and", "or" or commas ("my throat isn't sore" is a denied sore throat)."""
        out: list[Match] = []
        denied: set[tuple[int, int]] = set()
        for j in range(1, len(words) - 1):
            if words[j].stem not in self.linking:
                continue
            k, skipped, negated = j + 1, 0, False
            while k < len(words) - 1 and skipped < 2 and (words[k].stem in self.degree or words[k].raw in self.predicate_negation):
                negated |= words[k].raw in self.predicate_negation
                k += 1
                skipped += 1
            if negated and equal[j - 1] & self.single_findings:
                continue  # "the rash is not itchy" denies the itch, not the rash: the subject is read on its own
            first = j - 1  # a later describing word's match spans itself only, so the first one's stays whole
            while k < len(words):
                hit = self._two_word_term(words, equal, k, j - 1)
                if hit:
                    target, fuzzy = hit
                    m = Match(first, k + 1, target, 2, skipped, fuzzy)
                    first = k + 2
                    out.append(m)
                    if negated:
                        denied.add((m.start, m.end))
                # "watery and red": the next describing word shares the subject.
                if k + 2 < len(words) and words[k + 1].stem in ("and", "or"):
                    k += 2
                else:
                    break
        return out, denied

    def _two_word_term(self, words: Sequence[Token], equal: Sequence[set[str]], first: int, second: int) -> tuple[Target, int] | None:
        """The two-word term whose first word is words[first] and second words[second] (said apart), and whether a word was corrected."""
        hits = [(t, int(a != words[first].stem or b != words[second].stem)) for a in equal[first] for b in equal[second] for t in self.predicate_terms.get((a, b), ())]
        return min(hits, key=lambda h: (h[1], h[0].code)) if hits else None

    def _auxiliary(self, words: Sequence[Token], equal: Sequence[set[str]]) -> tuple[list[Match], set[tuple[int, int]]]:
        """Two-word terms said with "do" between their words, and which are denied: "my chest does hurt", "my tummy doesn't hurt"."""
        out: list[Match] = []
        denied: set[tuple[int, int]] = set()
        for i in range(len(words) - 2):
            if words[i + 1].stem not in self.auxiliary:
                continue
            negated = words[i + 2].raw in self.predicate_negation
            k = i + 2 + negated
            if k >= len(words):
                continue
            hit = self._two_word_term(words, equal, i, k)
            if hit:
                target, fuzzy = hit
                out.append(Match(i, k + 1, target, 2, k - i - 1, fuzzy))
                if negated:
                    denied.add((i, k + 1))
        return out, denied

    def _double_negative(self, words: Sequence[Token], m: Match) -> Match:
        """A 'without' trigger after a negative word in the same clause, turned into a scope terminator."""
        if m.target.kind != "neg_fwd" or m.end - m.start != 1 or words[m.start].raw != "without":
            return m
        # Look back within the clause's part: up to a contrast word or a new "and I ..." clause.
        k = m.start - 1
        while k >= max(0, m.start - 14) and words[k].stem not in self.part_breaks and not (words[k].stem in self.starters and k > 0 and words[k - 1].stem == "and"):
            raw = words[k].raw.replace("'", "")
            modal_not = raw == "not" and ((k > 0 and words[k - 1].raw in self.without_modals) or (k + 1 < len(words) and words[k + 1].raw == "able"))
            if raw in self.without_leads or modal_not:
                return Match(m.start, m.end, Target("term"), m.length, m.gaps, m.fuzzy)
            k -= 1
        return m

    @staticmethod
    def _before_number(words: Sequence[Token], at: int) -> bool:
        """Whether a number follows at word `at`, after at most one light word ("a 6", "about 7", "8/10")."""
        nxt = [w.raw for w in words[at : at + 2]]
        return bool(nxt) and (nxt[0].isdigit() or (len(nxt) == 2 and nxt[0] in ("a", "an", "about", "around", "like") and nxt[1].isdigit()))

    def _taken(self, v: Match, findings: Sequence[Match]) -> bool:
        """Whether a value's words belong to a longer symptom term ("sore throat") rather than to a site or colour of it."""
        owners = {self.pack.finding(code).parent for code in self._owners_of(v)}
        return any(o.start <= v.start and v.end <= o.end and o.length > v.length and o.target.code not in owners for o in findings)

    def _owners_of(self, v: Match) -> list[str]:
        return list(v.target.owners)

    def _scopes(self, words: Sequence[Token], triggers: Sequence[Match], targets: Sequence[Match], commas: set[int]) -> dict[int, str]:
        """Polarity of each target (by start word) from the triggers around it, nearest trigger first."""
        kinds = {"neg_fwd": ABSENT, "unc_fwd": UNCERTAIN, "neg_bwd": ABSENT, "unc_bwd": UNCERTAIN}
        stops = {m.start for m in triggers if m.target.kind == "term"}
        target_starts = {m.start for m in targets}
        out: dict[int, tuple[int, str]] = {}
        for trig in triggers:
            kind = trig.target.kind
            if kind not in kinds:
                continue
            if kind.endswith("fwd"):
                k, reach = trig.end, 0
                while k < len(words) and reach < MAX_SCOPE and k not in stops:
                    # A comma carries the negation on only into a list of findings ("no fever, cough or cold");
                    # "and" also unless a new clause starts ("no fever and I have a cough").
                    if k in commas and k not in target_starts:
                        break
                    if words[k].stem == "and" and k + 1 < len(words) and words[k + 1].stem in self.starters and k + 1 not in target_starts:
                        break
                    if k in target_starts:
                        dist = k - trig.end
                        if k not in out or dist < out[k][0]:
                            out[k] = (dist, kinds[kind])
                    k += 1
                    reach += 1
            else:
                # A backward trigger ("fever: none") closes its part of the sentence: nothing it could negate follows it.
                part_end = min([c for c in commas if c > trig.start] + [len(words)])
                if any(trig.start < s < part_end for s in target_starts):
                    continue
                # ... unless the denial is that part, as in a checklist: "sore throat, absent".
                answer = trig.start in commas and trig.end == part_end and self._words_of(words, trig) in self.answer_denials
                for m in targets:
                    # Backward scope stays within its part of the sentence: "pain in my chest, maybe a 6" keeps the pain.
                    between = range(m.end, trig.start + 1)
                    if m.end <= trig.start and trig.start - m.end <= 4 and not any(k in stops or (k in commas and not (answer and k == trig.start)) for k in between):
                        dist = trig.start - m.end
                        if m.start not in out or dist < out[m.start][0]:
                            out[m.start] = (dist, kinds[kind])
        return {k: pol for k, (_, pol) in out.items()}

    @staticmethod
    def _words_of(words: Sequence[Token], m: Match) -> tuple[str, ...]:
        return tuple(w.raw.replace("'", "") for w in words[m.start : m.end])

    def _mention(self, text: str, words: Sequence[Token], m: Match, code: str, polarity: str, value: Any, confidence: float) -> Mention:
        start, end = words[m.start].start, words[m.end - 1].end
        method = "fuzzy" if m.fuzzy else "lexicon"
        return Mention(code, polarity, value, confidence, (start, end), text[start:end], method)

    def _side(self, words: Sequence[Token], m: Match) -> str | None:
        """'left', 'right' or 'both' when said within a few words of a body site."""
        lo, hi = max(0, m.start - SIDE_WINDOW), min(len(words), m.end + SIDE_WINDOW)
        found = set()
        for side, phrases in self.sides.items():
            for k in list(range(lo, m.start)) + list(range(m.end, hi)):
                if any(tuple(w.stem for w in words[k : k + len(p)]) == p for p in phrases):
                    found.add(side)
        if "both" in found or {"left", "right"} <= found:
            return "both"
        return next(iter(found), None)

    def _pick_side(self, owner: str, values: tuple[str, ...], side: str | None) -> tuple[tuple[str, ...], bool]:
        """The values of a site for the side said; (values, sure). A sided pair without a side is unsure."""
        if len(values) != 2:
            return values, True
        f = self.pack.finding(owner)
        labels = {v: f.label_of(v) for v in values}
        right = [v for v in values if labels[v].endswith("(R)")]
        left = [v for v in values if labels[v].endswith("(L)")]
        if not (right and left):
            return values, True
        if side == "left":
            return tuple(left), True
        if side == "right":
            return tuple(right), True
        return values, side == "both"

    def _values(
        self,
        text: str,
        words: Sequence[Token],
        matches: Sequence[Match],
        cues: Sequence[Match],
        polarity: dict[int, str],
        triggers: Sequence[Match],
        findings: Sequence[Match] = (),
    ) -> list[Mention]:
        """Values of list findings (sites, pain character, rash colour, travel region), tied to the nearest cue."""
        out = []
        for m in matches:
            candidates = self._owners_of(m)
            # A site that is itself a symptom word ("headache", "toothache") belongs to that symptom's first child.
            parents = {o.target.code for o in findings if o.start <= m.start and m.end <= o.end}
            own = [code for code in candidates if self.pack.finding(code).parent in parents]
            # The symptom a value describes is its cue too: "throbbing toothache", "pressing headache".
            parent_of = {code: self.pack.finding(code).parent for code in candidates}
            named = [Match(o.start, o.end, Target("cue", code), o.length, o.gaps, o.fuzzy)
                     for o in findings if abs(o.start - m.start) <= NAMED_CUE_REACH for code, parent in parent_of.items() if parent == o.target.code]  # fmt: skip
            owner = own[0] if own else self._nearest_cue(m, [c for c in cues if c.target.code in candidates] + named)
            if owner is None:
                continue
            if polarity.get(m.start) == ABSENT:
                continue  # "no pain in my back" says nothing about where a pain is
            f = self.pack.finding(owner)
            values, sure = self._pick_side(owner, m.target.values, self._side(words, m))
            if f.kind == CATEGORICAL:
                values = values[:1]
            conf = m.confidence if sure else min(m.confidence, UNSIDED)
            value: Any = values[0] if f.kind == CATEGORICAL else tuple(sorted(values))
            out.append(self._mention(text, words, m, owner, polarity.get(m.start, PRESENT), value, conf))
        # A denied cue that belongs to one finding only ("I haven't travelled", "it doesn't radiate") gives its default.
        for c in cues:
            f = self.pack.finding(c.target.code)
            phrase = tuple(w.stem for w in words[c.start : c.end])
            if f.default is None or c.target.code not in self.lexicon.values or len(self.cue_owners.get(phrase, ())) != 1:
                continue
            if len(phrase) == 1 and phrase[0] in self.function_words:
                continue  # "doesn't respond, like absences": a function word is too weak a cue to deny by
            if any(o.start <= c.start and c.end <= o.end for o in findings):
                continue  # "no pain": the pain itself is denied, which says it all
            if self._scopes(words, triggers, [c], set()).get(c.start) == ABSENT:
                value: Any = f.default if f.kind == CATEGORICAL else (f.default,)
                out.append(self._mention(text, words, c, f.code, ABSENT, value, c.confidence))
        return out

    @staticmethod
    def _nearest_cue(m: Match, cues: Sequence[Match]) -> str | None:
        """The finding whose cue is nearest before the value mention, else nearest after."""
        before = [c for c in cues if c.end <= m.start or (c.start < m.start and c.end <= m.end)]
        if before:
            return max(before, key=lambda c: (c.end, c.length)).target.code
        after = [c for c in cues if c.start >= m.end or c.start >= m.start]
        if after:
            return min(after, key=lambda c: (c.start, -c.length)).target.code
        return None

    def _numbers(self, text: str, norm: str, tokens: Sequence[Token]) -> list[Mention]:
        """Findings decided by numbers: a 0–10 scale score tied to its cue, a temperature against the fever threshold."""
        out = []
        for clause in _clauses(tokens):
            if not clause:
                continue
            lo, hi = clause[0].start, clause[-1].end
            seg = norm[lo:hi]
            scored = list(re.finditer(r"\b(\d{1,2})(?:\.\d)?\s*(?:/|out of|outta|on a scale of)\s*10\b", seg))
            # "maybe a 6", "I'd say 9": a bare score counts only where a scale's cue word is in the same clause.
            scored += [m for m in re.finditer(_BARE_SCORE, seg) if not any(o.start() <= m.start() < o.end() for o in scored)]
            for m in scored:
                score = int(m.group(1))
                if score > 10:
                    continue
                code = self._scale_for(clause, lo + m.start())
                if code is not None:
                    span = (lo + m.start(), lo + m.end())
                    out.append(Mention(code, PRESENT, str(score), EXACT, span, text[span[0] : span[1]], "number"))
        temp = self.lexicon.measurements.get("temperature")
        if temp is not None:
            for m in _TEMPERATURE.finditer(norm):
                if _AGE_BEFORE.search(norm, 0, m.start("num")) and not (m.group("deg") or m.group("unit")):
                    continue  # "I'm 35", "aged 38": an age, unless a degree sign or unit says otherwise
                celsius = to_celsius(m.group("num"), m.group("unit"), bool(m.group("cue") or m.group("deg")))
                if celsius is None:
                    continue
                got = temp.decide(celsius)
                pol = UNCERTAIN if got is None else PRESENT if got else ABSENT
                out.append(Mention(temp.finding, pol, None, EXACT, (m.start("num"), m.end()), text[m.start("num") : m.end()], "number"))
        return out

    def _normal_states(self, text: str, norm: str, tokens: Sequence[Token], relation: str | None) -> list[Mention]:
        """Findings denied by saying a body part or function is fine ("breathing is fine", "normal appetite")."""
        if self._normal_rx is None:
            return []
        out = []
        for clause in _clauses(tokens):
            words = [t for t in clause if t.is_word]
            if not words or self._about_relative(words, relation):
                continue
            lo, hi = clause[0].start, clause[-1].end
            for m in self._normal_rx.finditer(norm, lo, hi):
                before = re.findall(r"[a-z']+", norm[max(lo, m.start() - 12) : m.start()])[-1:]
                # "not normal appetite", "fine until I walk": a hedge or an exception, not a denial.
                if before and before[0] in ("not", "never", "hardly", "barely", "isn't", "isnt") or self._exception_rx.match(norm, m.end(), hi):
                    continue
                subject = re.sub(r"\s+", " ", m.group("s1") or m.group("s2"))
                for code in self.lexicon.normal_states[subject]:
                    out.append(Mention(code, ABSENT, None, NORMAL_STATE, (m.start(), m.end()), text[m.start() : m.end()], "normal"))
        return out

    def _scale_for(self, clause: Sequence[Token], at: int) -> str | None:
        words = [t for t in clause if t.is_word]
        cues = [c for c in self.cues.find(words, [{t.stem} for t in words], gaps=False) if c.target.code in self.lexicon.scales]
        if not cues:
            return None
        # The cue next to the number wins ("itching is 3/10, pain 8/10"); among cues shared by several scales
        # ("pain"), the lexicon's first scale (pain intensity) is the plain reading of a bare "7/10".
        order = {code: i for i, code in enumerate(self.lexicon.scales)}
        idx = sum(1 for w in words if w.start < at)  # the number's place among the words
        near = [c for c in cues if min(abs(c.start - idx), abs(c.end - idx)) <= NEAR_CUE]
        if not near:
            # No cue beside it ("pain started around my belly button …, it's 7/10"): a bare score is the
            # pain's intensity, the reading people mean, whichever other scale's cue the clause holds.
            return min(cues, key=lambda c: order[c.target.code]).target.code
        return min(near, key=lambda c: (min(abs(words[c.start].start - at), abs(words[c.end - 1].end - at)), order[c.target.code])).target.code

    def _merge(self, mentions: Sequence[Mention], reading: Reading) -> list[Mention]:
        """One mention per finding: values united, the surest polarity kept (present wins a tie: safety first)."""
        rank = {PRESENT: 2, UNCERTAIN: 1, ABSENT: 0}
        # "Breathing is fine, but I get short of breath on stairs": a body part said to be fine while one of
        # the findings it would deny (or one that implies them) is reported is no denial at all.
        reported = {m.code for m in mentions if m.method != "normal" and m.polarity != ABSENT}
        reported |= {i for code in reported for i in (*self.lexicon.implies.get(code, ()), self.pack.finding(code).parent) if i}
        contradicted = {m.span for m in mentions if m.method == "normal" and m.code in reported}
        mentions = [m for m in mentions if not (m.method == "normal" and m.span in contradicted)]
        measured = {m.code for m in mentions if m.method == "number"}  # a measured number beats words about it
        best: dict[str, Mention] = {}
        for m in mentions:
            if m.code in measured and m.method != "number" and self.pack.finding(m.code).kind == "binary":
                continue
            old = best.get(m.code)
            if old is None:
                best[m.code] = m
                continue
            if isinstance(old.value, tuple) and isinstance(m.value, tuple) and old.polarity == m.polarity:
                merged = tuple(sorted(set(old.value) | set(m.value)))
                best[m.code] = Mention(m.code, old.polarity, merged, min(old.confidence, m.confidence), old.span, old.text, old.method)
                continue
            if old.polarity != m.polarity:
                reading.notes.append(f"{m.code} was both {old.polarity} and {m.polarity} in the text; kept the {'present' if PRESENT in (old.polarity, m.polarity) else 'surer'} one")
            if (m.confidence, rank[m.polarity]) > (old.confidence, rank[old.polarity]):
                best[m.code] = m
        # A score alone never implies what it scores: "maybe a 6" is no rash unless a rash was said.
        for m in list(best.values()):
            parent = self.pack.finding(m.code).parent
            if m.method == "number" and parent and (parent not in best or best[parent].polarity != PRESENT):
                del best[m.code]
        # A site or character of a pain implies the pain; of a rash, the rash; and the lexicon's own implications
        # ("coughing up blood" is a cough).
        for m in list(best.values()):
            if m.polarity != PRESENT:
                continue
            parent = self.pack.finding(m.code).parent
            for implied in ((parent,) if parent else ()) + self.lexicon.implies.get(m.code, ()):
                if implied not in best:
                    best[implied] = Mention(implied, PRESENT, None, m.confidence, m.span, m.text, m.method)
        return sorted(best.values(), key=lambda m: (m.span[0], m.code))


def _normal_state_patterns(lexicon: Lexicon, lang: dict[str, Any]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """Regexes for '<subject> is fine' / 'normal <subject>' over the pack's subjects, and for an exception after it."""
    words = lang.get("normal_states")
    if not lexicon.normal_states or not words:
        return None, None

    def alt(phrases: Iterable[str]) -> str:
        return "|".join(r"\s+".join(map(re.escape, p.split())) for p in sorted(set(phrases), key=len, reverse=True))

    subjects = alt(lexicon.normal_states)
    owners = alt(lang["possessives"] + ["the"])
    rx = re.compile(
        rf"\b(?P<s1>{subjects})(?:'s|s|es)?\s*:?\s+(?:(?:{alt(words['fillers'])})\s+)*(?:{alt(words['states'])})\b"
        rf"|\b(?:{alt(words['before'])})\s+(?:(?:{owners})\s+)?(?P<s2>{subjects})(?:'s|s|es)?\b"
    )
    exceptions = re.compile(rf"[\s,:-]*(?:[a-z']+\s+){{0,2}}(?:{alt(words['exceptions'])})\b")
    return rx, exceptions


def _lexicon_texts(lexicon: Lexicon) -> Iterable[str]:
    for ts in lexicon.findings.values():
        yield from ts.terms
    for vl in (*lexicon.values.values(), *lexicon.scales.values()):
        yield from vl.cues
        for ts in vl.sets:
            yield from ts.terms


def _raw_phrase(text: str) -> tuple[str, ...]:
    return tuple(t.raw.replace("'", "") for t in tokenize(normalise(text)) if t.is_word)


def _undoubled(typed: str, word: str) -> bool:
    """Whether `typed` is `word` with one of its doubled letters written once ("chils" for "chills")."""
    return len(word) == len(typed) + 1 and any(word[i] == word[i + 1] and word[:i] + word[i + 1 :] == typed for i in range(len(word) - 1))


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _inside_longer(m: Match, others: Sequence[Match]) -> bool:
    return any(o.start <= m.start and m.end <= o.end and o.length > m.length for o in others)


def _select(matches: Iterable[Match]) -> list[Match]:
    """Non-overlapping matches, longest and tightest first; of two as long, the one covering more of the text.

    ("tingling in my feet" covers more than "tingling in my", though both keep two content words.)"""
    chosen: list[Match] = []
    taken: set[int] = set()
    for m in sorted(matches, key=lambda m: (-m.length, m.fuzzy, m.gaps, -(m.end - m.start), m.start, m.target.kind, m.target.code, m.target.values)):
        span = set(range(m.start, m.end))
        if span & taken:
            continue
        chosen.append(m)
        taken |= span
    return sorted(chosen, key=lambda m: m.start)


def _clauses(tokens: Sequence[Token]) -> list[list[Token]]:
    out: list[list[Token]] = [[]]
    for t in tokens:
        if t.raw in _CLAUSE_BREAK:
            out.append([])
        else:
            out[-1].append(t)
    return [c for c in out if c]


def check_text(text: object, max_chars: int = MAX_CHARS) -> None:
    """Refuse what is not readable patient text: not a string, empty, over the limit, or binary."""
    if not isinstance(text, str):
        raise InputError("text must be a string")
    if not text.strip():
        raise InputError("the text is empty; describe the symptoms in a few words")
    if len(text) > max_chars:
        raise InputError(f"the text is {len(text):,} characters; the limit is {max_chars:,} — please shorten it")
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t")
    if "\x00" in text or controls > max(2, len(text) // 20):
        raise InputError("the text looks binary, not written words")


_BARE_SCORE = re.compile(
    r"\b(?:a|say|about|around|is|at|maybe|like|solid|probably)\s+(\d{1,2})\b(?![.,]?\d)"
    r"(?!\s*(?:%|percent|years?|yrs?|days?|hours?|hrs?|weeks?|months?|kg|kilos?|lbs?|pounds?|cm|am|pm|times|°|degrees|min|minutes|o'clock))"
)

_TEMPERATURE = re.compile(
    # The cue stays in its sentence: "I have a fever. I'm 35" gives no temperature.
    r"(?P<cue>(?:temp(?:erature)?|fever|thermometer|febrile|pyrexia)[^\d.!?;\n]{0,20}?)?"
    r"\b(?P<num>\d{2,3}(?:[.,]\d{1,2})?)\s*(?P<deg>°|º|degrees?|deg)?\s*(?P<unit>c|f|celsius|centigrade|fahrenheit)?\b"
    # Not an age, a weight or a time: "a fever, I'm a 35 year old woman", "35 yo", "for 38 hours".
    r"(?![-\s]*(?:years?|yrs?|y/?o\b|months?|mos?\b|weeks?|wks?\b|days?|hours?|hrs?\b|minutes?|mins?\b|kg|kilos?|lbs?|pounds?|%|m\b|f\b(?=\s*(?:here|,|$))))"
)
_AGE_BEFORE = re.compile(r"(?:\b(?:i'm|i am|im|aged?|he's|she's|he is|she is)\s+(?:a\s+|an\s+)?|\bage\s*:?\s*)$")


def to_celsius(number: str, unit: str | None, cued: bool) -> float | None:
    """A body temperature in °C from a number and optional unit; None when it is not a plausible temperature."""
    value = float(number.replace(",", "."))
    if unit in ("f", "fahrenheit") or (unit is None and cued and 93 <= value <= 110):
        value = (value - 32) * 5 / 9
    elif unit is None and not cued:
        return None
    return value if 33.0 <= value <= 44.0 else None


_AGE_PATTERNS = (
    re.compile(r"\b(?P<n>\d{1,3}(?:\.\d)?|[a-z]+(?:[- ][a-z]+)?)[- ]?(?P<unit>years?|yrs?|months?|mos?|weeks?|wks?|days?)[- ]old\b"),
    re.compile(r"\b(?P<n>\d{1,3})\s*(?P<unit>yo|y/o|y\.o\.|yrs?|years?)\b(?!\s*(?:ago|of|with|since))"),
    re.compile(r"\baged?\s+(?P<n>\d{1,3})\b"),
    re.compile(r"\b(?:i am|i'm|im|i'm now|he is|she is|he's|she's|they're)\s+(?P<n>\d{1,3})\b(?!\s*(?:kg|kilos?|lbs?|pounds?|%|cm|weeks? pregnant|times|days|hours|minutes))"),
    re.compile(r"\b(?P<n>\d{1,3})\s*(?P<sex>[mf])\b"),
    re.compile(r"^\W*(?P<n>\d{1,3})\s*(?:,|/|\s)\s*(?:y\s*,?\s*)?(?:male|female|man|woman|m|f)\b"),
    re.compile(r"\b(?P<n>\d{1,2})\s*(?P<unit>m|mo|mth|mths)\s*old\b"),
)


def _number(word: str, lang: dict[str, Any]) -> float | None:
    word = word.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", word):
        return float(word)
    total = 0.0
    for part in re.split(r"[- ]", word):
        if part not in lang["numbers"]:
            return None
        total += lang["numbers"][part]
    return total


def read_demographics(norm: str, reading: Reading, lang: dict[str, Any]) -> None:
    """Age (years, months, weeks, days), sex, who is writing, pregnancy and how long it has lasted, into `reading`."""
    for pat in _AGE_PATTERNS:
        m = pat.search(norm)
        if not m:
            continue
        n = _number(m.group("n"), lang)
        if n is None:
            continue
        unit = (m.groupdict().get("unit") or "y")[:1]
        years = n / 12 if unit == "m" else n / 52.18 if unit == "w" else n / 365.25 if unit == "d" else n
        if 0 <= years <= 120:
            reading.age = round(years, 2)
            sex = m.groupdict().get("sex")
            if sex:
                reading.sex = sex.upper()
            break
    words = re.findall(r"[a-z']+", norm)
    relation = _patient(words, lang)
    if relation is not None:
        reading.proxy = True
        reading.relation = relation[0] or None
        reading.sex = reading.sex or relation[1]
        if reading.sex is None:
            pron = [lang["pronouns"][w] for w in words if w in lang["pronouns"]]
            if pron and all(p == pron[0] for p in pron):
                reading.sex = pron[0]
        if reading.age is None:
            m = re.search(r"\((\d{1,3})\)|\b(?:is|aged|age)\s+(\d{1,3})\b(?!\s*(?:kg|kilos?|lbs?|pounds?|%|cm|degrees|°|weeks? pregnant|days?|hours?|minutes?|times|/|out of))", norm)
            if m:
                reading.age = float(m.group(1) or m.group(2))
            m = None if reading.age is not None else re.search(r"\b(\d{1,2})\s*(months?|mos?|weeks?|wks?|days?)\b(?!\s*ago)", norm)
            if m and not re.search(r"\b(?:for|past|last|since|over|about|in)\s+$", norm[: m.start()]):
                n, unit = float(m.group(1)), m.group(2)[0]
                reading.age = round(n / 12 if unit == "m" else n / 52.18 if unit == "w" else n / 365.25, 2)
    else:
        m = re.search(r"\b(?:i am|i'm|im)\s+(?:a|an)\s+(?:\d+\s*(?:year|yr)s?[- ]old\s+|young\s+|old\s+|older\s+)?(\w+)", norm)
        if m and m.group(1) in lang["self_sex"]:
            reading.sex = reading.sex or lang["self_sex"][m.group(1)]
        m = re.search(r"\b(?:\d+|\w+)[- ](?:year|yr)s?[- ]old\s+(?:[a-z]+\s+)?(woman|female|lady|girl|man|male|guy|boy)\b", norm) or re.search(r"(?:^|[,;(]\s*)(male|female|man|woman)\b", norm)
        if m:
            reading.sex = reading.sex or lang["self_sex"][m.group(1)]
    if reading.sex is None and relation is None and reading.age is not None and reading.age < 16 and not set(words) & set(lang["first_person"]):
        # "my 2 year old … pulling at her ear": a child's age with third-person pronouns that all agree.
        pron = [lang["pronouns"][w] for w in words if w in lang["pronouns"]]
        if pron and all(p == pron[0] for p in pron):
            reading.sex = pron[0]
    if reading.sex is None and (relation is None or relation[1] is None):
        for sex, sex_words in lang["sex_words"].items():
            if sex in ("F", "M") and any(w in sex_words for w in words):
                reading.sex = sex
                break
    if re.search(r"\bpregnan(?:t|cy)\b", norm) and not re.search(r"\b(?:not|n't|never)\s+(?:\w+\s+)?pregnant\b", norm):
        reading.pregnant = True
    reading.duration_days = _duration(norm, lang)


def _patient(words: Sequence[str], lang: dict[str, Any]) -> tuple[str, str | None] | None:
    """(relation, sex) when the text is about someone else than the writer, read from its first subject; else None.

    The relation is "" when only a pronoun says so ("she has…"): a parent for a child, a clinician for an adult.

    The first of "I / me", "he / she" or a kinship word ("my son", "baby", "dad is 75") decides; a
    relative who only reports ("my partner says I snore") is not the patient.
    """
    kin = {**lang["kin"]["adult"], **lang["kin"]["child"]}
    first_person, reporting = set(lang["first_person"]), set(lang["reporting_verbs"])
    pronouns = lang["pronouns"]
    for i, w in enumerate(words):
        if w in first_person:
            return None
        if w in ("he", "she", "he's", "she's", "hes", "shes"):
            return ("", pronouns[w])  # only a third person: someone writes for the patient (who, the age says)
        base = w[:-1] if w.endswith("s") and w[:-1] in kin else w
        if base in kin:
            if any(x in reporting for x in words[i + 1 : i + 3]):
                continue
            return (base, kin[base])
    return None


def _duration(norm: str, lang: dict[str, Any]) -> float | None:
    units = "|".join(sorted(map(re.escape, lang["time_units_days"]), key=len, reverse=True))
    m = re.search(rf"\b(?:for|past|last|over|about|almost|nearly)\s+(?:the\s+)?(?:(?P<n>\d+(?:\.\d+)?|[a-z]+(?: of)?)\s+)?(?P<unit>{units})s?\b", norm)
    if m is None:
        m = re.search(rf"\b(?P<n>\d+(?:\.\d+)?|[a-z]+)\s+(?P<unit>{units})s?\s+ago\b", norm)
    if m is not None:
        n = _number(m.group("n"), lang) if m.group("n") else 1.0
        if n is not None:
            return round(n * lang["time_units_days"][m.group("unit")], 3)
    m = re.search(r"\bsince\s+(.{0,30})", norm)
    if m:
        for phrase, days in sorted(lang["since_days"].items(), key=lambda kv: -len(kv[0])):
            if m.group(1).startswith(phrase):
                return float(days)
    return None


_READERS: dict[tuple[Pack, str, bool], Reader] = {}


def reader_for(pack: Pack, lang: str = "en", semantic: bool | None = None) -> Reader:
    """The compiled reader of a pack (built once, on first use); semantic=None uses embeddings when switched on by env."""
    if semantic is None:
        semantic = os.environ.get("DIAGNOSTICIAN_SEMANTIC", "").strip() == "1"
    key = (pack, lang, semantic)
    if key not in _READERS:
        _READERS[key] = Reader(pack, load_lexicon(pack, lang), language(lang), semantic=semantic)
    return _READERS[key]


def read_text(pack: Pack, text: str, max_chars: int = MAX_CHARS) -> Reading:
    """What a patient's text says, as findings of `pack` (see Reader.read)."""
    return reader_for(pack).read(text, max_chars)


def mentions_to_enter(reading: Reading, threshold: float = CONFIRM_BELOW) -> tuple[list[Mention], list[Mention]]:
    """Split mentions into (sure enough to enter, to confirm with the patient first)."""
    sure = [m for m in reading.mentions if m.confidence >= threshold and m.polarity != UNCERTAIN]
    doubt = [m for m in reading.mentions if m not in sure]
    return sure, doubt
