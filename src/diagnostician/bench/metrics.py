"""DDXPlus interactive-diagnosis metrics (IL, GTPA@k, PER, DDR/DDP/DDF1) and triage safety metrics.

Definitions (per patient, then averaged over patients):
- IL: questions asked after the initial evidence.  PER: share of those answered 'present'.
- GTPA@k: the true pathology is among the first k conditions of the final ranking.
- DDR / DDP: recall / precision of the predicted differential (conditions with probability ≥ 0.01)
  against the reference differential (its conditions with probability ≥ 0.01).
  DDF1 = 2·DDR·DDP / (DDR + DDP) of the averaged DDR and DDP (as in the DDXPlus paper);
  ddf1_per_patient is the mean of per-patient F1, reported beside it.
- emergency_recall: among patients whose true condition has severity 1–2, the share triaged
  'emergency' or 'urgent_24h'.
- under_triage / over_triage: share of all patients triaged less / more urgently than the
  triage level of their true condition in the pack.
- ended_with_danger_plausible: share of consultations that ended while a dangerous condition
  (triage emergency / 24 h) other than the leading one kept ≥ 1 % posterior (only the question
  budget or lack of any useful question can end an inquiry then).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from diagnostician.knowledge.schema import TRIAGE_LEVELS

REF_THRESHOLD = 0.01
DANGER_PLAUSIBLE = 0.01  # a dangerous condition other than the top still holds this much posterior


def set_scores(predicted: Iterable[str], reference: Iterable[str]) -> tuple[float, float, float]:
    """(recall, precision, F1) of one predicted differential against one reference."""
    pred, ref = set(predicted), set(reference)
    tp = len(pred & ref)
    r = tp / len(ref) if ref else (1.0 if not pred else 0.0)
    p = tp / len(pred) if pred else (1.0 if not ref else 0.0)
    f = 2 * r * p / (r + p) if r + p else 0.0
    return r, p, f


def summarize(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-case results (see bench.ddxplus.run_case) into the benchmark's metrics."""
    n = len(cases)
    if n == 0:
        return {"cases": 0}
    ranks = np.array([c["rank"] for c in cases])
    il = np.array([c["il"] for c in cases], float)
    pos = np.array([c["positives"] for c in cases], float)
    scores = np.array([set_scores(c["listed"], c["reference"]) for c in cases]) if any(c["reference"] for c in cases) else None
    tri = np.array([TRIAGE_LEVELS.index(c["triage"]) for c in cases])
    true_tri = np.array([TRIAGE_LEVELS.index(c["true_triage"]) for c in cases])
    severe = np.array([c["true_severity"] <= 2 for c in cases])
    lat = np.concatenate([np.asarray(c["latencies_ms"], float) for c in cases]) if cases else np.zeros(0)
    out: dict[str, Any] = {
        "cases": n,
        "il": float(il.mean()),
        "gtpa@1": float((ranks < 1).mean()),
        "gtpa@3": float((ranks < 3).mean()),
        "gtpa@5": float((ranks < 5).mean()),
        "per": float(pos.sum() / max(1.0, il.sum())),
    }
    if scores is not None:
        ddr, ddp = float(scores[:, 0].mean()), float(scores[:, 1].mean())
        out.update(
            ddr=ddr,
            ddp=ddp,
            ddf1=2 * ddr * ddp / (ddr + ddp) if ddr + ddp else 0.0,
            ddf1_per_patient=float(scores[:, 2].mean()),
            differential_size=float(np.mean([len(c["listed"]) for c in cases])),
            reference_size=float(np.mean([len(c["reference"]) for c in cases])),
        )
    out.update(
        emergency_recall=float((tri[severe] <= 1).mean()) if severe.any() else None,
        severe_cases=int(severe.sum()),
        under_triage=float((tri > true_tri).mean()),
        over_triage=float((tri < true_tri).mean()),
        triage_exact=float((tri == true_tri).mean()),
    )
    if all("danger_left" in c for c in cases):
        out["ended_with_danger_plausible"] = float(np.mean([c["danger_left"] >= DANGER_PLAUSIBLE for c in cases]))
    if len(lat):
        out.update(
            turn_latency_ms_p50=float(np.percentile(lat, 50)),
            turn_latency_ms_p99=float(np.percentile(lat, 99)),
            turns=int(len(lat)),
        )
    ceil = [c for c in cases if "ceiling_rank" in c]
    if ceil:
        out["ceiling_gtpa@1"] = float(np.mean([c["ceiling_rank"] < 1 for c in ceil]))
        if scores is not None:
            cs = np.array([set_scores(c["ceiling_listed"], c["reference"]) for c in ceil])
            r, p = float(cs[:, 0].mean()), float(cs[:, 1].mean())
            out["ceiling_ddf1"] = 2 * r * p / (r + p) if r + p else 0.0
    return out
