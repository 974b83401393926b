"""Build the broad knowledge pack from SymCAT, MedlinePlus, the DDXPlus pack and the curated tables.

Inputs (read-only): `<data>/symcat/*.json`, `<data>/medlineplus/medlineplus_893.json`, the shipped
DDXPlus pack, and the curated tables in `sources/broad/` (conditions, findings, mappings, red
flags, urgency, tests; all "not yet clinically reviewed"). Every likelihood cell carries a source
code explained in pack.json; every prior states its basis. The output is deterministic: the
shipped pack equals a fresh build byte for byte (tested where ../shared is present).

Models (stated here and in pack.json):
- SymCAT share s% of a listed symptom → P(symptom | condition) = s/100 × (1 − MISS): a patient who
  has a symptom says "no" to it MISS = 20 % of the time (the same for every listed symptom share).
- A symptom MedlinePlus lists for a condition without a SymCAT share gets the mean SymCAT share of
  the symptoms MedlinePlus lists for conditions present in both sources (computed at build time).
- DDXPlus statistics fill cells of conditions matched to DDXPlus, through the curated finding map,
  where neither SymCAT nor MedlinePlus gives one.
- Unlisted symptom (absent-symptom likelihoods are in no source) → a leak: by default the symptom's
  base rate, the prior-weighted mean share of patients reporting it over all conditions that list
  it, clipped to [LEAK_MIN, LEAK_MAX], and never above the condition's least frequent listed
  SymCAT symptom (SymCAT lists each condition's most frequent symptoms, so an unlisted one is
  rarer than those). A constant leak can be chosen instead (--leak) to test the model's effect.
- SymCAT lists that are copied blocks (the same 12 symptoms at 91 % for rabies, lead poisoning and
  Pick disease: symcat_artifacts) are not used; those conditions take their likelihoods from the
  other sources.
- Curated hallmark features (sources/broad/hallmarks*.jsonl: a typical presentation's features as
  standard references describe them, each row naming its reference; recalled, not re-checked) fill
  cells no source lists and replace MedlinePlus's flat share; they never change a SymCAT, DDXPlus
  or red-flag cell.
- Curated conditions neither source has (sources/broad/conditions_cu*.jsonl: COVID-19, epiglottitis, …)
  come with their features (likelihood source 7) and a prevalence tier whose prior is a stated
  quantile of the derived priors.
- Answer noise EPS as in the DDXPlus pack: p' = EPS + (1 − 2·EPS)·p, so no answer vetoes a condition.
- Prior: Bayes' rule on SymCAT's two directions, P(c) ∝ P(c | s)·P(s) / P(s | c), solved by least
  squares in log space over every (symptom, condition) pair both pages give; conditions outside
  that graph get a stated low default.
- Age and sex: SymCAT odds × the population share of each band (US Census 2010), with the curated
  applicability (age range, sex, pregnancy) pushing impossible bands down to APPLICABILITY_FLOOR.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from diagnostician.errors import PackError
from diagnostician.knowledge.lexicon import LEXICON_FORMAT
from diagnostician.knowledge.schema import PACK_FORMAT, TRIAGE_LEVELS, load_pack_dir, read_table

PACK_VERSION = "0.1.0"
SOURCES_DIR = Path(__file__).parent / "sources" / "broad"
DDXPLUS_DIR = Path(__file__).parent / "packs" / "ddxplus"
PACK_FILES = ("pack.json", "likelihoods.json", "lexicon_en.json")

EPS = 1e-3
LEAK = None  # None: the base-rate leak model; a number: one constant leak for every unlisted cell
LEAK_MIN, LEAK_MAX = 0.005, 0.10
# Report-miss rate: a patient who has a listed symptom says "no" to it this often when asked (forgets,
# misreads the question), so p' = p·(1 − MISS) on listed symptom cells (not on the pregnancy applicability).
# Fourth session, with the hallmark features and curated conditions: 0.2 rather than 0 kept every
# pack-rated emergency among the Avey dev vignettes (15/15 vs 14/15) and raised top-5 43 → 45 %.
MISS = 0.2
# A background state as common as one person in two would say nothing about any condition.
BACKGROUND_MAX = 0.5
PRIOR_DEFAULT_QUANTILE = 0.25  # SymCAT conditions without a Bayes-derived prior get this quantile of the derived ones
# Conditions outside SymCAT's 801 (built from US clinical-encounter statistics) are rarer in encounters on the whole.
PRIOR_OUTSIDE_SYMCAT_QUANTILE = 0.10
# Curated conditions (conditions_cu*.jsonl) state a prevalence tier; each tier takes this quantile of the derived priors.
PREVALENCE_QUANTILES = {"common": 0.75, "uncommon": 0.40, "rare": 0.10}
# Below 1 in 100,000 a year, eradicated, or acquired almost only abroad: a tenth of the rare tier's prior. The derived
# priors are compressed (common cold to myasthenia gravis is 50:1 there, about 10,000:1 in incidence), so a tier
# one decade of incidence down takes one decade of prior, not the compressed step between the other tiers.
VERY_RARE_FACTOR = 0.1
# Conditions without a data-derived prior take a curated tier from sources/broad/prevalence_tiers*.jsonl (one
# line per condition code: prevalence, basis), before a curated condition's own tier and the quantile defaults.
PREVALENCE_TIERS = (*PREVALENCE_QUANTILES, "very_rare")
APPLICABILITY_FLOOR = 1e-3  # relative weight of an age band or sex where the condition does not occur
# A symptom list of this many or more, shared verbatim by this many conditions, is a copied block (symcat_artifacts).
ARTIFACT_MIN_SIZE, ARTIFACT_MIN_SHARED, ARTIFACT_OVERLAP = 6, 3, 0.75
ODDS_FLOOR = 0.05  # SymCAT odds of 0 come from small samples: not impossibility
PREGNANCY_P = 0.98  # P(pregnant | pregnancy-only condition): the curated applicability, softened by answer noise
AGE_BANDS = ((0, 1), (1, 5), (5, 15), (15, 30), (30, 45), (45, 60), (60, 75), (75, 200))
SYMCAT_BANDS = ("age-1-years", "age-1-4-years", "age-5-14-years", "age-15-29-years", "age-30-44-years", "age-45-59-years", "age-60-74-years", "age-75-years")
# Share of the US population in each band (US Census 2010, Summary File 1, table QT-P1, rounded).
POPULATION_BANDS = (0.013, 0.052, 0.133, 0.209, 0.200, 0.210, 0.122, 0.061)
POPULATION_FEMALE = 0.508  # US Census 2010
SEVERITY_OF = {"emergency": 1, "urgent_24h": 2, "see_doctor": 3, "self_care": 4}
SYSTEMS = (
    "cardiovascular", "respiratory", "ent", "gastrointestinal", "hepatobiliary", "renal_urinary", "female_reproductive",
    "obstetric", "male_reproductive", "musculoskeletal", "neurological", "mental_health", "dermatology", "ophthalmology",
    "endocrine_metabolic", "hematology_oncology", "infectious", "immunology_allergy", "congenital_genetic",
    "injury_poisoning", "dental_oral", "general",
)  # fmt: skip

SOURCE_CODES = {
    0: "not listed for the condition in any source: the leak of the absent-symptom model (pack.json provenance)",
    1: "SymCAT: share of the condition's patients reporting the symptom (symcat_conditions_801.json)",
    2: "MedlinePlus lists the symptom for the condition without a frequency: mean SymCAT share of MedlinePlus-listed symptoms",
    3: "DDXPlus statistics through the curated DDXPlus → broad finding map (packs/ddxplus likelihoods)",
    4: "curated red-flag association with its stated basis (sources/broad/red_flag_findings.jsonl; not yet clinically reviewed)",
    5: "curated applicability: pregnancy-only condition (sources/broad conditions tables)",
    6: "implied by a narrower finding the condition lists (e.g. sharp chest pain is chest pain): at least the narrower one's probability",
    7: "curated hallmark feature of the typical presentation, recalled from the reference its row names, not re-checked (sources/broad/hallmarks*.jsonl; not yet clinically reviewed)",
    8: "curated correction of a source share judged implausible for the condition (a small-sample artefact, a cardinal feature given a token share, MedlinePlus's flat share re-estimated), with the reference its row names (sources/broad/corrections*.jsonl; not yet clinically reviewed)",
}


# Numbers that decide findings: (name, finding, quantity, side, present threshold, absent threshold, unit, min_age, source).
MEASUREMENTS = (
    ("temperature", "fever", "temperature", "high", 38.0, 37.5, "C", 0, "who"),
    ("heart_rate_high", "increased-heart-rate", "heart_rate", "high", 100, 90, "/min", 16, "vitals"),
    ("heart_rate_low", "decreased-heart-rate", "heart_rate", "low", 50, 60, "/min", 16, "vitals"),
    ("respiratory_rate_high", "breathing-fast", "respiratory_rate", "high", 22, 20, "/min", 16, "vitals"),
    ("systolic_low", "low-blood-pressure", "systolic_bp", "low", 90, 100, "mmHg", 16, "vitals"),
    ("systolic_crisis", "rf-very-high-blood-pressure", "systolic_bp", "high", 180, 160, "mmHg", 16, "vitals"),
    ("diastolic_crisis", "rf-very-high-blood-pressure", "diastolic_bp", "high", 120, 100, "mmHg", 16, "vitals"),
)


def _measurements(fcodes: Any) -> dict[str, dict[str, Any]]:
    """The lexicon's measurement rules for the findings the pack has."""
    out = {}
    for name, finding, quantity, side, present, absent, unit, min_age, source in MEASUREMENTS:
        if finding in fcodes:
            keys = ("present_at_or_above", "absent_below") if side == "high" else ("present_below", "absent_at_or_above")
            out[name] = {"finding": finding, keys[0]: present, keys[1]: absent, "unit": unit, "quantity": quantity, "min_age": min_age, "source": source}
    return out


