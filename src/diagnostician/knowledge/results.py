"""Examination signs and test results whose accuracy a published source gives, as findings of a pack.

The tables (`sources/test_results*.json`) hold, per result, the conditions it is about (by pack), its
sensitivity and specificity, the source, the names a doctor orders it by, and for lab values the
decision threshold a number is read against. In a pack each result becomes a yes/no finding of stage
"exam" or "test": present ("positive", "raised", "consolidation") with probability = sensitivity
for the target conditions and 1 − specificity for every other condition. Such findings are never
asked during the inquiry; they are entered once a result is known, and the engine's value of
information ranks which of them would settle the differential. A result the table does not hold
has no likelihood here: the engine records it and says it cannot interpret it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from diagnostician.errors import PackError
from diagnostician.knowledge.schema import BINARY, Finding, Pack, read_table

RESULTS_DIR = Path(__file__).parent / "sources"
RESULTS_GLOB = "test_results*.json"  # one table per department or review batch, ids unique across them
FORMAT = "diagnostician-results/1"
PREFIX = "result:"  # finding codes of results: "result:troponin-raised"
RESULT_SOURCE = 90  # likelihood source code of result cells: outside every built pack's own codes (broad 0–8)
KINDS = ("exam", "lab", "imaging", "procedure", "bedside")


@dataclass(frozen=True)
class ValueRule:
    """A numeric result read against its decision threshold: positive above (or below) it, in the stated unit."""

    analytes: tuple[str, ...]
    threshold: float
    above: bool
    unit: str

    def positive(self, x: float) -> bool:
        """Whether a measured value reads as the positive result."""
        return x > self.threshold if self.above else x < self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the table."""
        return {"analytes": list(self.analytes), "above" if self.above else "below": self.threshold, "unit": self.unit}


def parse_value(v: Any, at: str) -> ValueRule:
    """Validate a result's numeric rule ({analytes, above|below, unit})."""
    if not isinstance(v, dict) or not isinstance(v.get("analytes"), list) or not v["analytes"] or not all(isinstance(a, str) and a.strip() for a in v["analytes"]):
        raise PackError(f"{at}: value needs a non-empty list of analytes")
    if ("above" in v) == ("below" in v):
        raise PackError(f"{at}: value needs exactly one of above or below")
    x = v.get("above", v.get("below"))
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise PackError(f"{at}: value threshold must be a number")
    if not isinstance(v.get("unit"), str):
        raise PackError(f"{at}: value needs its unit (a string, empty when unitless; equal units joined by '|': 'mmol/L|mEq/L')")
    return ValueRule(tuple(a.strip() for a in v["analytes"]), float(x), "above" in v, v["unit"].strip())


@dataclass(frozen=True)
class ResultEntry:
    """One examination sign or test result with its accuracy for some conditions."""

    id: str
    kind: str
    test: str
    question: str
    label: str
    terms: tuple[str, ...]
    negative_terms: tuple[str, ...]
    targets: dict[str, tuple[str, ...]]  # pack name → condition codes
    sensitivity: float
    specificity: float
    basis: str
    orders: tuple[str, ...] = ()  # short names a doctor orders it by ("TSH", "chest x-ray")
    value: ValueRule | None = None  # a numeric reading's threshold, for lab values

    @property
    def code(self) -> str:
        """The finding code of this result in a pack."""
        return PREFIX + self.id

    @property
    def stage(self) -> str:
        """"exam" for examination signs, "test" for everything measured."""
        return "exam" if self.kind == "exam" else "test"


