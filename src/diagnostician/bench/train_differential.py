"""Learn the pack's differential model from the reference differentials of DDXPlus patients.

Each patient of the English dev file is consulted by the engine exactly as in the benchmark (same
simulator, same question policy); at the end, every condition gives one training row: inputs = the
evidence vector and the condition's features (engine.differential), label = the condition is in the
patient's reference differential with probability ≥ 0.01. One L2-regularised logistic regression
per condition is fitted by Newton's method (penalty ½‖w‖²/C, intercept unpenalised). The inclusion
threshold and the reported DDF1 come from K-fold cross-fitting; the fold models ship beside the
model so that the benchmark scores every dev row with a model that never saw it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from diagnostician.bench.ddxplus import simulate
from diagnostician.bench.metrics import REF_THRESHOLD
from diagnostician.engine import InquiryPolicy
from diagnostician.engine.differential import FEATURES, evidence_vector, features
from diagnostician.knowledge.ddxplus import DDXPlusRelease
from diagnostician.knowledge.schema import load_pack_dir

L2_C = 1.0
THRESHOLDS = np.round(np.arange(0.20, 0.71, 0.025), 3)


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = L2_C, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method; returns (weights, intercept)."""
    n, d = x.shape
    k = float(y.sum())
    if k == 0 or k == n:  # one class only: a smoothed constant
        return np.zeros(d), float(np.log((k + 0.5) / (n - k + 0.5)))
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, 1.0 / c)
    reg[-1] = 0.0
    for _ in range(iters):
        z = np.clip(xb @ w, -35, 35)
        p = 1 / (1 + np.exp(-z))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-7:
            break
    return w[:-1], float(w[-1])


def collect(pack_dir: str | Path, cases: str | Path, max_questions: int = 30) -> dict[str, Any]:
    """Consult every patient of a DDXPlus file as the benchmark does; return inputs and labels."""
    pack = load_pack_dir(pack_dir)
    rel = DDXPlusRelease.from_pack(pack)
    ev, ft, lab, rows, top = [], [], [], [], []
    names = [c.code for c in pack.conditions]
    for rec in rel.read_patients(cases):
        cons = simulate(pack, rec, InquiryPolicy(max_questions=max_questions)).consultation
        ev.append(evidence_vector(pack, cons.state))
        ft.append(features(pack, cons.state))
        ref = {n for n, p in rec.differential if p >= REF_THRESHOLD}
        lab.append([n in ref for n in names])
        rows.append(rec.row)
        top.append(int(np.argmax(cons.state.log_post)))
    return {
        "pack": pack,
        "evidence": np.array(ev),
        "features": np.array(ft),
        "labels": np.array(lab, dtype=float),
        "rows": np.array(rows),
        "top": np.array(top),
    }


