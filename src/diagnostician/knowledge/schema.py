"""Knowledge-pack format: findings, conditions, red flags and the likelihood arrays, loaded from data files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from diagnostician.errors import PackError, UnknownFindingError

PACK_FORMAT = "diagnostician-pack/1"

BINARY, CATEGORICAL, MULTI = "binary", "categorical", "multi"
KINDS = (BINARY, CATEGORICAL, MULTI)

# Triage levels, most urgent first; their index is the urgency rank used everywhere.
TRIAGE_LEVELS = ("emergency", "urgent_24h", "see_doctor", "self_care")
TRIAGE_TEXT = {
    "emergency": "Seek emergency care now (call your local emergency number).",
    "urgent_24h": "See a doctor within 24 hours.",
    "see_doctor": "Book an appointment with a doctor in the coming days.",
    "self_care": "Self-care at home is likely enough; see a doctor if it gets worse or does not improve.",
}


@dataclass(frozen=True)
class Finding:
    """A symptom, sign or antecedent the engine can ask about."""

    code: str
    kind: str
    question: str
    values: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    default: str | None = None
    antecedent: bool = False
    parent: str | None = None
    source: str = ""
    age_range: tuple[float, float] | None = None  # the age decides it: present for ages in [low, high) years, never asked
    stage: str = "history"  # "history" (asked), "exam" or "test": results entered once known, never asked

    def absent_value(self) -> bool | str | tuple[str, ...]:
        """The answer that reports this finding absent: no, the default value, or the default alone."""
        if self.kind == BINARY:
            return False
        return self.default if self.kind == CATEGORICAL else (self.default,)  # type: ignore[return-value]

    def label_of(self, value: str) -> str:
        """Human label of one value code."""
        try:
            return self.labels[self.values.index(value)]
        except ValueError as exc:
            raise UnknownFindingError(f"{self.code} has no value {value!r}") from exc


@dataclass(frozen=True)
class Condition:
    """A condition of the differential with its clinical attributes."""

    code: str
    name: str
    icd10: str
    severity: int
    triage: str
    prior: float
    symptoms: tuple[str, ...] = ()
    antecedents: tuple[str, ...] = ()
    source: str = ""
    system: str = ""  # body system / department
    synonyms: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()  # ids of the pack's test catalogue that bear on this condition
    rationale: str = ""  # why this triage level (curated packs)


@dataclass(frozen=True)
class RedFlag:
    """A danger sign: a finding (optionally with values) that demands urgent advice whatever the posterior."""

    id: str
    when: tuple[tuple[str, tuple[str, ...]], ...]  # all of (finding, values; empty = present)
    level: str
    advice: str
    basis: str
    ask_when: tuple[str, ...] = ()  # findings whose presence makes the inquiry screen for this flag at once


@dataclass(frozen=True)
class Test:
    """An examination or test the pack can suggest, with the conditions it bears on."""

    id: str
    name: str
    kind: str  # "exam", "lab", "imaging", "procedure"
    source: str = ""
    generic: bool = False  # too unspecific to suggest (e.g. "blood tests")


@dataclass(frozen=True, eq=False)  # identity equality: packs are hashable keys for derived-table caches
class Pack:
    """A loaded knowledge pack: metadata plus the arrays the engine computes with."""

    name: str
    version: str
    meta: dict[str, Any]
    findings: tuple[Finding, ...]
    conditions: tuple[Condition, ...]
    red_flags: tuple[RedFlag, ...]
    # Column arrays: one column per binary finding, per categorical value, per multi-choice value.
    col_finding: np.ndarray  # (K,) finding index of each column
    col_value: tuple[str | None, ...]  # value code of each column (None for binary)
    p: np.ndarray  # (C, K) P(column | condition), smoothed, never 0 or 1
    p_source: np.ndarray  # (C, K) int code of each cell's source (see meta["likelihood_sources"])
    age_bands: tuple[tuple[int, int], ...]
    p_age: np.ndarray  # (C, B)
    p_sex: np.ndarray  # (C, 2) columns F, M
    differential_model: dict[str, Any] | None = field(default=None, compare=False)
    aliases: dict[str, Any] | None = field(default=None, compare=False)  # other code systems → pack codes
    root: Path | None = field(default=None, compare=False)  # folder the pack was loaded from
    # Source code of the cells no source lists (a sparse pack's leak); None when every cell is data.
    unlisted_source: int | None = field(default=None, compare=False)

    @cached_property
    def finding_index(self) -> dict[str, int]:
        """Finding code → index."""
        return {f.code: i for i, f in enumerate(self.findings)}

    @cached_property
    def condition_index(self) -> dict[str, int]:
        """Condition code → index."""
        return {c.code: i for i, c in enumerate(self.conditions)}

    @cached_property
    def finding_columns(self) -> tuple[np.ndarray, ...]:
        """Column indices of each finding."""
        order = np.argsort(self.col_finding, kind="stable")
        bounds = np.searchsorted(self.col_finding[order], np.arange(len(self.findings) + 1))
        return tuple(order[bounds[i] : bounds[i + 1]] for i in range(len(self.findings)))

    @cached_property
    def history_mask(self) -> np.ndarray:
        """Findings the inquiry may ask (not examination or test results)."""
        return np.array([f.stage == "history" for f in self.findings], dtype=bool)

    @cached_property
    def age_decided(self) -> tuple[Finding, ...]:
        """Findings the age answers ("a baby under 3 months"): never asked."""
        return tuple(f for f in self.findings if f.age_range is not None)

    @cached_property
    def implies(self) -> dict[str, tuple[str, ...]]:
        """Narrower finding → broader findings its presence entails ("sharp chest pain" → "chest pain")."""
        return {a: tuple(b for b in bs if b in self.finding_index) for a, bs in (self.meta.get("implies") or {}).items() if a in self.finding_index}

    @cached_property
    def tests(self) -> tuple[Test, ...]:
        """The examinations and tests the pack can suggest."""
        return tuple(Test(t["id"], t["name"], t.get("kind", "lab"), t.get("source", ""), bool(t.get("generic", False))) for t in self.meta.get("tests", []))

    @cached_property
    def log_prior(self) -> np.ndarray:
        """Log prior of each condition, normalised."""
        pri = np.array([c.prior for c in self.conditions], dtype=float)
        return np.log(pri / pri.sum())

    @cached_property
    def log_p(self) -> np.ndarray:
        """log P(column | condition)."""
        return np.log(self.p)

    @cached_property
    def log_q(self) -> np.ndarray:
        """log (1 − P(column | condition)), used for absent binary and multi-choice values."""
        return np.log1p(-self.p)

    @cached_property
    def severity(self) -> np.ndarray:
        """Severity of each condition (1 = most severe)."""
        return np.array([c.severity for c in self.conditions], dtype=int)

    @cached_property
    def triage_rank(self) -> np.ndarray:
        """Triage level index of each condition (0 = emergency)."""
        return np.array([TRIAGE_LEVELS.index(c.triage) for c in self.conditions], dtype=int)

    def finding(self, code: str) -> Finding:
        """The finding with this code, or UnknownFindingError."""
        try:
            return self.findings[self.finding_index[code]]
        except KeyError as exc:
            raise UnknownFindingError(f"unknown finding code {code!r} for pack {self.name}") from exc

    def condition(self, code: str) -> Condition:
        """The condition with this code, or PackError."""
        try:
            return self.conditions[self.condition_index[code]]
        except KeyError as exc:
            raise PackError(f"unknown condition {code!r} in pack {self.name}") from exc

    def age_band(self, age: float) -> int:
        """Index of the age band holding this age in years."""
        for i, (lo, hi) in enumerate(self.age_bands):
            if lo <= age < hi:
                return i
        return len(self.age_bands) - 1


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PackError(f"pack file missing: {path}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"pack file is not valid JSON: {path}: {exc}") from exc


def read_table(path: Path, optional: bool = False) -> Any:
    """A curated knowledge table's JSON (None when `optional` and absent); PackError naming the file otherwise."""
    if optional and not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"cannot read {path}: {exc}") from exc