def slug(text: str) -> str:
    """Lowercase ASCII words joined by '-'."""
    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", s).strip("-")


def norm_name(text: str) -> str:
    """A condition or test name in comparable form (parenthesised parts, punctuation and case removed)."""
    s = re.sub(r"\(.*?\)", " ", unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower())
    return " ".join(re.sub(r"[^a-z0-9]+", " ", s).split())


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a curated JSONL table; PackError naming the file and line when one is malformed."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise PackError(f"curated table missing: {path}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PackError(f"{path.name}:{n}: not valid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise PackError(f"{path.name}:{n}: each line must be a JSON object")
        row["_where"] = f"{path.name}:{n}"
        rows.append(row)
    return rows


def _tables(sources: Path, pattern: str) -> list[dict[str, Any]]:
    files = sorted(sources.glob(pattern))
    if not files:
        raise PackError(f"no curated table {pattern} in {sources}")
    return [r for f in files for r in read_jsonl(f)]


def _term_table(sources: Path, pattern: str, findings: dict[str, dict[str, Any]], merged: dict[str, str]) -> dict[str, list[str]]:
    """Extra terms per finding from optional curated tables ({"finding", "terms"} per line); folded codes go to their keeper."""
    out: dict[str, list[str]] = defaultdict(list)
    for row in _optional_tables(sources, pattern):
        code = _need(row, "finding")
        code = merged.get(code, code)
        if code not in findings:
            raise PackError(f"{row['_where']}: unknown finding {code!r}")
        terms = row.get("terms")
        if not isinstance(terms, list) or not all(isinstance(t, str) and t.strip() for t in terms):
            raise PackError(f"{row['_where']} ({code}): 'terms' must be a list of phrases")
        out[code].extend(t.strip().lower() for t in terms)
    return out


def _prevalence_tiers(sources: Path, codes: set[str]) -> dict[str, dict[str, Any]]:
    """Curated prevalence tiers by condition code (optional tables); an unknown code, tier or missing basis fails the build."""
    out: dict[str, dict[str, Any]] = {}
    for row in _optional_tables(sources, "prevalence_tiers*.jsonl"):
        code = _need(row, "code")
        if code not in codes:
            raise PackError(f"{row['_where']}: unknown condition {code!r}")
        if row.get("prevalence") not in PREVALENCE_TIERS:
            raise PackError(f"{row['_where']} ({code}): prevalence must be one of {', '.join(PREVALENCE_TIERS)}")
        _need(row, "basis")
        if code in out:
            raise PackError(f"{row['_where']}: condition {code!r} has a tier already ({out[code]['_where']})")
        out[code] = row
    return out


def _optional_tables(sources: Path, pattern: str) -> list[dict[str, Any]]:
    return [r for f in sorted(sources.glob(pattern)) for r in read_jsonl(f)]


def _need(row: dict[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    if key not in row or not isinstance(row[key], kind) or (isinstance(row[key], str) and not row[key].strip() and key != "icd10"):
        raise PackError(f"{row.get('_where', '?')} ({row.get('id') or row.get('cn') or row.get('code')}): missing or malformed field {key!r}")
    return row[key]


def _check_condition_row(row: dict[str, Any]) -> None:
    for key in ("id", "name", "system", "urgency", "rationale", "sex"):
        _need(row, key)
    _need(row, "icd10")
    where = f"{row['_where']} ({row['id']})"
    if row["urgency"] not in TRIAGE_LEVELS:
        raise PackError(f"{where}: urgency {row['urgency']!r} is not one of {TRIAGE_LEVELS}")
    if row["system"] not in SYSTEMS:
        raise PackError(f"{where}: system {row['system']!r} is not one of the fixed vocabulary")
    if row["sex"] not in ("any", "F", "M"):
        raise PackError(f"{where}: sex must be any, F or M")
    lo, hi = row.get("age_min", 0), row.get("age_max", 120)
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 <= lo < hi <= 120):
        raise PackError(f"{where}: age range {lo}–{hi} is not within 0–120")
    if not isinstance(row.get("synonyms", []), list):
        raise PackError(f"{where}: synonyms must be a list")


# ------------------------------------------------------------------------------------------- findings


def _finding_entry(row: dict[str, Any], code: str, source: str) -> dict[str, Any]:
    where = f"{row['_where']} ({code})"
    for key in ("label", "question"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise PackError(f"{where}: missing {key!r}")
    terms = row.get("terms")
    if not isinstance(terms, list) or not terms or not all(isinstance(t, str) and t.strip() for t in terms):
        raise PackError(f"{where}: 'terms' must be a non-empty list of phrases")
    system = row.get("system", "general")
    if system not in SYSTEMS:
        raise PackError(f"{where}: system {system!r} is not one of the fixed vocabulary")
    entry = {"code": code, "kind": "binary", "question": row["question"].strip(), "label": row["label"].strip(), "system": system,
             "terms": [t.strip().lower() for t in terms], "source": source}  # fmt: skip
    if "age_range" in row:  # a finding the age decides ("a baby under 3 months"): answered from the age, never asked
        lo_hi = row["age_range"]
        if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and all(isinstance(x, (int, float)) for x in lo_hi) and 0 <= lo_hi[0] < lo_hi[1] <= 120):
            raise PackError(f"{where}: age_range must be [low, high] years within 0–120")
        entry["age_range"] = [float(lo_hi[0]), float(lo_hi[1])]
        entry["source"] += f"; {row.get('age_basis') or 'decided by the age'}"
    return entry


def load_findings(sources: Path, symcat_symptoms: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, str], list[dict[str, Any]]]:
    """Findings by code, the MedlinePlus concept → finding map, and the red-flag finding rows (with their condition links)."""
    findings: dict[str, dict[str, Any]] = {}
    for row in _tables(sources, "findings_sc*.jsonl"):
        code = _need(row, "id")
        if code not in symcat_symptoms:
            raise PackError(f"{row['_where']}: {code!r} is not a SymCAT symptom")
        if code in findings:
            raise PackError(f"{row['_where']}: duplicate finding {code!r}")
        findings[code] = _finding_entry(row, code, f"SymCAT symptom '{symcat_symptoms[code]['name']}'; question and lay terms curated")
    cn_map: dict[str, str] = {}
    not_findings: set[str] = set()  # ids a row declared "not a finding": later rows naming them are not either
    seen_cn: set[str] = set()
    for row in _tables(sources, "findings_ml*.jsonl"):
        cn, code = _need(row, "cn"), _need(row, "finding")
        if cn in seen_cn:
            raise PackError(f"{row['_where']}: duplicate concept {cn!r}")
        seen_cn.add(cn)
        if row.get("kind") == "not_a_finding" or (code in not_findings and code not in findings):
            not_findings.add(code)
            continue
        if code not in findings:
            if "label" not in row:
                cn_map[cn] = code  # resolved below once the first row defining it has been read
                continue
            findings[code] = _finding_entry(row, code, f"MedlinePlus symptom concept {cn}; question and lay terms curated")
        cn_map[cn] = code
    rf_rows = _tables(sources, "red_flag_findings*.jsonl")
    for row in rf_rows:
        code = _need(row, "id")
        if code in findings:
            raise PackError(f"{row['_where']}: duplicate finding {code!r}")
        findings[code] = _finding_entry(row, code, "curated red-flag finding (sources/broad/red_flag_findings.jsonl; not yet clinically reviewed)")
    dangling = sorted(c for c in set(cn_map.values()) if c not in findings)
    if dangling:
        raise PackError(f"findings_ml: finding ids used without a definition: {dangling[:5]}")
    return findings, cn_map, rf_rows


# ------------------------------------------------------------------------------------------- conditions


def _generalise_flag(when: list[str], ask_when: list[str], implied: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """A red flag on a kind of a symptom ("sharp chest pain" with sweating) also fires on the symptom itself.

    Curated red-flag signs (rf-) are specific on purpose and stay as written; a SymCAT symptom that
    only characterises a broader one is replaced by the broader one (the engine counts a narrower
    finding answered present as its broader one present). Screening triggers gain the broader ones.
    """
    def broad(f: str) -> str:
        up = [b for b in implied.get(f, []) if not b.startswith("rf-")]
        return f if f.startswith("rf-") or not up else sorted(up, key=lambda b: (len(b), b))[0]

    return list(dict.fromkeys(broad(f) for f in when)), list(dict.fromkeys([*ask_when, *(broad(f) for f in ask_when)]))


def fold_findings(sources: Path, findings: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Fold same-meaning findings into one (sources/broad/finding_merges.jsonl): folded code → kept code.

    The kept finding gains the folded one's label and terms; the folded one leaves the pack.
    """
    merged: dict[str, str] = {}
    rows = _optional_tables(sources, "finding_merges*.jsonl")
    kept = {str(r.get("into")) for r in rows}
    for row in rows:
        a, b = _need(row, "finding"), _need(row, "into")
        if a not in findings or b not in findings:
            raise PackError(f"{row['_where']}: {a!r} or {b!r} is not a finding")
        if a in merged or a in kept or b in merged or a == b:
            raise PackError(f"{row['_where']}: {a!r} is folded twice, into itself, or into a folded finding")
        merged[a] = b
    for a, b in merged.items():
        gone = findings.pop(a)
        keep = findings[b]
        keep["terms"] = list(dict.fromkeys([*keep["terms"], gone["label"].lower(), *gone["terms"]]))
        keep["source"] += f"; same meaning as folded {a} (sources/broad/finding_merges.jsonl)"
    return merged


def symcat_artifacts(symcat: dict[str, Any]) -> dict[str, str]:
    """SymCAT conditions whose symptom list is a copied block, not data, with the reason.

    A list of ARTIFACT_MIN_SIZE+ symptoms shared verbatim by ARTIFACT_MIN_SHARED+ conditions (rabies, lead
    poisoning and Pick disease with the same twelve symptoms at 91 %) is an artifact of the source; so is
    any list holding ARTIFACT_OVERLAP of such a block."""
    sets: dict[frozenset[str], int] = defaultdict(int)
    for c in symcat.values():
        if len(c["symptoms"]) >= ARTIFACT_MIN_SIZE:
            sets[frozenset(c["symptoms"])] += 1
    blocks = sorted((b for b, n in sets.items() if n >= ARTIFACT_MIN_SHARED), key=sorted)
    out = {}
    for key, c in symcat.items():
        listed = set(c["symptoms"])
        for b in blocks:
            if len(listed & b) >= ARTIFACT_OVERLAP * len(b):
                out[key] = f"it repeats a block of {len(b)} symptoms that {sets[b]} SymCAT conditions list verbatim (an artifact of the source)"
    return out


def _symcat_prior_logs(symcat: dict[str, Any], symptoms: dict[str, Any]) -> dict[str, float]:
    """log P(c) (up to a constant) of the SymCAT conditions both directions of the data connect."""
    cond_ids = {f"cause-{k}": k for k in symcat}
    eqs: list[tuple[str, str, float]] = []
    for s_slug, s in symptoms.items():
        for cause, info in (s.get("common_causes") or {}).items():
            c = cond_ids.get(cause)
            p_cs = float(info.get("probability") or 0.0) / 100.0
            if c is None or p_cs <= 0:
                continue
            p_sc = float((symcat[c]["symptoms"].get(s_slug) or {}).get("probability") or 0.0) / 100.0
            if p_sc > 0:
                eqs.append((c, s_slug, float(np.log(p_cs) - np.log(p_sc))))
    conds = sorted({c for c, _, _ in eqs})
    syms = sorted({s for _, s, _ in eqs})
    ci = {c: i for i, c in enumerate(conds)}
    si = {s: len(conds) + i for i, s in enumerate(syms)}
    a = np.zeros((len(eqs) + len(conds) + len(syms), len(conds) + len(syms)))
    b = np.zeros(a.shape[0])
    for r, (c, s, rhs) in enumerate(eqs):
        a[r, ci[c]], a[r, si[s]], b[r] = 1.0, -1.0, rhs
    # Weak ridge rows fix the free constant of each connected part of the graph.
    ridge = 1e-3
    for j in range(len(conds) + len(syms)):
        a[len(eqs) + j, j] = ridge
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    return {c: float(x[ci[c]]) for c in conds}


def _age_sex(odds_age: dict[str, Any] | None, odds_sex: dict[str, Any] | None, row: dict[str, Any]) -> tuple[list[float], list[float]]:
    """P(age band | c) and P(sex | c) from SymCAT odds (or the population) and the curated applicability."""
    pop = np.array(POPULATION_BANDS)
    if odds_age:
        odds = np.array([float((odds_age.get(b) or {}).get("odds", 1.0)) for b in SYMCAT_BANDS])
        odds = np.maximum(odds, ODDS_FLOOR) if odds.sum() > 0 else np.ones(len(SYMCAT_BANDS))
    else:
        odds = np.ones(len(SYMCAT_BANDS))
    w = odds * pop
    lo, hi = float(row.get("age_min", 0)), float(row.get("age_max", 120))
    outside = np.zeros(len(AGE_BANDS), dtype=bool)
    for b, (blo, bhi) in enumerate(AGE_BANDS):
        if bhi <= lo or blo >= hi:  # bands are [low, high): one starting at the upper limit lies outside it
            outside[b] = True
    if row.get("pregnancy_only"):
        for b, (blo, bhi) in enumerate(AGE_BANDS):
            if bhi <= 12 or blo >= 60:
                outside[b] = True
    if outside.any() and not outside.all():
        # Outside its ages a condition is as likely as APPLICABILITY_FLOOR × a population-shaped one, absolutely:
        # scaling the weights and renormalising would hand most of that mass back when few bands remain.
        floor = APPLICABILITY_FLOOR * pop / pop.sum()
        w = np.where(outside, 0.0, w)
        w = w / w.sum() * (1.0 - floor[outside].sum())
        w[outside] = floor[outside]
    else:
        w /= w.sum()
    f, m = POPULATION_FEMALE, 1 - POPULATION_FEMALE
    if odds_sex:
        f *= max(float((odds_sex.get("sex-female") or {}).get("odds", 1.0)), ODDS_FLOOR)
        m *= max(float((odds_sex.get("sex-male") or {}).get("odds", 1.0)), ODDS_FLOOR)
    if row.get("sex") == "F" or row.get("pregnancy_only"):
        m *= APPLICABILITY_FLOOR
    elif row.get("sex") == "M":
        f *= APPLICABILITY_FLOOR
    return [_round(v) for v in w], [_round(f / (f + m)), _round(m / (f + m))]


# ------------------------------------------------------------------------------------------- tests


def _load_test_aliases(sources: Path) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    path = sources / "tests.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PackError(f"curated table missing: {path}") from exc
    except json.JSONDecodeError as exc:
        raise PackError(f"{path.name}: not valid JSON: {exc}") from exc
    alias: dict[str, str] = {}
    catalogue: dict[str, dict[str, Any]] = {}
    for t in data.get("tests", []):
        tid = t.get("id")
        if not tid or tid in catalogue or t.get("kind") not in ("exam", "lab", "imaging", "procedure"):
            raise PackError(f"tests.json: test {tid!r} is duplicated or lacks a kind")
        catalogue[tid] = t
        for a in [t["name"], *t.get("aliases", [])]:
            alias[norm_name(a)] = tid
    return alias, {"kind_words": data.get("kind_words", {}), **catalogue}


def _test_id(name: str, alias: dict[str, str], kind_words: dict[str, list[str]], catalogue: dict[str, dict[str, Any]]) -> str:
    """The catalogue id of a MedlinePlus test name, adding an entry for a name the curated table lacks."""
    key = norm_name(name)
    if key.endswith("s") and key[:-1] in alias:
        key = key[:-1]
    if key in alias:
        return alias[key]
    tid = slug(key)
    if tid not in catalogue:
        kind = next((k for k, words in kind_words.items() if any(w in key.split() or w in key for w in words)), "lab")
        catalogue[tid] = {"id": tid, "name": key, "kind": kind, "aliases": []}
        alias[key] = tid
    return tid


# ------------------------------------------------------------------------------------------- build


def _lookup_synonyms(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in rows:
        for n in [r["name"], *r.get("synonyms", [])]:
            out.setdefault(norm_name(n), r["code"])
    return out


def build(
    data_dir: str | Path, sources: str | Path = SOURCES_DIR, ddxplus_dir: str | Path = DDXPLUS_DIR, leak: float | None = LEAK, miss: float = MISS
) -> dict[str, Any]:
    """Build the contents of PACK_FILES (file name → JSON object); leak None is the base-rate model."""
    data_dir, sources = Path(data_dir), Path(sources)
    if leak is not None and not 0 < leak < 0.5:
        raise PackError(f"leak must lie in (0, 0.5), got {leak}")
    symcat = json.loads((data_dir / "symcat" / "symcat_conditions_801.json").read_text(encoding="utf-8"))
    artifacts = symcat_artifacts(symcat)
    symcat = {k: ({**c, "symptoms": {}} if k in artifacts else c) for k, c in symcat.items()}
    symptoms = json.loads((data_dir / "symcat" / "symcat_symptoms_474.json").read_text(encoding="utf-8"))
    medline = json.loads((data_dir / "medlineplus" / "medlineplus_893.json").read_text(encoding="utf-8"))
    ddx = load_pack_dir(ddxplus_dir)

    findings, cn_map, rf_rows = load_findings(sources, symptoms)
    merged = fold_findings(sources, findings)
    cn_map = {cn: merged.get(f, f) for cn, f in cn_map.items()}

    def canon(code: str) -> str:
        return merged.get(code, code)

    # Conditions: every SymCAT condition, then MedlinePlus topics that are conditions not in SymCAT.
    conds: list[dict[str, Any]] = []
    by_code: dict[str, dict[str, Any]] = {}
    sc_rows = {r["id"]: r for r in _tables(sources, "conditions_sc*.jsonl")}
    for key in symcat:
        row = sc_rows.pop(f"sc:{key}", None)
        if row is None:
            raise PackError(f"conditions_sc: SymCAT condition sc:{key} has no curated row")
        _check_condition_row(row)
        c = {"code": key, "row": row, "symcat": symcat[key], "medline": [], "source": "SymCAT condition page (symcat_conditions_801.json)"
             + (f"; its SymCAT symptom shares are not used: {artifacts[key]}" if key in artifacts else "")}  # fmt: skip
        conds.append(c)
        by_code[key] = c
    if sc_rows:
        raise PackError(f"conditions_sc: rows for unknown SymCAT conditions: {sorted(sc_rows)[:5]}")
    ml_rows = _tables(sources, "conditions_ml*.jsonl")
    seen_ml = set()
    for row in ml_rows:
        mid = _need(row, "id")
        name = mid.removeprefix("ml:")
        if name not in medline or mid in seen_ml:
            raise PackError(f"{row['_where']}: {mid!r} is not a MedlinePlus topic or is repeated")
        seen_ml.add(mid)
        if row.get("kind") == "topic":
            continue
        same = row.get("same_as")
        if same:
            target = by_code.get(str(same).removeprefix("sc:"))
            if target is None:
                raise PackError(f"{row['_where']}: same_as {same!r} is not a SymCAT condition")
            target["medline"].append(name)
            target.setdefault("extra_synonyms", []).append(row.get("name") or name)
            continue
        _check_condition_row(row)
        code = slug(row["name"]) or slug(name)
        while code in by_code:
            code += "-ml"
        c = {"code": code, "row": row, "symcat": None, "medline": [name], "source": "MedlinePlus health topic (medlineplus_893.json)"}
        conds.append(c)
        by_code[code] = c
    missing_ml = sorted(set(f"ml:{k}" for k in medline) - seen_ml)
    if missing_ml:
        raise PackError(f"conditions_ml: MedlinePlus topics without a curated row: {missing_ml[:5]}")
    # Curated conditions neither source has (COVID-19 came after SymCAT; MedlinePlus files some under a broader topic).
    known = {norm_name(n) for c in conds for n in [c["row"]["name"], *c["row"].get("synonyms", [])]}
    for row in _optional_tables(sources, "conditions_cu*.jsonl"):
        _check_condition_row(row)
        where = f"{row['_where']} ({row['id']})"
        if row.get("prevalence") not in PREVALENCE_TIERS or not str(row.get("prevalence_basis", "")).strip():
            raise PackError(f"{where}: prevalence must be one of {', '.join(PREVALENCE_TIERS)}, with a prevalence_basis")
        clash = [n for n in [row["name"], *row.get("synonyms", [])] if norm_name(n) in known]
        if clash or slug(row["name"]) in by_code:
            raise PackError(f"{where}: {clash[0] if clash else row['name']!r} already names a condition of the pack")
        known |= {norm_name(n) for n in [row["name"], *row.get("synonyms", [])]}
        code = slug(row["name"])
        c = {"code": code, "row": row, "symcat": None, "medline": [], "curated": True,
             "source": "curated condition (sources/broad/conditions_cu*.jsonl; features recalled from the references each names, not re-checked)"}  # fmt: skip
        conds.append(c)
        by_code[code] = c

    # Which findings each condition lists, from which source.
    cells: dict[tuple[str, str], tuple[float, int]] = {}
    for c in conds:
        if c["symcat"]:
            for s_slug, info in c["symcat"]["symptoms"].items():
                s_slug = canon(s_slug)
                if s_slug not in findings:
                    raise PackError(f"SymCAT symptom {s_slug!r} of {c['code']} has no curated finding")
                share = float(info["probability"]) / 100.0
                if (c["code"], s_slug) not in cells or cells[(c["code"], s_slug)][0] < share:  # two folded symptoms: the larger share
                    cells[(c["code"], s_slug)] = (share, 1)
    # The share given to a MedlinePlus-listed symptom: mean SymCAT share of such symptoms where both sources speak.
    both = [cells[(c["code"], cn_map[t.split(" ", 1)[0]])][0] for c in conds if c["symcat"] for m in c["medline"] for t in medline[m]["symptom"]
            if t.split(" ", 1)[0] in cn_map and (c["code"], cn_map[t.split(" ", 1)[0]]) in cells]  # fmt: skip
    ml_share = _round(float(np.mean(both))) if both else 0.3
    for c in conds:
        for m in c["medline"]:
            for t in medline[m]["symptom"]:
                f = cn_map.get(t.split(" ", 1)[0])
                if f is not None and (c["code"], f) not in cells:
                    cells[(c["code"], f)] = (ml_share, 2)

    # DDXPlus: conditions matched by name or synonym lend their statistics through the finding map.
    names = _lookup_synonyms({"code": c["code"], "name": c["row"]["name"], "synonyms": c["row"].get("synonyms", []) + c.get("extra_synonyms", [])} for c in conds)
    ddx_map = {}
    for row in _tables(sources, "ddxplus_map*.jsonl"):
        code, target = _need(row, "code"), row.get("finding")
        if code not in ddx.finding_index:
            raise PackError(f"{row['_where']}: {code!r} is not a DDXPlus finding")
        if target is not None:
            target = canon(target)
            if target not in findings:
                raise PackError(f"{row['_where']}: {code} maps to unknown finding {target!r}")
            ddx_map[code] = canon(target)
    ddx_matched: dict[str, str] = {}
    for ci, dc in enumerate(ddx.conditions):
        code = names.get(norm_name(dc.name))
        if code is None:
            continue
        ddx_matched[code] = dc.name
        for e_code, target in sorted(ddx_map.items()):
            j = ddx.finding_columns[ddx.finding_index[e_code]][0]
            share = float(ddx.p[ci, j])
            if int(ddx.p_source[ci, j]) == 0 and share > 0.01 and (code, target) not in cells:
                cells[(code, target)] = ((share - EPS) / (1 - 2 * EPS), 3)

    # Curated red-flag findings and their characteristic conditions.
    for row in rf_rows:
        for link in row.get("conditions", []):
            code = str(link.get("id", "")).removeprefix("sc:")
            p = link.get("p")
            if code not in by_code:
                raise PackError(f"{row['_where']} ({row['id']}): unknown condition {link.get('id')!r}")
            if not isinstance(p, (int, float)) or not 0 < p < 1:
                raise PackError(f"{row['_where']} ({row['id']}): probability {p!r} for {code} is not in (0, 1)")
            if not str(link.get("basis", "")).strip():
                raise PackError(f"{row['_where']} ({row['id']}): the link to {code} has no basis")
            key = (code, canon(row["id"]))
            if key not in cells or cells[key][0] < float(p):  # a folded red-flag finding never lowers a listed share
                cells[key] = (float(p), 4)
    preg = _pregnancy_finding(findings)
    for c in conds:
        if c["row"].get("pregnancy_only"):
            cells[(c["code"], preg)] = (PREGNANCY_P, 5)
    # Curated hallmark features fill what the sources leave out (or give only MedlinePlus's flat share);
    # SymCAT, DDXPlus and red-flag cells stay as they are.
    def feature(where: str, owner: str, feat: dict[str, Any]) -> tuple[str, float]:
        """A curated feature's finding (folded) and share, checked: known finding, share in (0, 1), a basis."""
        f, p = canon(str(feat.get("finding", ""))), feat.get("p")
        if f not in findings:
            raise PackError(f"{where} ({owner}): unknown finding {f!r}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 1:
            raise PackError(f"{where} ({owner}, {f}): probability {p!r} is not in (0, 1)")
        if not str(feat.get("basis", "")).strip():
            raise PackError(f"{where} ({owner}, {f}): no basis")
        return f, float(p)

    def table_cells(pattern: str) -> Iterator[tuple[dict[str, Any], str, str, float]]:
        """Each row of the curated cell tables matching `pattern`, with its condition, finding and share checked."""
        for row in _optional_tables(sources, pattern):
            code = str(_need(row, "condition"))
            if code not in by_code:
                raise PackError(f"{row['_where']}: unknown condition {code!r}")
            yield (row, code, *feature(row["_where"], code, row))

    for row, code, f, p in table_cells("hallmarks*.jsonl"):
        if (code, f) not in cells or cells[(code, f)][1] == 2:
            cells[(code, f)] = (p, 7)
    for c in conds:
        if not c.get("curated"):
            continue
        features = c["row"].get("features")
        if not isinstance(features, list) or not features:
            raise PackError(f"{c['row']['_where']} ({c['row']['id']}): a curated condition needs its features")
        for feat in features:
            f, p = feature(c["row"]["_where"], c["row"]["id"], feat)
            cells[(c["code"], f)] = (p, 7)

    # Corrections replace a SymCAT, MedlinePlus or hallmark share judged implausible; DDXPlus statistics,
    # red-flag and pregnancy cells are not theirs to change.
    for row, code, f, p in table_cells("corrections*.jsonl"):
        if (code, f) not in cells:
            raise PackError(f"{row['_where']} ({code}, {f}): a correction needs a listed share to correct")
        if cells[(code, f)][1] in (1, 2, 7):
            cells[(code, f)] = (p, 8)

    # A narrower finding listed for a condition makes its broader finding at least as likely.
    implied = implications(findings, findings)
    for (c, f), (p, _) in sorted(cells.items()):
        for b in implied.get(f, []):
            if (c, b) not in cells or cells[(c, b)][0] < p and cells[(c, b)][1] == 6:
                cells[(c, b)] = (p, 6)

    # Keep findings some condition lists or some red flag names.
    red_rows = _tables(sources, "red_flags*.jsonl")
    for r in red_rows:
        for key in ("when", "ask_when"):
            if isinstance(r.get(key), list):
                r[key] = list(dict.fromkeys(canon(str(f)) for f in r[key]))
    flag_refs = {f for r in red_rows for f in [*r.get("when", []), *r.get("ask_when", [])]}
    used = {f for (_, f) in cells} | flag_refs | {preg}
    unknown_refs = sorted(f for f in flag_refs if f not in findings)
    if unknown_refs:
        raise PackError(f"red_flags: unknown findings {unknown_refs[:5]}")
    fcodes = [f for f in findings if f in used]
    fidx = {f: i for i, f in enumerate(fcodes)}
    cidx = {c["code"]: i for i, c in enumerate(conds)}

    # Priors.
    logs = _symcat_prior_logs(symcat, symptoms)
    derived = np.array(sorted(logs.values()))
    default_log = float(np.quantile(derived, PRIOR_DEFAULT_QUANTILE))
    outside_log = float(np.quantile(derived, PRIOR_OUTSIDE_SYMCAT_QUANTILE))
    top = float(derived.max())
    tiers = _prevalence_tiers(sources, {c["code"] for c in conds})
    # Each tier's prior and the words that state its basis.
    tier_prior = {t: float(np.exp(np.quantile(derived, q) - top)) for t, q in PREVALENCE_QUANTILES.items()}
    tier_basis = {t: f"the {q:.0%} quantile of the derived priors" for t, q in PREVALENCE_QUANTILES.items()}
    tier_prior["very_rare"] = tier_prior["rare"] * VERY_RARE_FACTOR
    tier_basis["very_rare"] = f"{VERY_RARE_FACTOR:g} × the rare tier's prior ({tier_basis['rare']})"

    # Tests.
    alias, catalogue = _load_test_aliases(sources)
    kind_words = catalogue.pop("kind_words")
    cond_entries = []
    p_age, p_sex = [], []
    for c in conds:
        row = c["row"]
        tests: list[str] = []
        for m in c["medline"]:
            for t in medline[m]["test"]:
                tid = _test_id(t.split(" ", 1)[1] if t.startswith("CN") else t, alias, kind_words, catalogue)
                if tid not in tests:
                    tests.append(tid)
        if c["code"] in logs:
            prior, basis = float(np.exp(logs[c["code"]] - top)), "Bayes' rule on SymCAT P(condition | symptom) and P(symptom | condition), log least squares"
        elif c["code"] in tiers:
            t = tiers[c["code"]]
            prior = tier_prior[t["prevalence"]]
            basis = f"curated prevalence tier '{t['prevalence']}' ({t['basis']}; {t['_where'].split(':')[0]}, not yet clinically reviewed): {tier_basis[t['prevalence']]}"
        elif c["symcat"]:
            prior, basis = float(np.exp(default_log - top)), f"no prevalence in the sources: the {PRIOR_DEFAULT_QUANTILE:.0%} quantile of the derived priors"
        elif c.get("curated"):
            prior = tier_prior[row["prevalence"]]
            basis = f"curated prevalence tier '{row['prevalence']}' ({row['prevalence_basis']}): {tier_basis[row['prevalence']]}"
        else:
            prior = float(np.exp(outside_log - top))
            basis = f"not among SymCAT's encounter-based conditions, no prevalence in the sources: the {PRIOR_OUTSIDE_SYMCAT_QUANTILE:.0%} quantile of the derived priors"
        syn = sorted({s for s in [*row.get("synonyms", []), *c.get("extra_synonyms", [])] if norm_name(s) != norm_name(row["name"])})
        entry = {
            "code": c["code"],
            "name": row["name"],
            "icd10": row.get("icd10", ""),
            "system": row["system"],
            "severity": SEVERITY_OF[row["urgency"]],
            "triage": row["urgency"],
            "rationale": row["rationale"],
            "urgency_basis": f"curated judgement for a typical symptomatic presentation, leaning to safety ({row['_where'].split(':')[0]}); not yet clinically reviewed",
            "prior": _round(prior),
            "prior_basis": basis,
            "applicability": {
                "sex": row["sex"], "age_min": row.get("age_min", 0), "age_max": row.get("age_max", 120), "pregnancy_only": bool(row.get("pregnancy_only", False)),
                **({"age_basis": row["age_basis"]} if row.get("age_basis") else {}),
            },  # fmt: skip
            "synonyms": syn,
            "symptoms": sorted((f for (cc, f), (p, s) in cells.items() if cc == c["code"] and (s in (1, 2, 3, 7) or s == 8 and p >= 0.1)), key=lambda f: fidx[f]),
            "tests": tests,
            **({"ddxplus": ddx_matched[c["code"]]} if c["code"] in ddx_matched else {}),
            "source": c["source"] + (f"; also MedlinePlus: {', '.join(c['medline'])}" if c["symcat"] and c["medline"] else "")
            + (f"; DDXPlus statistics: {ddx_matched[c['code']]}" if c["code"] in ddx_matched else "")
            + f"; urgency, ICD-10, system, applicability curated ({row['_where'].split(':')[0]}; not yet clinically reviewed)",
        }
        cond_entries.append(entry)
        sym = c["symcat"] or {}
        a, s = _age_sex(sym.get("age"), sym.get("sex"), row)
        p_age.append(a)
        p_sex.append(s)

    # Red flags.
    flags = []
    seen_flags = set()
    seen_when: dict[tuple[frozenset[str], str], dict[str, Any]] = {}
    for r in red_rows:
        rid = _need(r, "id")
        if rid in seen_flags:
            raise PackError(f"{r['_where']}: duplicate red flag {rid!r}")
        seen_flags.add(rid)
        if r.get("level") not in TRIAGE_LEVELS or not r.get("when") or not str(r.get("advice", "")).strip() or not str(r.get("basis", "")).strip():
            raise PackError(f"{r['_where']} ({rid}): a red flag needs when, level, advice and basis")
        when, ask_when = _generalise_flag(r["when"], r.get("ask_when", []), implied)
        key = (frozenset(when), r["level"])
        if key in seen_when:  # two rules on kinds of one symptom became the same rule
            seen_when[key]["ask_when"] = list(dict.fromkeys([*seen_when[key]["ask_when"], *ask_when]))
            seen_when[key].setdefault("generalised_from", []).extend(r["when"])
            continue
        flag = {"id": rid, "when": [{"finding": f} for f in when], "ask_when": ask_when, "level": r["level"], "advice": r["advice"], "basis": r["basis"]}
        if when != list(r["when"]):
            flag["generalised_from"] = list(r["when"])
        seen_when[key] = flag
        flags.append(flag)

    if leak is None:
        col_leak, cap, leak_text = _base_rate_leak(cond_entries, cells, fcodes, cidx)
    else:
        col_leak, cap, leak_text = [leak] * len(fcodes), [1.0] * len(conds), f"one constant leak {leak} for every unlisted cell"
    # A background state (smoking, diabetes) is as common among a condition's patients as among everyone
    # when no source ties it to the condition: its population rate, not a symptom's leak.
    background = _background_rates(sources, fidx)
    for j, row in background.items():
        col_leak[j] = row["rate"]
    if background:
        leak_text += "; a background state's leak is its population rate whatever the condition (sources/broad/background*.jsonl, each row naming its basis)"
    # Likelihood cells (sparse): listed cells; everything else is the leak.
    columns = [[f, None] for f in fcodes]
    cell_rows = sorted(
        [cidx[c], fidx[f], _round(EPS + (1 - 2 * EPS) * min(max(p * (1 - (miss if s != 5 else 0.0)), col_leak[fidx[f]]), 1.0)), s]
        for (c, f), (p, s) in cells.items() if f in fidx
    )
    finding_entries = []
    for f in fcodes:
        e = findings[f]
        finding_entries.append({k: e[k] for k in ("code", "kind", "question", "label", "system", "age_range", "source") if k in e})
    # A term naming a finding inside this one's label is left to that finding, also where this one is its
    # opposite or one choice of a list ("jaw pain when chewing" is not the giant-cell-arteritis sign).
    contains = implications(findings, fcodes, strict=False)
    lexicon = _lexicon(findings, fcodes, ddx, ddx_map, medline, cn_map, {a: [b for b in bs if b in fidx] for a, bs in implied.items() if a in fidx}, sources, merged,
                       contains={a: [b for b in bs if b in fidx] for a, bs in contains.items()})  # fmt: skip
    lexicon["blocked"] = _blocked_phrases(lexicon, cond_entries, {k for k, (p, _) in cells.items() if p >= 0.1})
    complaint_counts = defaultdict(int)
    for (c, f), (p, s) in cells.items():
        if s == 1 and p >= 0.3:
            complaint_counts[f] += 1
    common = [f for f, _ in sorted(complaint_counts.items(), key=lambda x: (-x[1], x[0]))[:20]]
    used_tests = sorted({t for e in cond_entries for t in e["tests"]})
    test_entries = [
        {"id": t, "name": catalogue[t]["name"], "kind": catalogue[t]["kind"], **({"generic": True} if catalogue[t].get("generic") else {}),
         "source": "MedlinePlus test lists (medlineplus_893.json); names merged by sources/broad/tests.json"}
        for t in used_tests
    ]  # fmt: skip
    pack = {
        "format": PACK_FORMAT,
        "name": "broad",
        "version": PACK_VERSION,
        "description": f"{len(conds)} conditions across {len({e['system'] for e in cond_entries})} body systems with {len(fcodes)} findings, from SymCAT, MedlinePlus and DDXPlus.",
        "license": "SymCAT symptom-checker data (no licence stated by the original; credited as 'SymCAT', optional pack) as parsed by teliov/symcat-to-synthea and mila-iqia/Casande-RL (MIT); MedlinePlus (U.S. National Library of Medicine) topic extraction from mila-iqia/Casande-RL (MIT); DDXPlus statistics CC-BY 4.0 (Fansi Tchango et al., 2022).",
        "provenance": {
            "built_by": "python -m diagnostician.knowledge.build_broad --data ../shared/data --out src/diagnostician/knowledge/packs/broad",
            "inputs": ["symcat/symcat_conditions_801.json", "symcat/symcat_symptoms_474.json", "medlineplus/medlineplus_893.json", "packs/ddxplus (statistics of matched conditions)", "sources/broad/*.jsonl, tests.json (curated; not yet clinically reviewed)"],
            "likelihood_sources": {str(k): v for k, v in SOURCE_CODES.items()},
            "absent_symptom_model": f"A symptom no source lists for a condition gets a leak: {leak_text}. A listed symptom's share p becomes p·(1 − {miss}) (report-miss rate: a patient who has it says no this often; not on the pregnancy applicability), so answering 'no' multiplies by 1 − p·(1 − {miss}). Answer noise EPS = {EPS} on every cell.",
            "background_rates": [{"finding": fcodes[j], "rate": r["rate"], "basis": r["basis"]} for j, r in sorted(background.items())],
            "medlineplus_share": f"{ml_share} = mean SymCAT share of {len(both)} symptoms MedlinePlus also lists for the same condition",
            "priors": "P(c) ∝ P(c | s) P(s) / P(s | c) from SymCAT's symptom pages (common causes) and condition pages, solved in log space by least squares; others: "
            "a curated prevalence tier (common / uncommon / rare: the 75 / 40 / 10 % quantiles of the derived priors; very rare: "
            f"{VERY_RARE_FACTOR:g} × rare), else the {PRIOR_DEFAULT_QUANTILE:.0%} quantile (SymCAT) or {PRIOR_OUTSIDE_SYMCAT_QUANTILE:.0%} (outside SymCAT). "
            "Each condition states its basis in prior_basis.",
            "demographics": f"P(age band | c) ∝ SymCAT age odds (floor {ODDS_FLOOR}) × US Census 2010 band shares; P(sex | c) likewise; bands or sexes outside the curated applicability × {APPLICABILITY_FLOOR}.",
        },
        "review_status": "not yet clinically reviewed",
        "common_complaints": common,
        "findings": finding_entries,
        "conditions": cond_entries,
        "red_flags": flags,
        "tests": test_entries,
        # How the DDXPlus pack's findings name this pack's (curated sources/broad/ddxplus_map.jsonl), for
        # the combined "broad+ddxplus" pack where DDXPlus statistics take precedence inside their scope.
        "crosswalk": {"ddxplus": {"findings": {e: f for e, f in sorted(ddx_map.items()) if f in fidx}}},
        # Narrower finding → broader findings it presupposes; the engine counts the broader ones present too.
        "implies": {a: [b for b in bs if b in fidx] for a, bs in implied.items() if a in fidx and any(b in fidx for b in bs)},
    }
    likelihoods = {
        "conditions": [c["code"] for c in conds],
        "columns": columns,
        "default_p_columns": [_round(EPS + (1 - 2 * EPS) * v) for v in col_leak],
        "default_p_cap": [_round(EPS + (1 - 2 * EPS) * v) for v in cap],
        "default_p_uncapped": sorted(background),
        "default_source": 0,
        "cells": cell_rows,
        "source_legend": {str(k): v for k, v in SOURCE_CODES.items()},
        "age": {"bands": [list(b) for b in AGE_BANDS], "p": p_age},
        "sex": {"columns": ["F", "M"], "p": p_sex},
    }
    return {"pack.json": pack, "likelihoods.json": likelihoods, "lexicon_en.json": lexicon}


def _blocked_phrases(lexicon: dict[str, Any], cond_entries: list[dict[str, Any]], listed: set[tuple[str, str]]) -> dict[str, Any]:
    """Condition names containing a term of a finding the condition does not have ("hay fever": no fever).

    Names whose contained finding the condition lists ("scarlet fever", "acute low back pain") stay
    readable as that finding.
    """
    words_of = {(f, t): " " + " ".join(re.findall(r"[a-z0-9]+", t)) + " " for f, e in lexicon["findings"].items() for t in e["terms"]}
    terms = {t for (_, t) in words_of}
    out = set()
    for e in cond_entries:
        for name in [e["name"], *e["synonyms"]]:
            n = " " + " ".join(re.findall(r"[a-z0-9]+", re.sub(r"\(.*?\)", " ", name.lower()))) + " "
            if len(n.split()) < 2 or n.strip() in terms:
                continue
            inside = {f for (f, _), w in words_of.items() if w.strip() and w in n}
            if inside and not any((e["code"], f) in listed for f in inside):
                out.add(n.strip())
    return {"source": "curated", "about": "Pack condition names containing a finding term: the reader does not take them as that finding.", "terms": sorted(out)}


def _base_rate_leak(
    cond_entries: list[dict[str, Any]], cells: dict[tuple[str, str], tuple[float, int]], fcodes: list[str], cidx: dict[str, int]
) -> tuple[list[float], list[float], str]:
    """Per-finding leak (prior-weighted base rate, clipped) and per-condition cap (least frequent listed SymCAT share)."""
    prior = np.array([e["prior"] for e in cond_entries])
    prior = prior / prior.sum()
    fidx = {f: i for i, f in enumerate(fcodes)}
    mass = np.zeros(len(fcodes))
    cap = np.ones(len(cond_entries))
    for (c, f), (p, src) in cells.items():
        if f in fidx and src != 6:
            mass[fidx[f]] += prior[cidx[c]] * p
        if src == 1:
            cap[cidx[c]] = min(cap[cidx[c]], p)
    col = np.clip(mass, LEAK_MIN, LEAK_MAX)
    text = (f"the finding's base rate (prior-weighted mean listed share over all conditions) clipped to [{LEAK_MIN}, {LEAK_MAX}], "
            "and for SymCAT conditions at most their least frequent listed symptom's share")  # fmt: skip
    return [_round(v) for v in col], [_round(v) for v in cap], text


def _background_rates(sources: Path, fidx: dict[str, int]) -> dict[int, dict[str, Any]]:
    """Column → background row ({"finding", "rate", "basis"}) from the optional tables; a bad or repeated row fails the build."""
    out: dict[int, dict[str, Any]] = {}
    for row in _optional_tables(sources, "background*.jsonl"):
        code, rate = str(row.get("finding", "")), row.get("rate")
        if code not in fidx:
            raise PackError(f"{row['_where']}: unknown finding {code!r} (or one no condition lists)")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= BACKGROUND_MAX:
            raise PackError(f"{row['_where']} ({code}): rate {rate!r} is not in (0, {BACKGROUND_MAX}]")
        if not str(row.get("basis", "")).strip():
            raise PackError(f"{row['_where']} ({code}): no basis")
        if fidx[code] in out:
            raise PackError(f"{row['_where']} ({code}): a second background rate for the finding")
        out[fidx[code]] = {"rate": float(rate), "basis": str(row["basis"]).strip()}
    return out


def _pregnancy_finding(findings: dict[str, dict[str, Any]]) -> str:
    for code in ("rf-pregnant", "pregnant", "rf-pregnancy"):
        if code in findings:
            return code
    raise PackError("the curated findings define no pregnancy finding (rf-pregnant)")


# Words that turn the phrase after them round: a "poor weight gain" is not a weight gain.
OPPOSING_WORDS = frozenset({"poor", "no", "not", "without", "lack", "lacking", "decreased", "reduced", "low", "less", "loss", "absent", "never"})


def implications(findings: dict[str, dict[str, Any]], codes: Iterable[str], strict: bool = True) -> dict[str, list[str]]:
    """Narrower finding → broader findings it presupposes, by label: "sharp chest pain" is a "chest pain".

    B is broader than A when B's label (two words or more) is a whole-word phrase inside A's label, unless
    a word before it turns it round ("poor weight gain" is no weight gain) or it is one choice of a list
    ("face drooping, arm weakness or speech problem" does not say the arm is weak). With strict False,
    every label inside another counts (which lay terms name the other finding).
    """
    labels = {f: " " + " ".join(re.findall(r"[a-z0-9]+", findings[f]["label"].lower())) + " " for f in codes}
    raw = {f: findings[f]["label"].lower() for f in codes}

    def presupposes(a: str, b: str) -> bool:
        """Whether A's label states B's rather than its opposite or one alternative of several."""
        before = labels[a][: labels[a].index(labels[b])].split()
        if before and before[-1] in OPPOSING_WORDS:
            return False
        words = r"\W+".join(map(re.escape, labels[b].split()))
        listed = re.search(r"\bor\b", raw[a]) and re.search(rf"(?:\bor\s+|,\s*)(?:\w+\s+)?{words}\b|\b{words}\s*(?:,|\bor\b)", raw[a])
        return not listed

    by_word: dict[str, set[str]] = defaultdict(set)
    for f, lab in labels.items():
        for w in lab.split():
            by_word[w].add(f)
    out: dict[str, list[str]] = {}
    for b, lab_b in labels.items():
        words = lab_b.split()
        if len(words) < 2:
            continue
        candidates = set.intersection(*(by_word[w] for w in words)) - {b}
        for a in sorted(candidates):
            if lab_b in labels[a] and labels[a] != lab_b and (not strict or presupposes(a, b)):
                out.setdefault(a, []).append(b)
    return {a: sorted(bs) for a, bs in sorted(out.items())}


def _lexicon(
    findings: dict[str, dict[str, Any]],
    fcodes: list[str],
    ddx: Any,
    ddx_map: dict[str, str],
    medline: dict[str, Any],
    cn_map: dict[str, str],
    implied: dict[str, list[str]],
    sources: Path | None = None,
    merged: dict[str, str] | None = None,
    *,
    contains: dict[str, list[str]],
) -> dict[str, Any]:
    """Lay terms of every finding: curated terms, MedlinePlus phrases of its concepts, and the DDXPlus lexicon of mapped findings.

    A term that also names a finding whose label sits inside this one's (`contains`) is left to that
    finding: "chest pain" does not say the pain is sharp. `implied` is the implication table the lexicon states.
    """
    phrases: dict[str, set[str]] = defaultdict(set)
    for v in medline.values():
        for t in v["symptom"]:
            code, _, phrase = t.partition(" ")
            if code in cn_map:
                phrases[cn_map[code]].add(phrase.strip().lower())
    ddx_terms: dict[str, list[str]] = defaultdict(list)
    lex_path = Path(ddx.root or DDXPLUS_DIR) / "lexicon_en.json"
    if lex_path.exists():
        dl = json.loads(lex_path.read_text(encoding="utf-8"))
        for e_code, target in ddx_map.items():
            ddx_terms[target].extend((dl["findings"].get(e_code) or {}).get("terms", []))
    all_terms = {f: list(dict.fromkeys([*findings[f]["terms"], *sorted(phrases.get(f, ())), *ddx_terms.get(f, [])])) for f in fcodes}
    extra = {name: _term_table(Path(SOURCES_DIR if sources is None else sources), f"{name}_terms*.jsonl", findings, merged or {}) for name in ("lay", "clinical")}
    for f in fcodes:
        all_terms[f] = list(dict.fromkeys([*all_terms[f], *extra["lay"].get(f, []), *extra["clinical"].get(f, [])]))
    normal = read_table(Path(SOURCES_DIR if sources is None else sources) / "normal_states.json")
    if not isinstance(normal, dict) or not isinstance(normal.get("entries"), list):
        raise PackError("normal_states.json: an object with 'about' and 'entries' expected")
    for i, entry in enumerate(normal["entries"]):
        unknown = [c for c in entry.get("denies", []) if c not in findings]
        if unknown:
            raise PackError(f"normal_states.json entries[{i}] ({', '.join(entry['subjects'][:2])}): unknown findings {unknown}")
    out = {}
    for f in fcodes:
        broader = {t for b in contains.get(f, []) for t in [*all_terms[b], findings[b]["label"].lower()]}
        terms = [t for t in all_terms[f] if t not in broader] or all_terms[f][:1]
        src = ["curated"] + (["medlineplus"] if phrases.get(f) else []) + (["ddxplus"] if ddx_terms.get(f) else []) + [name for name in ("lay", "clinical") if extra[name].get(f)]
        out[f] = {"terms": terms, "source": "; ".join(src)}
    return {
        "format": LEXICON_FORMAT,
        "pack": "broad",
        "language": "en",
        "review_status": "not yet clinically reviewed",
        "sources": {
            "curated": "lay labels and terms written for diagnostician (sources/broad; not yet clinically reviewed)",
            "medlineplus": "MedlinePlus symptom phrases of the merged concepts (medlineplus_893.json)",
            "ddxplus": "terms of the DDXPlus pack's lexicon for findings the curated map says are the same",
            "lay": "everyday first-person phrasings of the findings (sources/broad/lay_terms.jsonl; not yet clinically reviewed)",
            "clinical": "clinicians' vocabulary for the findings: abbreviations, medical terms, examination phrasing (sources/broad/clinical_terms.jsonl; not yet clinically reviewed)",
            "who": "World Health Organization / NICE NG143: fever is a body temperature of 38.0 °C or more",
            "vitals": ("adult vital-sign thresholds (from age 16): tachycardia a pulse of 100/min or more (AHA); bradycardia under 60/min (AHA), "
                       "taken here from under 50/min, the level usually worth acting on; breathing fast at 22/min or more (qSOFA, Singer et al., "
                       "JAMA 2016); hypotension a systolic pressure under 90 mmHg; hypertensive crisis 180 systolic or 120 diastolic or more "
                       "(ACC/AHA 2017). The absent side leaves a margin where the number decides nothing. Not yet clinically reviewed"),
            "normal": "body parts and functions a patient says are fine, and the findings that denies (sources/broad/normal_states.json; not yet clinically reviewed)",
        },
        "findings": out,
        "values": {},
        "scales": {},
        "measurements": _measurements(fcodes),
        "implies": {"about": "Narrower finding → the broader findings its label names (derived by the build from the labels).", "kind": "characterises",
                    "source": "curated", "findings": {a: bs for a, bs in implied.items() if bs}} if implied else {},  # fmt: skip
        "normal_states": {"about": normal["about"], "source": "normal", "entries": normal["entries"]},
    }


def write(files: dict[str, Any], out: str | Path) -> None:
    """Write the built files (sorted keys, one cell per line for the sparse table) into out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, obj in files.items():
        (out / name).write_text(dumps(name, obj), encoding="utf-8")


def dumps(name: str, obj: Any) -> str:
    """Deterministic JSON text of a pack file (the sparse table one cell per line)."""
    if name != "likelihoods.json":
        return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"
    head = {k: v for k, v in obj.items() if k != "cells"}
    body = ",\n".join(json.dumps(c) for c in obj["cells"])
    return json.dumps(head, ensure_ascii=False)[:-1] + ', "cells": [\n' + body + "\n]}\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: build the broad pack."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--sources", default=str(SOURCES_DIR))
    ap.add_argument("--out", default=str(Path(__file__).parent / "packs" / "broad"))
    ap.add_argument("--leak", type=float, default=LEAK, help="one constant leak instead of the base-rate model")
    ap.add_argument("--miss", type=float, default=MISS, help=f"report-miss rate on listed symptom cells (default {MISS})")
    args = ap.parse_args(argv)
    try:
        files = build(args.data, args.sources, leak=args.leak, miss=args.miss)
    except (PackError, OSError) as exc:  # a bad source table names its entry in one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write(files, args.out)
    pack = load_pack_dir(args.out)
    print(f"built {pack.name} {pack.version}: {len(pack.conditions)} conditions, {len(pack.findings)} findings, {len(pack.red_flags)} red flags, {len(pack.tests)} tests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