def fit_all(data: dict[str, Any], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-condition weights (evidence, features) and intercepts fitted on rows idx."""
    ev, ft, lab = data["evidence"][idx], data["features"][idx], data["labels"][idx]
    n_c = lab.shape[1]
    w_e = np.zeros((n_c, ev.shape[1]))
    w_f = np.zeros((n_c, ft.shape[2]))
    b = np.zeros(n_c)
    for ci in range(n_c):
        w, b[ci] = fit_logistic(np.hstack([ev, ft[:, ci, :]]), lab[:, ci])
        w_e[ci], w_f[ci] = w[: ev.shape[1]], w[ev.shape[1] :]
    return w_e, w_f, b


def predict(w_e: np.ndarray, w_f: np.ndarray, b: np.ndarray, ev: np.ndarray, ft: np.ndarray) -> np.ndarray:
    """(patients, conditions) inclusion probabilities."""
    z = ev @ w_e.T + np.einsum("ncf,cf->nc", ft, w_f) + b
    return 1 / (1 + np.exp(-z))


def ddf1(prob: np.ndarray, labels: np.ndarray, top: np.ndarray, threshold: float) -> float:
    """DDF1 of thresholded inclusion (the posterior's top always listed)."""
    pred = prob >= threshold
    pred[np.arange(len(pred)), top] = True
    ref = labels > 0.5
    tp = (pred & ref).sum(1)
    r = (tp / np.maximum(1, ref.sum(1))).mean()
    p = (tp / np.maximum(1, pred.sum(1))).mean()
    return float(2 * r * p / (r + p)) if r + p else 0.0


FOLDS = 4


def fold_of(row: int) -> int:
    """Cross-fitting fold of a patient row (row index modulo FOLDS)."""
    return row % FOLDS


def _model_json(pack: Any, w_e: np.ndarray, w_f: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    r6 = lambda a: [float(f"{x:.6g}") for x in a]  # noqa: E731
    return {
        c.code: {"intercept": float(f"{b[i]:.6g}"), "w_evidence": r6(w_e[i]), "w_features": r6(w_f[i])}
        for i, c in enumerate(pack.conditions)
    }


def train(pack_dir: str | Path, cases: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the differential model on every row; return (model JSON, fold-models JSON).

    Rows are split into FOLDS folds by row index; the model of fold k is trained without fold k.
    Cross-fitted predictions (each row by the model that did not see it) choose the threshold and
    give the honest DDF1; the benchmark uses the fold models on this file for the same reason.
    """
    data = collect(pack_dir, cases)
    pack = data["pack"]
    n = len(data["rows"])
    folds = np.array([fold_of(int(r)) for r in data["rows"]])
    cross = np.zeros_like(data["labels"])
    fold_models = []
    for k in range(FOLDS):
        w_e, w_f, b = fit_all(data, np.where(folds != k)[0])
        cross[folds == k] = predict(w_e, w_f, b, data["evidence"][folds == k], data["features"][folds == k])
        fold_models.append(_model_json(pack, w_e, w_f, b))
    scores = {float(t): ddf1(cross, data["labels"], data["top"], t) for t in THRESHOLDS}
    threshold = max(scores, key=lambda t: scores[t])
    w_e, w_f, b = fit_all(data, np.arange(n))
    head = {
        "about": "Per-condition L2 logistic model of 'belongs in the reference differential' (see diagnostician.engine.differential).",
        "trained_on": f"all {n} rows of {Path(cases).name}; labels: reference differential conditions with p >= {REF_THRESHOLD}",
        "method": __doc__.strip().splitlines()[0] + f" C={L2_C}; threshold by {FOLDS}-fold cross-fitting (fold = row index mod {FOLDS}).",
        "cross_fitted_ddf1": {str(k): round(v, 4) for k, v in scores.items()},
        "features": list(FEATURES),
        "evidence_inputs": [f.code for f in pack.findings if f.stage == "history"] + ["age/50", "male"],
        "threshold": threshold,
    }
    model = dict(head, conditions=_model_json(pack, w_e, w_f, b))
    folds_json = dict(
        head,
        about="Fold models for honest benchmarking: the model of fold k was trained without the rows of fold k.",
        file=Path(cases).name,
        folds=FOLDS,
        fold_of_row=f"row index (0-based, data rows) mod {FOLDS}",
        models=fold_models,
    )
    return model, folds_json


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: train and write differential_model.json into the pack folder."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", default=str(Path(__file__).resolve().parents[1] / "knowledge" / "packs" / "ddxplus"))
    ap.add_argument("--cases", default="../shared/data/ddxplus/patients_test_en_dev.csv")
    args = ap.parse_args(argv)
    model, folds = train(args.pack, args.cases)
    out = Path(args.pack) / "differential_model.json"
    out.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    (Path(args.pack) / "differential_folds.json").write_text(json.dumps(folds) + "\n", encoding="utf-8")
    best = model["cross_fitted_ddf1"][str(model["threshold"])]
    print(f"wrote {out} (threshold {model['threshold']}, cross-fitted DDF1 {best})")


if __name__ == "__main__":
    main()
