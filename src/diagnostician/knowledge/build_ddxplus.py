"""Build the DDXPlus knowledge pack from the DDXPlus release files and the French training statistics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from diagnostician.knowledge.ddxplus import DDXPlusRelease, PatientRecord
from diagnostician.knowledge.schema import PACK_FORMAT, TRIAGE_LEVELS

PACK_VERSION = "1.0.0"
# Answer-noise model: every reported answer is wrong with a small probability, so no single answer
# can veto a condition. Binary / multi-choice value: p' = EPS + (1 − 2·EPS)·p. Categorical with K
# values: p' = (1 − EPS)·p + EPS/K.
EPS = 1e-3
# Beta prior strength for multi-choice value presence rates re-estimated from patient files.
MULTI_PRIOR_STRENGTH = 2.0
# Dirichlet prior strength (in pseudo-patients, spread like the pooled population) for age and sex.
DEMOGRAPHIC_PRIOR_STRENGTH = 5.0
AGE_BANDS = ((0, 1), (1, 5), (5, 15), (15, 30), (30, 45), (45, 60), (60, 75), (75, 200))

SOURCES = {
    0: "statistics: share of the condition's DDXPlus training patients with this answer (condition_finding_stats_fr.json)",
    1: f"never seen with the condition in the statistics: answer-noise floor (EPS={EPS})",
    2: "multi-choice value presence rate re-estimated from fit-fold patient files, Beta prior centred on the statistics",
    3: "categorical finding absent from the condition's statistics: all patients hold the default value",
}

# Fit fold: the rows the pack (and the learned differential) may be estimated from. The remaining
# rows stay unseen so that reported figures on them are honest held-out figures.
FIT_FOLD = {
    "patients_test_en_dev.csv": "even rows (0-based row index % 2 == 0)",
    "patients_validate_19.csv": "all rows",
    "patients_test_19.csv": "no rows",
}


def in_fit_fold(filename: str, row: int) -> bool:
    """Whether a dev patient row belongs to the fit fold (see FIT_FOLD)."""
    name = Path(filename).name
    if name == "patients_test_en_dev.csv":
        return row % 2 == 0
    return name == "patients_validate_19.csv"


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _finding_entries(rel: DDXPlusRelease, curated: dict[str, Any]) -> list[dict[str, Any]]:
    kinds = {"B": "binary", "C": "categorical", "M": "multi"}
    questions = curated.get("question_overrides", {})
    labels = curated.get("label_overrides", {})
    out = []
    for code, e in rel.evidences.items():
        kind = kinds[e["data_type"]]
        entry: dict[str, Any] = {
            "code": code,
            "kind": kind,
            "question": e["question_en"],
            "antecedent": bool(e["is_antecedent"]),
            "source": "DDXPlus release_evidences.json (question_en, data_type, value_meaning)",
        }
        if e["code_question"] != code and e["code_question"] in rel.evidences:
            entry["parent"] = e["code_question"]
        if kind != "binary":
            meaning = e.get("value_meaning") or {}
            vals = [str(v) for v in e["possible-values"]]
            fixed = labels.get(code, {})
            entry["values"] = [{"code": v, "label": fixed.get(v, meaning.get(v, {}).get("en", v))} for v in vals]
            entry["default"] = str(e["default_value"])
            if fixed:
                entry["source"] += "; some labels re-translated from the French original (sources/ddxplus_curated.json)"
        if code in questions:
            entry["question"] = questions[code]
            entry["source"] += "; question reworded (sources/ddxplus_curated.json)"
        out.append(entry)
    return out


def _columns(findings: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    cols: list[tuple[str, str | None]] = []
    for f in findings:
        if f["kind"] == "binary":
            cols.append((f["code"], None))
        elif f["kind"] == "categorical":
            cols.extend((f["code"], v["code"]) for v in f["values"])
        else:  # multi-choice: one presence column per value except the default ("nowhere", "NA")
            cols.extend((f["code"], v["code"]) for v in f["values"] if v["code"] != f["default"])
    return cols


PACK_FILES = ("pack.json", "likelihoods.json", "aliases_fr.json")


def build(data_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Build the contents of PACK_FILES from the shared data folder."""
    data_dir = Path(data_dir)
    rel = DDXPlusRelease.load(data_dir / "ddxplus", data_dir / "ddxplus-fr")
    stats_fr = json.loads((data_dir / "ddxplus-fr" / "condition_finding_stats_fr.json").read_text(encoding="utf-8"))
    curated = json.loads((Path(__file__).parent / "sources" / "ddxplus_curated.json").read_text(encoding="utf-8"))

    findings = _finding_entries(rel, curated)
    fkind = {f["code"]: f for f in findings}
    columns = _columns(findings)
    col_index = {c: i for i, c in enumerate(columns)}
    cond_names = list(rel.conditions)
    stats = {rel.fr_to_en_condition[k]: v for k, v in stats_fr.items()}
    missing = set(cond_names) - set(stats)
    if missing:
        raise ValueError(f"statistics lack conditions: {sorted(missing)}")

    # Fit-fold patients, for multi-choice presence rates and age/sex.
    fit: list[PatientRecord] = []
    for name in FIT_FOLD:
        sub = "ddxplus" if name.endswith("_en_dev.csv") else "ddxplus-fr"
        for rec in rel.read_patients(data_dir / sub / name):
            if in_fit_fold(name, rec.row):
                fit.append(rec)
    by_cond: dict[str, list[PatientRecord]] = {c: [] for c in cond_names}
    for rec in fit:
        by_cond[rec.pathology].append(rec)

    n_c, n_k = len(cond_names), len(columns)
    p = np.zeros((n_c, n_k))
    src = np.zeros((n_c, n_k), dtype=int)
    for ci, cname in enumerate(cond_names):
        st = {rel.fr_to_en_evidence[k]: v for k, v in stats[cname]["findings"].items()}
        pats = by_cond[cname]
        for f in findings:
            code = f["code"]
            raw = st.get(code)
            if f["kind"] == "binary":
                j = col_index[(code, None)]
                share = float(raw) if raw is not None else 0.0
                p[ci, j] = EPS + (1 - 2 * EPS) * share
                src[ci, j] = 0 if share > 1e-6 else 1
            elif f["kind"] == "categorical":
                vmap = rel.fr_to_en_value[code]
                vals = [v["code"] for v in f["values"]]
                shares = np.zeros(len(vals))
                if raw is None:
                    shares[vals.index(f["default"])] = 1.0
                else:
                    for vfr, s in raw.items():
                        ven = vmap.get(str(vfr), str(vfr))
                        if ven in vals:
                            shares[vals.index(ven)] += float(s) if float(s) > 1e-6 else 0.0
                if shares.sum() <= 0:
                    shares[vals.index(f["default"])] = 1.0
                shares /= shares.sum()
                smoothed = (1 - EPS) * shares + EPS / len(vals)
                for v, s, s_raw in zip(vals, smoothed, shares):
                    j = col_index[(code, v)]
                    p[ci, j] = s
                    src[ci, j] = 3 if raw is None else (0 if s_raw > 0 else 1)
            else:
                vmap = rel.fr_to_en_value[code]
                prior_mean = {}
                for vfr, s in (raw or {}).items():
                    prior_mean[vmap.get(str(vfr), str(vfr))] = float(s) if float(s) > 1e-6 else 0.0
                n = len(pats)
                for v in (x["code"] for x in f["values"] if x["code"] != f["default"]):
                    j = col_index[(code, v)]
                    k = sum(1 for r in pats if v in r.evidences.get(code, ()))
                    m0 = prior_mean.get(v, 0.0)
                    rate = (k + MULTI_PRIOR_STRENGTH * m0) / (n + MULTI_PRIOR_STRENGTH)
                    p[ci, j] = EPS + (1 - 2 * EPS) * rate
                    src[ci, j] = 2 if (k > 0 or m0 > 0) else 1

    # Age and sex per condition from fit-fold patients, Dirichlet-smoothed toward the pooled shares.
    def band(age: int) -> int:
        return next(i for i, (lo, hi) in enumerate(AGE_BANDS) if lo <= age < hi) if age < 200 else len(AGE_BANDS) - 1

    age_counts = np.zeros((n_c, len(AGE_BANDS)))
    sex_counts = np.zeros((n_c, 2))
    for rec in fit:
        ci = cond_names.index(rec.pathology)
        age_counts[ci, band(rec.age)] += 1
        sex_counts[ci, 0 if rec.sex == "F" else 1] += 1
    pooled_age = (age_counts.sum(0) + 1) / (age_counts.sum() + len(AGE_BANDS))
    pooled_sex = (sex_counts.sum(0) + 1) / (sex_counts.sum() + 2)
    a = DEMOGRAPHIC_PRIOR_STRENGTH
    p_age = (age_counts + a * pooled_age) / (age_counts.sum(1, keepdims=True) + a)
    p_sex = (sex_counts + a * pooled_sex) / (sex_counts.sum(1, keepdims=True) + a)

    sev_map = curated["triage_from_severity"]["map"]
    overrides = curated["triage_overrides"]
    conditions = []
    for ci, cname in enumerate(cond_names):
        c = rel.conditions[cname]
        level = sev_map[str(c["severity"])]
        note = "triage from severity rule"
        if cname in overrides:
            new = overrides[cname]["level"]
            if TRIAGE_LEVELS.index(new) > TRIAGE_LEVELS.index(level):
                raise ValueError(f"override for {cname} lowers triage")
            level, note = new, "triage override: " + overrides[cname]["rationale"]
        conditions.append(
            {
                "code": cname,
                "name": cname,
                "icd10": str(c["icd10-id"]).upper(),
                "severity": int(c["severity"]),
                "triage": level,
                "prior": _round(float(stats[cname]["prior"])),
                "symptoms": sorted(c.get("symptoms", {})),
                "antecedents": sorted(c.get("antecedents", {})),
                "fit_patients": len(by_cond[cname]),
                "source": f"DDXPlus release_conditions.json (name, ICD-10, severity); prior: statistics file; {note}",
            }
        )
    for rf in curated["red_flags"]:
        for w in rf["when"]:
            if w["finding"] not in fkind:
                raise ValueError(f"red flag {rf['id']}: unknown finding {w['finding']}")

    pack = {
        "format": PACK_FORMAT,
        "name": "ddxplus",
        "version": PACK_VERSION,
        "description": "49 respiratory, cardiac, ENT and related conditions with 223 findings from DDXPlus.",
        "license": "DDXPlus data: CC-BY 4.0 (Fansi Tchango et al., NeurIPS 2022 Datasets and Benchmarks; Mila and Dialogue Health). Statistics counted from the DDXPlus training split as shipped with mila-iqia/Casande-RL (MIT).",
        "provenance": {
            "built_by": "python -m diagnostician.knowledge.build_ddxplus --data ../shared/data --out src/diagnostician/knowledge/packs/ddxplus",
            "inputs": [
                "ddxplus/release_evidences.json",
                "ddxplus/release_conditions.json",
                "ddxplus-fr/release_evidences_fr.json (positional map to English codes)",
                "ddxplus-fr/release_conditions_fr.json (cond-name-fr -> cond-name-eng)",
                "ddxplus-fr/condition_finding_stats_fr.json (priors, finding shares)",
                "fit fold of the dev patient files (multi-choice presence, age, sex): " + json.dumps(FIT_FOLD),
                "sources/ddxplus_curated.json (triage levels, red flags; not yet clinically reviewed)",
            ],
            "smoothing": f"answer-noise model, EPS={EPS}: binary/multi value p' = EPS + (1-2 EPS) p; categorical p' = (1-EPS) p + EPS/K. No cell is 0 or 1.",
            "multi_choice": (
                "The statistics counted one arbitrary value per patient for multi-choice findings, so their shares are not "
                "presence rates. Each value's presence rate is re-estimated per condition from fit-fold patients as "
                f"(k + a*m0)/(n + a) with a={MULTI_PRIOR_STRENGTH} and m0 the statistics share; values are independent given the condition."
            ),
            "demographics": (
                f"P(age band | condition) and P(sex | condition) counted from fit-fold patients, Dirichlet-smoothed with "
                f"{DEMOGRAPHIC_PRIOR_STRENGTH} pseudo-patients spread like the pooled population."
            ),
            "likelihood_sources": {str(k): v for k, v in SOURCES.items()},
        },
        "review_status": curated["review_status"],
        "common_complaints": curated["common_complaints"],
        "findings": findings,
        "conditions": conditions,
        "red_flags": curated["red_flags"],
    }
    tables = {
        "conditions": cond_names,
        "columns": [list(c) for c in columns],
        "p": [[_round(x) for x in row] for row in p],
        "source": src.tolist(),
        "source_legend": {str(k): v for k, v in SOURCES.items()},
        "age": {"bands": [list(b) for b in AGE_BANDS], "p": [[_round(x) for x in row] for row in p_age]},
        "sex": {"columns": ["F", "M"], "p": [[_round(x) for x in row] for row in p_sex]},
    }
    aliases = {
        "about": "French-coded DDXPlus release (first version) mapped onto this pack's English codes, positionally as verified by the builder.",
        "evidences": rel.fr_to_en_evidence,
        "values": rel.fr_to_en_value,
        "conditions": rel.fr_to_en_condition,
    }
    return pack, tables, aliases


def dump(obj: Any) -> str:
    """Serialise pack JSON deterministically (one row of a table per line)."""
    return json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=False) + "\n"


def write(data_dir: str | Path, out_dir: str | Path) -> None:
    """Build the pack and write pack.json and likelihoods.json into out_dir."""
    for name, obj in zip(PACK_FILES, build(data_dir)):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(dump(obj), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: build the DDXPlus pack."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="../shared/data", help="folder holding ddxplus/ and ddxplus-fr/")
    ap.add_argument("--out", default=str(Path(__file__).parent / "packs" / "ddxplus"))
    args = ap.parse_args(argv)
    write(args.data, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