def parse_results(data: Any, where: str = "results table") -> tuple[ResultEntry, ...]:
    """Validate the table's JSON form."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PackError(f"{where}: not a {FORMAT} file")
    out, seen = [], set()
    for i, e in enumerate(data.get("results") or []):
        at = f"{where}: results[{i}]"
        if not isinstance(e, dict):
            raise PackError(f"{at}: an object expected")
        for key in ("id", "kind", "test", "question", "label", "terms", "targets", "sensitivity", "specificity", "basis"):
            if key not in e:
                raise PackError(f"{at}: missing {key!r}")
        rid = str(e["id"])
        at = f"{at} ({rid})"
        if rid in seen:
            raise PackError(f"{at}: duplicate id")
        seen.add(rid)
        if e["kind"] not in KINDS:
            raise PackError(f"{at}: kind must be one of {', '.join(KINDS)}")
        for key in ("sensitivity", "specificity"):
            v = e[key]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 < v < 1.0:
                raise PackError(f"{at}: {key} must lie strictly between 0 and 1")
        if e["sensitivity"] + e["specificity"] <= 1.0:
            raise PackError(f"{at}: sensitivity + specificity must exceed 1 (a result that tells nothing)")
        if not isinstance(e["targets"], dict) or not any(e["targets"].values()):
            raise PackError(f"{at}: targets must name conditions of at least one pack")
        if not str(e["basis"]).strip():
            raise PackError(f"{at}: empty basis")
        orders = e.get("orders") or []
        if not isinstance(orders, list) or not all(isinstance(o, str) and o.strip() for o in orders):
            raise PackError(f"{at}: orders must be a list of test names")
        if not isinstance(e["terms"], list) or not e["terms"] or not all(isinstance(t, str) and t.strip() for t in e["terms"]):
            raise PackError(f"{at}: terms must be a non-empty list of phrases")
        value = parse_value(e["value"], at) if e.get("value") is not None else None
        out.append(
            ResultEntry(
                rid, e["kind"], str(e["test"]), str(e["question"]), str(e["label"]), tuple(map(str, e["terms"])),
                tuple(map(str, e.get("negative_terms") or ())), {k: tuple(v) for k, v in e["targets"].items()},
                float(e["sensitivity"]), float(e["specificity"]), str(e["basis"]), tuple(o.strip() for o in orders), value,
            )  # fmt: skip
        )
    return tuple(out)


@lru_cache(maxsize=1)
def load_results() -> tuple[ResultEntry, ...]:
    """The shipped tables (sources/test_results*.json), in file order; empty when there are none."""
    out: list[ResultEntry] = []
    seen: dict[str, str] = {}
    for path in sorted(RESULTS_DIR.glob(RESULTS_GLOB)):
        for e in parse_results(read_table(path), path.name):
            if e.id in seen:
                raise PackError(f"{path.name}: result {e.id!r} is also in {seen[e.id]}")
            seen[e.id] = path.name
            out.append(e)
    return tuple(out)


def entries_for(pack: Pack, entries: tuple[ResultEntry, ...] | None = None) -> list[tuple[ResultEntry, np.ndarray]]:
    """The results that bear on conditions of this pack, each with the mask of its target conditions."""
    base = pack.name.split("+")[0]  # a composed pack keeps its base pack's conditions
    out = []
    for e in load_results() if entries is None else entries:
        codes = [c for c in e.targets.get(base, ()) if c in pack.condition_index]
        if codes:
            mask = np.zeros(len(pack.conditions), dtype=bool)
            mask[[pack.condition_index[c] for c in codes]] = True
            out.append((e, mask))
    return out


def with_results(pack: Pack, entries: tuple[ResultEntry, ...] | None = None) -> Pack:
    """The pack with one yes/no finding per result that bears on its conditions (the pack itself when none does)."""
    if any(f.code.startswith(PREFIX) for f in pack.findings):
        return pack  # already carries them (a composed pack built from an extended one)
    found = entries_for(pack, entries)
    if not found:
        return pack
    n_f = len(pack.findings)
    new_findings = tuple(
        Finding(e.code, BINARY, e.question, source=f"{e.label}: sensitivity {e.sensitivity:.2f}, specificity {e.specificity:.2f}; {e.basis}", stage=e.stage)
        for e, _ in found
    )
    cols = np.column_stack([np.where(mask, e.sensitivity, 1.0 - e.specificity) for e, mask in found])
    meta = dict(pack.meta)
    meta["provenance"] = dict(meta.get("provenance", {}))
    legend = dict(meta["provenance"].get("likelihood_sources", {}))
    if str(RESULT_SOURCE) in legend:  # a built pack's own source would lose its provenance
        raise PackError(f"{pack.name}: likelihood source {RESULT_SOURCE} is taken; result cells need a code of their own")
    legend[str(RESULT_SOURCE)] = "examination or test result: sensitivity for its target conditions, 1 − specificity for the others (knowledge/sources/test_results*.json)"
    meta["provenance"]["likelihood_sources"] = legend
    meta["results"] = [
        {"code": e.code, "kind": e.kind, "test": e.test, "label": e.label, "terms": list(e.terms), "negative_terms": list(e.negative_terms),
         "sensitivity": e.sensitivity, "specificity": e.specificity, "basis": e.basis, "orders": list(e.orders),
         "value": e.value.to_dict() if e.value else None}
        for e, _ in found
    ]  # fmt: skip
    return replace(
        pack,
        meta=meta,
        findings=pack.findings + new_findings,
        col_finding=np.concatenate([pack.col_finding, np.arange(n_f, n_f + len(found))]),
        col_value=tuple(pack.col_value) + (None,) * len(found),
        p=np.hstack([pack.p, cols]),
        p_source=np.hstack([pack.p_source, np.full(cols.shape, RESULT_SOURCE, dtype=pack.p_source.dtype)]),
    )


def result_entries(pack: Pack) -> dict[str, dict[str, Any]]:
    """The pack's result findings by code, with their test, label, terms and accuracy."""
    return {r["code"]: r for r in pack.meta.get("results") or ()}
