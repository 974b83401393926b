"""Ages at which a finding's question may be asked (no "do you smoke?" to a four-year-old), as data with a basis.

The table (`sources/ask_ages.json`) names findings per pack, so it applies to a pack without a rebuild;
a composed pack ("broad+ddxplus") takes the entries of its parts. Findings outside their age range are
simply not asked: nothing is entered for them, so the differential is as if the question never came up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from diagnostician.errors import PackError
from diagnostician.knowledge.schema import Pack, read_table

ASK_AGES_FILE = Path(__file__).parent / "sources" / "ask_ages.json"
FORMAT = "diagnostician-ask-ages/1"


@dataclass(frozen=True)
class AskAge:
    """The age range [min_age, max_age) in which one finding of one pack may be asked."""

    pack: str
    code: str
    min_age: float
    max_age: float
    basis: str


def parse_ask_ages(data: Any, where: str = "ask-ages table") -> tuple[AskAge, ...]:
    """Validate the table's JSON form."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PackError(f"{where}: not a {FORMAT} file")
    out = []
    seen = set()
    for i, e in enumerate(data.get("findings") or []):
        at = f"{where}: findings[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("pack"), str) or not isinstance(e.get("code"), str):
            raise PackError(f"{at}: needs a pack and a code")
        lo = 0.0 if e.get("min_age") is None else e["min_age"]
        hi = math.inf if e.get("max_age") is None else e["max_age"]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi)) or not 0 <= lo < hi:
            raise PackError(f"{at} ({e['code']}): min_age must be below max_age, both years ≥ 0 or null")
        if not str(e.get("basis") or "").strip():
            raise PackError(f"{at} ({e['code']}): empty basis")
        if (e["pack"], e["code"]) in seen:
            raise PackError(f"{at}: {e['pack']} {e['code']} listed twice")
        seen.add((e["pack"], e["code"]))
        out.append(AskAge(e["pack"], e["code"], float(lo), float(hi), str(e["basis"])))
    return tuple(out)


@lru_cache(maxsize=1)
def load_ask_ages() -> tuple[AskAge, ...]:
    """The shipped table (empty when the file is absent)."""
    data = read_table(ASK_AGES_FILE, optional=True)
    return () if data is None else parse_ask_ages(data, ASK_AGES_FILE.name)


_LIMITS: dict[int, tuple[Pack, np.ndarray, np.ndarray]] = {}


def ask_age_limits(pack: Pack) -> tuple[np.ndarray, np.ndarray]:
    """Per finding of the pack, the lowest and the highest (exclusive) age at which it may be asked."""
    hit = _LIMITS.get(id(pack))
    if hit is not None and hit[0] is pack:
        return hit[1], hit[2]
    lo = np.zeros(len(pack.findings))
    hi = np.full(len(pack.findings), np.inf)
    names = {pack.name, *pack.name.split("+")}
    for e in load_ask_ages():
        if e.pack in names and e.code in pack.finding_index:
            i = pack.finding_index[e.code]
            lo[i], hi[i] = max(lo[i], e.min_age), min(hi[i], e.max_age)
    _LIMITS[id(pack)] = (pack, lo, hi)
    return lo, hi
