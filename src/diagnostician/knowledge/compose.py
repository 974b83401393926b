"""A broad pack with a precise pack taking precedence inside its scope (e.g. "broad+ddxplus").

Scope: the broad conditions the precise pack also has (the broad pack names the precise condition
in each condition's "ddxplus" field) and the findings of the crosswalk in the broad pack.json.
Inside that scope a likelihood cell comes from the precise pack, floored at the broad pack's leak
(the finding's most common value in the broad pack) so that a precise "never seen" does not
punish an in-scope condition more than the absent-symptom model punishes the others. Everything else (conditions, findings, questions, red flags, tests,
demographics) is the broad pack's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from diagnostician.errors import PackError
from diagnostician.knowledge.schema import Pack

PRECEDENCE_SOURCE = 100  # above every source code a built pack uses (the broad build 0–8, result cells 90)


def with_precedence(broad: Pack, precise: Pack) -> Pack:
    """The broad pack whose in-scope cells come from the precise pack."""
    walk = (broad.meta.get("crosswalk") or {}).get(precise.name)
    if not walk:
        raise PackError(f"pack {broad.name} has no crosswalk to {precise.name}")
    findings = {e: f for e, f in walk["findings"].items() if e in precise.finding_index and f in broad.finding_index}
    names = {c.name: i for i, c in enumerate(precise.conditions)}
    p, src = broad.p.copy(), broad.p_source.copy()
    floor = np.median(broad.p, axis=0)  # each finding's leak: the most common cell value of its column
    matched = 0
    for ci, entry in enumerate(broad.meta["conditions"]):
        pi = names.get(entry.get(precise.name, ""))
        if pi is None:
            continue
        matched += 1
        for e_code, f_code in findings.items():
            j_precise = precise.finding_columns[precise.finding_index[e_code]][0]
            j_broad = broad.finding_columns[broad.finding_index[f_code]][0]
            p[ci, j_broad] = max(float(precise.p[pi, j_precise]), float(floor[j_broad]))
            src[ci, j_broad] = PRECEDENCE_SOURCE
    meta = dict(broad.meta)
    meta["provenance"] = dict(meta.get("provenance", {}))
    legend = dict(meta["provenance"].get("likelihood_sources", {}))
    if str(PRECEDENCE_SOURCE) in legend:
        raise PackError(f"pack {broad.name} already uses likelihood source code {PRECEDENCE_SOURCE}")
    legend[str(PRECEDENCE_SOURCE)] = f"{precise.name} {precise.version} statistic, taking precedence inside its scope ({matched} conditions, {len(findings)} findings), floored at the leak"
    meta["provenance"]["likelihood_sources"] = legend
    return replace(broad, name=f"{broad.name}+{precise.name}", version=f"{broad.version}+{precise.version}", meta=meta, p=p, p_source=src)
