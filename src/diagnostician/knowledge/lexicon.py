"""A pack's lay-language lexicon: the words patients use for each finding and value, with their source."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diagnostician.errors import PackError
from diagnostician.knowledge.schema import BINARY, Pack

LEXICON_FORMAT = "diagnostician-lexicon/1"


@dataclass(frozen=True)
class TermSet:
    """Lay terms that name one finding (binary) or some values of a finding (value codes), with their source."""

    terms: tuple[str, ...]
    source: str
    values: tuple[str, ...] = ()
    value: str | None = None  # scale words: the one value they stand for


@dataclass(frozen=True)
class ValueLexicon:
    """Terms for the values of one multi-choice or categorical finding, and the cue words that tie a mention to it."""

    code: str
    cues: tuple[str, ...]
    sets: tuple[TermSet, ...]


@dataclass(frozen=True)
class Measurement:
    """A measured number that decides a finding: a threshold with its source (e.g. temperature → fever, pulse → fast heartbeat).

    A high-side rule has present_at_or_above / absent_below, a low-side one present_below /
    absent_at_or_above; between the two thresholds the number decides nothing. `quantity` names what
    is measured (the language file has its words), `min_age` the youngest age in years the
    thresholds hold for (children's normal pulse and breathing rates are higher)."""

    name: str
    finding: str
    present_at_or_above: float | None
    absent_below: float | None
    unit: str
    source: str
    present_below: float | None = None
    absent_at_or_above: float | None = None
    quantity: str = "temperature"
    min_age: float = 0.0

    def decide(self, x: float) -> bool | None:
        """Present (True), absent (False) or undecided (None) for a measured value."""
        if self.present_at_or_above is not None:
            return True if x >= self.present_at_or_above else False if self.absent_below is not None and x < self.absent_below else None
        if self.present_below is not None:
            return True if x < self.present_below else False if self.absent_at_or_above is not None and x >= self.absent_at_or_above else None
        return None


@dataclass(frozen=True)
class Lexicon:
    """Everything the free-text reader needs from a pack, in one validated object."""

    pack: str
    language: str
    review_status: str
    sources: dict[str, str]
    findings: dict[str, TermSet]
    values: dict[str, ValueLexicon]
    scales: dict[str, ValueLexicon]
    measurements: dict[str, Measurement] = field(default_factory=dict)
    implies: dict[str, tuple[str, ...]] = field(default_factory=dict)  # finding → findings its report presupposes
    # True when every implication only specifies its broader finding ("sharp chest pain" of "chest pain"),
    # rather than adding to it ("coughing up blood" to "cough"): then a text naming only the broader
    # finding leaves the narrower one open, not denied.
    characterises: bool = False
    # Phrases that name something else although they contain a finding's term ("hay fever" is no fever).
    blocked: tuple[str, ...] = ()
    # A body part or function said to be fine ("breathing is fine", "appetite normal") → the findings that denies.
    normal_states: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _terms(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(t, str) and t.strip() for t in raw):
        raise PackError(f"lexicon {where}: 'terms' must be a list of non-empty strings")
    return tuple(t.strip().lower() for t in raw)


def _source(raw: Any, sources: dict[str, str], where: str) -> str:
    text = str(raw or "")
    keys = [part.strip().split(":")[0].strip() for part in text.split(";") if part.strip()]
    if not keys or any(k not in sources for k in keys):
        raise PackError(f"lexicon {where}: source {text!r} must name one of {sorted(sources)}")
    return text


def _blocked(raw: Any, sources: dict[str, str]) -> tuple[str, ...]:
    if not raw:
        return ()
    if not isinstance(raw, dict):
        raise PackError("lexicon blocked: an object with 'source' and 'terms' expected")
    _source(raw.get("source"), sources, "blocked")
    return _terms(raw.get("terms"), "blocked")


def _normal_states(raw: Any, sources: dict[str, str], pack: Pack) -> dict[str, tuple[str, ...]]:
    if not raw:
        return {}
    if not isinstance(raw, dict) or not isinstance(raw.get("entries"), list):
        raise PackError("lexicon normal_states: an object with 'source' and 'entries' expected")
    _source(raw.get("source"), sources, "normal_states")
    index = pack.finding_index
    out: dict[str, tuple[str, ...]] = {}
    for i, entry in enumerate(raw["entries"]):
        where = f"normal_states entries[{i}]"
        if not isinstance(entry, dict) or not str(entry.get("basis") or "").strip():
            raise PackError(f"lexicon {where}: needs 'subjects', 'denies' and a 'basis'")
        denies = entry.get("denies")
        if not isinstance(denies, list) or not denies or any(c not in index or pack.findings[index[c]].kind != BINARY for c in denies):
            raise PackError(f"lexicon {where}: 'denies' must list yes/no findings of pack {pack.name}")
        for subject in _terms(entry.get("subjects"), where):
            if subject in out:
                raise PackError(f"lexicon {where}: subject {subject!r} is listed twice")
            out[subject] = tuple(str(c) for c in denies)
    return out


def parse_lexicon(data: Any, pack: Pack) -> Lexicon:
    """Validate lexicon JSON against the pack (every code and value must exist) and build a Lexicon."""
    if not isinstance(data, dict) or data.get("format") != LEXICON_FORMAT:
        raise PackError(f"lexicon: format {LEXICON_FORMAT} expected")
    sources = {str(k): str(v) for k, v in (data.get("sources") or {}).items()}
    index = pack.finding_index
    findings: dict[str, TermSet] = {}
    for code, entry in (data.get("findings") or {}).items():
        if code not in index or pack.findings[index[code]].kind != BINARY:
            raise PackError(f"lexicon findings: {code} is not a yes/no finding of pack {pack.name}")
        findings[code] = TermSet(_terms(entry.get("terms"), code), _source(entry.get("source"), sources, code))

    def value_sets(code: str, entry: dict[str, Any], key: str) -> tuple[TermSet, ...]:
        allowed = set(pack.findings[index[code]].values)
        out = []
        for i, raw in enumerate(entry.get(key) or []):
            where = f"{code} {key}[{i}]"
            vals = tuple(str(v) for v in raw.get("values", []))
            one = raw.get("value")
            if any(v not in allowed for v in vals) or (one is not None and str(one) not in allowed) or (not vals and one is None):
                raise PackError(f"lexicon {where}: value codes must belong to {code}")
            out.append(TermSet(_terms(raw.get("terms"), where), _source(raw.get("source") or entry.get("source"), sources, where), vals, None if one is None else str(one)))
        return tuple(out)

    raw_values = data.get("values") or {}
    values: dict[str, ValueLexicon] = {}
    for code, entry in raw_values.items():
        if code not in index or pack.findings[index[code]].kind == BINARY:
            raise PackError(f"lexicon values: {code} is not a list finding of pack {pack.name}")
        if "use" in entry:
            other = str(entry["use"])
            if other not in raw_values or "use" in raw_values[other]:
                raise PackError(f"lexicon values {code}: 'use' must name an entry with its own sets")
            if set(pack.findings[index[other]].values) != set(pack.findings[index[code]].values):
                raise PackError(f"lexicon values {code}: {other} has other values")
            sets = value_sets(other, raw_values[other], "sets")
        else:
            sets = value_sets(code, entry, "sets")
        values[code] = ValueLexicon(code, _terms(entry.get("cues", []), code) if entry.get("cues") else (), sets)
    scales: dict[str, ValueLexicon] = {}
    for code, entry in (data.get("scales") or {}).items():
        if code not in index or pack.findings[index[code]].kind == BINARY:
            raise PackError(f"lexicon scales: {code} is not a scale of pack {pack.name}")
        words = value_sets(code, {**entry, "sets": [{**w, "source": w.get("source", entry.get("source"))} for w in entry.get("words", [])]}, "sets")
        scales[code] = ValueLexicon(code, _terms(entry.get("cues", []), code) if entry.get("cues") else (), words)
    measurements: dict[str, Measurement] = {}
    for name, m in (data.get("measurements") or {}).items():
        if m.get("finding") not in index:
            raise PackError(f"lexicon measurements {name}: unknown finding {m.get('finding')!r}")
        try:
            high, low = "present_at_or_above" in m, "present_below" in m
            if high == low:
                raise ValueError("needs exactly one of present_at_or_above (with absent_below) or present_below (with absent_at_or_above)")
            num = lambda key: None if m.get(key) is None else float(m[key])  # noqa: E731
            measurements[name] = Measurement(
                name, str(m["finding"]), num("present_at_or_above"), num("absent_below"), str(m["unit"]), _source(m.get("source"), sources, name),
                num("present_below"), num("absent_at_or_above"), str(m.get("quantity", name)), float(m.get("min_age", 0)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise PackError(f"lexicon measurements {name}: {exc}") from exc
    implies: dict[str, tuple[str, ...]] = {}
    raw_implies = data.get("implies") or {}
    if raw_implies:
        _source(raw_implies.get("source"), sources, "implies")
        for code, targets in (raw_implies.get("findings") or {}).items():
            if code not in index or not isinstance(targets, list) or any(t not in index or pack.findings[index[t]].kind != BINARY for t in targets):
                raise PackError(f"lexicon implies {code}: must name findings of pack {pack.name} that imply yes/no findings")
            implies[code] = tuple(str(t) for t in targets)
    return Lexicon(
        pack=pack.name,
        language=str(data.get("language", "en")),
        review_status=str(data.get("review_status", "")),
        sources=sources,
        findings=findings,
        values=values,
        scales=scales,
        measurements=measurements,
        implies=implies,
        characterises=bool(raw_implies.get("kind") == "characterises"),
        blocked=_blocked(data.get("blocked"), sources),
        normal_states=_normal_states(data.get("normal_states"), sources, pack),
    )


_CACHE: dict[tuple[Pack, str], Lexicon] = {}  # packs hash by identity


def load_lexicon(pack: Pack, language: str = "en") -> Lexicon:
    """The pack's lexicon for a language (cached per pack); PackError when the pack ships none."""
    key = (pack, language)
    if key not in _CACHE:
        path = Path(pack.root or ".") / f"lexicon_{language}.json"
        if not path.exists():
            raise PackError(f"pack {pack.name} has no {language} lexicon ({path.name}); free-text intake needs one")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise PackError(f"lexicon is not valid JSON: {path}: {exc}") from exc
        _CACHE[key] = parse_lexicon(data, pack)
    return _CACHE[key]
