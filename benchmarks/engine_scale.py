"""Time of one inquiry turn (next question + answer update) on a pack, per turn, p50/p99.

Run on one core:  taskset -c 0 python benchmarks/engine_scale.py --pack broad
Simulated patients: a condition drawn from the prior, each asked finding answered present with
its likelihood under that condition; each consultation runs up to --turns questions. A turn is
`next_question` (question choice over every finding, red-flag screening, stopping rule) followed
by `update`. The figures are wall-clock times of this process on this machine.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np


def synthetic_pack(n_c: int, n_f: int, out: str, seed: int) -> str:
    """Write a random sparse pack (about 15 listed findings per condition, leak elsewhere) and return its folder."""
    import json
    from pathlib import Path

    rng = np.random.default_rng(seed)
    cells = []
    for c in range(n_c):
        for f in rng.choice(n_f, size=15, replace=False):
            cells.append([c, int(f), float(rng.uniform(0.05, 0.9)), 1])
    findings = [{"code": f"f{k}", "kind": "binary", "question": f"Finding {k}?"} for k in range(n_f)]
    conditions = [{"code": f"c{c}", "name": f"c{c}", "severity": 3, "triage": ("emergency", "see_doctor")[c % 2], "prior": float(rng.uniform(0.1, 1))} for c in range(n_c)]
    meta = {"format": "diagnostician-pack/1", "name": "synthetic", "version": "0", "findings": findings, "conditions": conditions, "red_flags": []}
    bands = [[0, 1], [1, 5], [5, 15], [15, 30], [30, 45], [45, 60], [60, 75], [75, 200]]
    tables = {"columns": [[f["code"], None] for f in findings], "default_p": 0.01, "default_source": 0, "cells": sorted(cells),
              "age": {"bands": bands, "p": [[1 / 8] * 8] * n_c}, "sex": {"p": [[0.5, 0.5]] * n_c}}  # fmt: skip
    Path(out, "pack.json").write_text(json.dumps(meta))
    Path(out, "likelihoods.json").write_text(json.dumps(tables))
    return out


def main() -> int:
    """Print pack size and turn-time percentiles."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", default="broad")
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", nargs=2, type=int, metavar=("CONDITIONS", "FINDINGS"), help="time a generated sparse pack of this size instead")
    args = ap.parse_args()
    if args.synthetic:
        import tempfile

        args.pack = synthetic_pack(*args.synthetic, tempfile.mkdtemp(prefix="synthetic_pack_"), args.seed)
    from diagnostician.engine import Answer, InquiryPolicy, next_question, start, update
    from diagnostician.engine.inquiry import _tables
    from diagnostician.engine.posterior import _tables as _post_tables
    from diagnostician.knowledge.schema import BINARY, load_pack

    t0 = time.perf_counter()
    pack = load_pack(args.pack)
    load_s = time.perf_counter() - t0
    _tables(pack), _post_tables(pack)  # per-pack tables are built once; not part of a turn
    rng = random.Random(args.seed)
    prior = np.exp(pack.log_prior)
    policy = InquiryPolicy(max_questions=args.turns)
    times: list[float] = []
    for _ in range(args.patients):
        ci = rng.choices(range(len(pack.conditions)), weights=prior.tolist())[0]
        state = start(pack, rng.uniform(1, 90), rng.choice("FM"))
        for _ in range(args.turns):
            t = time.perf_counter()
            q = next_question(pack, state, policy)
            if q is None:
                times.append(time.perf_counter() - t)
                break
            f = pack.finding(q.code)
            cols = pack.finding_columns[pack.finding_index[q.code]]
            if f.kind == BINARY:
                value = bool(rng.random() < pack.p[ci, cols[0]])
            else:
                value = None
            state = update(pack, state, Answer(q.code, value))
            times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    print(f"pack {pack.name} {pack.version}: {len(pack.conditions)} conditions × {len(pack.findings)} findings ({pack.p.shape[1]} columns); load {load_s:.2f} s")
    print(f"turns timed: {len(ms)} over {args.patients} patients")
    print(f"turn time ms: p50 {np.percentile(ms, 50):.2f}  p90 {np.percentile(ms, 90):.2f}  p99 {np.percentile(ms, 99):.2f}  max {ms.max():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