def _likelihood_arrays(tables: dict[str, Any], n_c: int, n_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense (C, K) likelihoods and source codes, from a dense table or a sparse one.

    Sparse form (large packs): cells not listed take "default_p" (a number, or one per condition),
    or min(default_p_columns[column], default_p_cap[condition]) (the column's own value for the columns in
    "default_p_uncapped"); "default_source" is their source
    code, and "cells" lists [condition, column, p, source].
    """
    if "cells" not in tables:
        return np.asarray(tables["p"], dtype=float), np.asarray(tables["source"], dtype=np.int8)
    p = np.empty((n_c, n_k))
    src = np.empty((n_c, n_k), dtype=np.int8)
    if "default_p_columns" in tables:  # per-finding leak, capped per condition
        cols = np.asarray(tables["default_p_columns"], dtype=float)
        cap = np.asarray(tables.get("default_p_cap", np.ones(n_c)), dtype=float)
        if cols.shape != (n_k,) or cap.shape != (n_c,):
            raise PackError("likelihoods.json: default_p_columns / default_p_cap do not match the columns / conditions")
        p[:] = np.minimum(cols[None, :], cap[:, None])
        uncapped = np.asarray(tables.get("default_p_uncapped", []), dtype=int)
        if len(uncapped) and (uncapped.min() < 0 or uncapped.max() >= n_k):
            raise PackError("likelihoods.json: default_p_uncapped names a column out of range")
        p[:, uncapped] = cols[uncapped]  # background states: their population rate whatever the condition
    else:
        p[:] = np.asarray(tables["default_p"], dtype=float).reshape(-1, 1) if np.ndim(tables["default_p"]) else float(tables["default_p"])
    src[:] = np.asarray(tables["default_source"], dtype=np.int8).reshape(-1, 1) if np.ndim(tables["default_source"]) else int(tables["default_source"])
    cells = np.asarray(tables["cells"], dtype=float).reshape(-1, 4)
    ci, kj = cells[:, 0].astype(int), cells[:, 1].astype(int)
    if len(cells) and (ci.min() < 0 or ci.max() >= n_c or kj.min() < 0 or kj.max() >= n_k):
        raise PackError("likelihoods.json: a cell names a condition or column out of range")
    p[ci, kj] = cells[:, 2]
    src[ci, kj] = cells[:, 3].astype(np.int8)
    return p, src


def _check_unique(findings: tuple[Finding, ...], conditions: tuple[Condition, ...], red_flags: tuple[RedFlag, ...]) -> None:
    """PackError naming the first duplicated finding, condition or red-flag code."""
    for kind, codes in (("finding", [f.code for f in findings]), ("condition", [c.code for c in conditions]), ("red flag", [r.id for r in red_flags])):
        seen: set[str] = set()
        for code in codes:
            if code in seen:
                raise PackError(f"pack.json: duplicate {kind} code {code!r}")
            seen.add(code)


def _require(obj: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise PackError(f"{where}: missing field {key!r}")
    return obj[key]


def load_pack_dir(path: str | Path) -> Pack:
    """Load and validate a pack from a folder holding pack.json and likelihoods.json."""
    root = Path(path)
    if not root.is_dir():
        raise PackError(f"pack folder not found: {root}")
    meta = _read_json(root / "pack.json")
    tables = _read_json(root / "likelihoods.json")
    pack_name, pack_version = _require(meta, "name", "pack.json"), _require(meta, "version", "pack.json")
    if _require(meta, "format", "pack.json") != PACK_FORMAT:
        raise PackError(f"pack.json: unsupported format {meta.get('format')!r}, expected {PACK_FORMAT}")
    try:
        findings = tuple(
            Finding(
                code=f["code"],
                kind=f["kind"],
                question=f["question"],
                values=tuple(v["code"] for v in f.get("values", [])),
                labels=tuple(v["label"] for v in f.get("values", [])),
                default=f.get("default"),
                antecedent=bool(f.get("antecedent", False)),
                parent=f.get("parent"),
                source=f.get("source", ""),
                age_range=tuple(float(x) for x in f["age_range"]) if f.get("age_range") else None,  # type: ignore[arg-type]
            )
            for f in meta["findings"]
        )
        conditions = tuple(
            Condition(
                code=c["code"],
                name=c["name"],
                icd10=c.get("icd10", ""),
                severity=int(c["severity"]),
                triage=c["triage"],
                prior=float(c["prior"]),
                symptoms=tuple(c.get("symptoms", [])),
                antecedents=tuple(c.get("antecedents", [])),
                source=c.get("source", ""),
                system=c.get("system", ""),
                synonyms=tuple(c.get("synonyms", [])),
                tests=tuple(c.get("tests", [])),
                rationale=c.get("rationale", ""),
            )
            for c in meta["conditions"]
        )
        red_flags = tuple(
            RedFlag(
                id=r["id"],
                when=tuple((w["finding"], tuple(str(v) for v in w.get("values", []))) for w in r["when"]),
                level=r["level"],
                advice=r["advice"],
                basis=r["basis"],
                ask_when=tuple(r.get("ask_when", [])),
            )
            for r in meta.get("red_flags", [])
        )
        _check_unique(findings, conditions, red_flags)
        columns = tables["columns"]
        p, p_source = _likelihood_arrays(tables, len(conditions), len(columns))
        unlisted = int(tables["default_source"]) if "cells" in tables and np.ndim(tables.get("default_source", ())) == 0 else None
        age_bands = tuple((int(lo), int(hi)) for lo, hi in tables["age"]["bands"])
        p_age = np.asarray(tables["age"]["p"], dtype=float)
        p_sex = np.asarray(tables["sex"]["p"], dtype=float)
    except (KeyError, TypeError, ValueError) as exc:
        raise PackError(f"malformed pack {root}: {exc!r}") from exc
    f_index = {f.code: i for i, f in enumerate(findings)}
    for f in findings:
        if f.kind not in KINDS:
            raise PackError(f"finding {f.code}: unknown kind {f.kind!r}")
        if f.parent is not None and f.parent not in f_index:
            raise PackError(f"finding {f.code}: unknown parent {f.parent!r}")
    try:
        col_finding = np.array([f_index[c[0]] for c in columns], dtype=np.int32)
        col_value = tuple(c[1] for c in columns)
    except KeyError as exc:
        raise PackError(f"likelihoods.json: column of unknown finding {exc}") from exc
    except (IndexError, TypeError) as exc:
        raise PackError("likelihoods.json: each column is [finding code, value or null]") from exc
    if np.any(np.diff(col_finding) < 0) or len(set(col_finding.tolist())) != len(findings):
        raise PackError("likelihoods.json: columns must be grouped by finding, in finding order, each finding with at least one column")
    for fi, f in enumerate(findings):
        got = [col_value[j] for j in np.where(col_finding == fi)[0]]
        if f.kind == BINARY:
            want: list[str | None] = [None]
        elif f.kind == CATEGORICAL:
            want = list(f.values)
        else:
            want = [v for v in f.values if v != f.default]
        if got != want:
            raise PackError(f"likelihoods.json: columns of {f.code} are {got}, expected {want}")
    n_c, n_k = len(conditions), len(columns)
    for arr, name in ((p, "p"), (p_source, "source")):
        if arr.shape != (n_c, n_k):
            raise PackError(f"likelihoods.json: {name} has shape {arr.shape}, expected {(n_c, n_k)}")
    bad = np.argwhere(~((p > 0) & (p < 1)))
    if len(bad):
        ci, kj = (int(x) for x in bad[0])
        raise PackError(
            f"likelihoods.json: P({columns[kj][0]}{'=' + str(columns[kj][1]) if columns[kj][1] is not None else ''} | {conditions[ci].code}) = {float(p[ci, kj])} "
            "must lie strictly between 0 and 1 (smoothed)"
        )
    if p_age.shape != (n_c, len(age_bands)) or p_sex.shape != (n_c, 2):
        raise PackError("likelihoods.json: age/sex tables do not match the conditions")
    for c in conditions:
        if c.triage not in TRIAGE_LEVELS:
            raise PackError(f"condition {c.code}: unknown triage level {c.triage!r}")
    for r in red_flags:
        if any(code not in f_index for code, _ in r.when) or r.level not in TRIAGE_LEVELS:
            raise PackError(f"red flag {r.id}: unknown finding or level")
        if any(code not in f_index for code in r.ask_when):
            raise PackError(f"red flag {r.id}: ask_when names an unknown finding")
    test_ids = {t["id"] for t in meta.get("tests", []) if isinstance(t, dict) and "id" in t}
    for c in conditions:
        unknown = [t for t in c.tests if t not in test_ids]
        if unknown:
            raise PackError(f"condition {c.code}: unknown tests {unknown}")
    diff_path = root / "differential_model.json"
    diff_model = _read_json(diff_path) if diff_path.exists() else None
    alias_path = root / "aliases_fr.json"
    aliases = _read_json(alias_path) if alias_path.exists() else None
    return Pack(
        name=str(pack_name),
        version=str(pack_version),
        meta=meta,
        findings=findings,
        conditions=conditions,
        red_flags=red_flags,
        col_finding=col_finding,
        col_value=col_value,
        p=p,
        p_source=p_source,
        age_bands=age_bands,
        p_age=p_age,
        p_sex=p_sex,
        differential_model=diff_model,
        aliases=aliases,
        root=root,
        unlisted_source=unlisted,
    )


PACKS_DIR = Path(__file__).parent / "packs"


def available_packs() -> list[str]:
    """Names of the packs shipped inside the package."""
    return sorted(p.name for p in PACKS_DIR.iterdir() if (p / "pack.json").exists())


_CACHE: dict[str, Pack] = {}


_RESULTS: dict[str, Pack] = {}


def load_pack(name_or_path: str | Path = "ddxplus") -> Pack:
    """Load a shipped pack by name, a pack folder by path, or "broad+ddxplus" (cached per key).

    "A+B" is pack A with pack B taking precedence inside B's scope (knowledge/compose.py).
    """
    key = str(name_or_path)
    if key not in _CACHE and "+" in key and not Path(key).exists():
        from diagnostician.knowledge.compose import with_precedence

        base, precise = key.split("+", 1)
        _CACHE[key] = with_precedence(load_pack(base), load_pack(precise))
    if key not in _CACHE:
        candidate = PACKS_DIR / key
        path = candidate if (candidate / "pack.json").exists() else Path(key)
        _CACHE[key] = load_pack_dir(path)
    if key not in _RESULTS:
        from diagnostician.knowledge.results import with_results

        _RESULTS[key] = with_results(_CACHE[key])  # examination and test results, where sources give their accuracy
    return _RESULTS[key]
