"""Scoring core of the agent benchmarks: diagnosis matching, 3-level triage, paired tests, HealthBench.

Pure functions on plain data; nothing here runs a model.

Diagnosis matching (match_diagnosis) tries deterministic rules in order and reports the first that fires:
- "exact": equal after normalise_diagnosis (lowercase, accents and punctuation removed,
  possessive 's dropped, articles a/an/the dropped; clinical qualifiers such as "acute" are kept).
- "synonym": both names are in one synonym group (SYNONYM_GROUPS plus the caller's table, whose
  entries work in both directions).  Groups are not chained into each other.
- "icd10_family": both names (or a synonym of each) have ICD-10 codes in the caller's mapping and
  two of the codes share the 3-character category (I21.0 ~ I21.4).  This is permissive by design
  (stable and unstable angina share I20; croup and epiglottitis share J05); pass
  rules=STRICT_RULES to leave it out.
- "contains": every word of the shorter name is among the words of the longer one, and the
  shorter name has at least 2 words.  A one-word name never matches by containment, either way:
  "pneumonia" does not match "aspiration pneumonia", "angina" does not match "unstable angina" —
  a bare head noun and its qualified form are often different diagnoses; add synonyms where a
  benchmark accepts them.

Triage (Semigran et al. 2015 levels, most urgent first): "em" emergency care now, "ne" see a doctor
(within about a week), "sc" self-care.  The engine's levels map emergency → em, urgent_24h → ne,
see_doctor → ne, self_care → sc: "urgent_24h" asks for a doctor within a day, not the emergency
department, so the default puts it with "ne"; the strict variant (strict=True, reported beside the
default by triage_metrics) counts it as "em", which is how a reader who treats any same-day advice as
emergency advice would score it.

HealthBench (Arora et al. 2025): an example scores the points of the rubric items judged met
(negative items subtract) over the sum of positive points.  Here each example is clipped to [0, 1]
by default, as this project reports it; the official simple-evals code leaves examples unclipped and
clips only the mean — pass clip=False / clip_examples=False to reproduce it.  Standard errors are the
standard deviation of bootstrap means (1000 resamples of the examples), as in simple-evals.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from diagnostician.knowledge.schema import Pack

# ---------------------------------------------------------------------------------------------
# Diagnosis matching

RULES = ("exact", "synonym", "icd10_family", "contains")
STRICT_RULES = ("exact", "synonym", "contains")

ARTICLES = frozenset({"a", "an", "the"})
CONTAINS_MIN_WORDS = 2

# A starting set of common equivalent names; extend it per benchmark with the synonyms argument.
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("mi", "myocardial infarction", "heart attack", "acute myocardial infarction"),
    ("urti", "upper respiratory tract infection", "upper respiratory infection", "common cold"),
    ("copd", "chronic obstructive pulmonary disease"),
    ("gerd", "gord", "gastroesophageal reflux disease", "gastro oesophageal reflux disease", "acid reflux"),
    ("pe", "pulmonary embolism"),
    ("uti", "urinary tract infection"),
    ("covid 19", "covid-19", "covid", "sars-cov-2 infection"),
    ("dvt", "deep vein thrombosis", "deep venous thrombosis"),
    ("chf", "congestive heart failure", "heart failure"),
    ("sle", "systemic lupus erythematosus", "lupus"),
    ("afib", "af", "atrial fibrillation"),
    ("psvt", "paroxysmal supraventricular tachycardia"),
    ("tb", "tuberculosis"),
    ("flu", "influenza"),
    ("whooping cough", "pertussis"),
    ("hiv", "hiv infection", "human immunodeficiency virus infection"),
    ("mono", "infectious mononucleosis", "glandular fever"),
    ("tia", "transient ischemic attack", "transient ischaemic attack"),
    ("stroke", "cerebrovascular accident", "cva"),
)


@dataclass(frozen=True)
class Match:
    """Outcome of matching one predicted diagnosis against the gold one."""

    matched: bool
    rule: str  # "exact", "synonym", "icd10_family", "contains" or "none"
    detail: str = ""


def normalise_diagnosis(text: str) -> str:
    """Canonical form of a diagnosis name for comparison."""
    # The possessive goes before the ASCII fold, which would drop a typographic apostrophe and leave
    # "Hirschsprung’s" as "hirschsprungs".
    s = re.sub(r"['\u2019]s\b", "", str(text))
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii").lower()
    s = re.sub(r"[^a-z0-9]+", " ", s)
    return " ".join(w for w in s.split() if w not in ARTICLES)


# Normalised tables of the last mappings seen, by identity: a benchmark passes the same pack tables for
# every case, and rebuilding them per comparison would dominate its time.
_NORMALISED: dict[int, tuple[Any, Any]] = {}


def _cached(obj: Any, make: Callable[[], Any]) -> Any:
    hit = _NORMALISED.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    value = make()
    if len(_NORMALISED) > 32:
        _NORMALISED.clear()
    _NORMALISED[id(obj)] = (obj, value)
    return value


def _synonym_groups(synonyms: Mapping[str, Sequence[str]] | None) -> list[frozenset[str]]:
    if synonyms:
        return _cached(synonyms, lambda: _make_groups(synonyms))
    return _make_groups(None)


def _make_groups(synonyms: Mapping[str, Sequence[str]] | None) -> list[frozenset[str]]:
    groups = [frozenset(normalise_diagnosis(t) for t in g) for g in SYNONYM_GROUPS]
    for key, values in (synonyms or {}).items():
        vals = [values] if isinstance(values, str) else list(values)
        groups.append(frozenset(normalise_diagnosis(t) for t in [key, *vals]))
    return groups


def _icd_categories(code: str) -> set[str]:
    parts = re.split(r"[,;/\s]+", code.upper())
    # Chapter U holds codes for special purposes (U07.0 vaping lung injury, U07.1 COVID-19): its
    # categories are no disease families.
    return {p.replace(".", "")[:3] for p in parts if len(p.replace(".", "")) >= 3 and not p.startswith("U")}


def _codes_of(name: str, icd: Mapping[str, str], groups: list[frozenset[str]]) -> tuple[str, set[str]]:
    """The ICD-10 code text and categories of a normalised name, directly or through a synonym."""
    if name in icd:
        return icd[name], _icd_categories(icd[name])
    for g in groups:
        if name in g:
            for other in sorted(g):
                if other in icd:
                    return icd[other], _icd_categories(icd[other])
    return "", set()


def match_diagnosis(
    predicted: str,
    gold: str,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    icd10: Mapping[str, str] | None = None,
    *,
    rules: Collection[str] = RULES,
) -> Match:
    """Whether a predicted diagnosis names the gold one, and by which rule."""
    p, g = normalise_diagnosis(predicted), normalise_diagnosis(gold)
    if not p or not g:
        return Match(False, "none", "empty name")
    if "exact" in rules and p == g:
        return Match(True, "exact", p)
    groups = _synonym_groups(synonyms)
    if "synonym" in rules:
        for grp in groups:
            if p in grp and g in grp:
                return Match(True, "synonym", f"{p!r} ~ {g!r}")
    if "icd10_family" in rules and icd10:
        icd = _cached(icd10, lambda: {normalise_diagnosis(k): v for k, v in icd10.items() if v})
        pc, pcat = _codes_of(p, icd, groups)
        gc, gcat = _codes_of(g, icd, groups)
        shared = pcat & gcat
        if shared:
            return Match(True, "icd10_family", f"{pc} ~ {gc} (category {min(shared)})")
    if "contains" in rules:
        pw, gw = set(p.split()), set(g.split())
        short, long_ = (pw, gw) if len(pw) <= len(gw) else (gw, pw)
        if len(short) >= CONTAINS_MIN_WORDS and short <= long_:
            side = "gold in prediction" if short is gw else "prediction in gold"
            return Match(True, "contains", side)
    return Match(False, "none", "")


def top_k_hit(
    predictions: Sequence[str],
    gold: str,
    k: int,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    icd10: Mapping[str, str] | None = None,
    *,
    rules: Collection[str] = RULES,
) -> tuple[bool, int | None, Match]:
    """Whether the gold diagnosis is among the first k predictions: (hit, 1-based rank, match)."""
    for i, pred in enumerate(list(predictions)[: max(0, k)]):
        m = match_diagnosis(pred, gold, synonyms, icd10, rules=rules)
        if m.matched:
            return True, i + 1, m
    return False, None, Match(False, "none", f"not in top {k}")


def icd10_map(pack: Pack) -> dict[str, str]:
    """Condition name → ICD-10 code of a knowledge pack, for match_diagnosis (one object per pack)."""
    return _pack_tables(pack)[1]


def pack_synonyms(pack: Pack) -> dict[str, list[str]]:
    """Condition name → the other names the pack gives it, for match_diagnosis (one object per pack)."""
    return _pack_tables(pack)[2]


def _pack_tables(pack: Pack) -> tuple[Any, dict[str, str], dict[str, list[str]]]:
    # The same mapping objects for every case, so the normalised tables built from them are cached too.
    return _cached(pack, lambda: (pack, {c.name: c.icd10 for c in pack.conditions if c.icd10}, {c.name: list(c.synonyms) for c in pack.conditions if c.synonyms}))


# ---------------------------------------------------------------------------------------------
# Triage against 3-level gold

SEMIGRAN_LEVELS = ("em", "ne", "sc")  # most urgent first; the index is the urgency rank
TO_SEMIGRAN = {"emergency": "em", "urgent_24h": "ne", "see_doctor": "ne", "self_care": "sc"}
TO_SEMIGRAN_STRICT = {**TO_SEMIGRAN, "urgent_24h": "em"}


def to_semigran(level: str, strict: bool = False) -> str:
    """The Semigran level (em/ne/sc) of an engine triage level, or of a Semigran level itself."""
    if level in SEMIGRAN_LEVELS:
        return level
    table = TO_SEMIGRAN_STRICT if strict else TO_SEMIGRAN
    try:
        return table[level]
    except KeyError:
        raise ValueError(f"unknown triage level {level!r}") from None


def _triage_core(gold: Sequence[str], pred: Sequence[str]) -> dict[str, Any]:
    g = np.array([SEMIGRAN_LEVELS.index(x) for x in gold])
    p = np.array([SEMIGRAN_LEVELS.index(x) for x in pred])
    conf = np.zeros((3, 3), dtype=int)
    np.add.at(conf, (g, p), 1)
    em = g == 0
    return {
        "n": int(len(g)),
        "accuracy": float((g == p).mean()),
        "under_triage": float((p > g).mean()),
        "over_triage": float((p < g).mean()),
        "emergency_recall": float((p[em] == 0).mean()) if em.any() else None,
        "recall_by_level": {
            lvl: (float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None) for i, lvl in enumerate(SEMIGRAN_LEVELS)
        },
        "confusion": {lvl: dict(zip(SEMIGRAN_LEVELS, map(int, conf[i]))) for i, lvl in enumerate(SEMIGRAN_LEVELS)},
    }


def triage_metrics(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Accuracy, under/over-triage, emergency recall and confusion (gold row → predicted column) on em/ne/sc.

    Predictions may be engine levels or em/ne/sc; "strict" holds the same metrics with urgent_24h as em.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold levels but {len(predicted)} predictions")
    if not gold:
        return {"n": 0}
    g = [to_semigran(x) for x in gold]
    p = [to_semigran(x) for x in predicted]
    out = _triage_core(g, p)
    out["accuracy_ci"] = bootstrap_ci([a == b for a, b in zip(g, p)])
    out["strict"] = _triage_core(g, [to_semigran(x, strict=True) for x in predicted])
    return out


# ---------------------------------------------------------------------------------------------
# Paired comparison

MCNEMAR_EXACT_BELOW = 25  # discordant pairs; from this many on, the chi-square approximation is used


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (doubled smaller tail)."""
    if n == 0:
        return 1.0
    lo = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(lo + 1))
    return min(1.0, 2 * tail / 2**n)


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, Any]:
    """McNemar's test of two systems scored on the same cases (b01: A wrong, B right; b10: A right, B wrong)."""
    if len(correct_a) != len(correct_b):
        raise ValueError(f"{len(correct_a)} results for A but {len(correct_b)} for B")
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    b01, b10 = int((~a & b).sum()), int((a & ~b).sum())
    n = b01 + b10
    out: dict[str, Any] = {
        "n": int(len(a)),
        "accuracy_a": float(a.mean()) if len(a) else None,
        "accuracy_b": float(b.mean()) if len(b) else None,
        "b01": b01,
        "b10": b10,
        "p_exact": binomial_two_sided_p(b01, n),
        "chi2": None,
        "p_chi2": None,
    }
    if n >= MCNEMAR_EXACT_BELOW:
        x = (abs(b01 - b10) - 1) ** 2 / n
        out.update(chi2=x, p_chi2=math.erfc(math.sqrt(x / 2)), method="chi2_cc", p_value=math.erfc(math.sqrt(x / 2)))
    else:
        out.update(method="exact", p_value=out["p_exact"])
    return out


# ---------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_ci(
    values: Iterable[float],
    statistic: Callable[[np.ndarray], float] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | None]:
    """Estimate, bootstrap standard error and percentile interval of a statistic (default: the mean)."""
    x = np.asarray(list(values), dtype=float)
    stat = statistic or (lambda v: float(np.mean(v)))
    if len(x) == 0:
        return {"estimate": None, "se": None, "low": None, "high": None}
    if np.all(x == x[0]):  # every resample is the same array: no spread (np.std would leave rounding noise)
        est = float(stat(x))
        return {"estimate": est, "se": 0.0, "low": est, "high": est}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_bootstrap, len(x)))
    boots = np.array([stat(x[i]) for i in idx])
    alpha = (1 - level) / 2
    return {
        "estimate": float(stat(x)),
        "se": float(boots.std()),
        "low": float(np.quantile(boots, alpha)),
        "high": float(np.quantile(boots, 1 - alpha)),
    }


# ---------------------------------------------------------------------------------------------
# HealthBench


def healthbench_example_score(rubric_points: Sequence[float], met: Sequence[bool], clip: bool = True) -> float | None:
    """Points of the met rubric items over the positive points available (None without positive points)."""
    if len(rubric_points) != len(met):
        raise ValueError(f"{len(rubric_points)} rubric items but {len(met)} verdicts")
    pts = np.asarray(rubric_points, dtype=float)
    ok = np.asarray(met, dtype=bool)
    possible = float(pts[pts > 0].sum())
    if possible <= 0:
        return None
    score = float(pts[ok].sum()) / possible
    return min(1.0, max(0.0, score)) if clip else score


def _clipped_mean(v: np.ndarray) -> float:
    return float(np.clip(np.mean(v), 0.0, 1.0))


def _summary(values: Sequence[float], n_bootstrap: int, seed: int) -> dict[str, Any]:
    ci = bootstrap_ci(values, _clipped_mean, n_bootstrap=n_bootstrap, seed=seed)
    return {"mean": ci["estimate"], "se": ci["se"], "n": len(values)}


def healthbench_overall(
    scores: Sequence[float | None] | None,
    tags_per_example: Sequence[Sequence[str]] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    items: Sequence[Sequence[tuple[float, bool, Sequence[str]]]] | None = None,
    clip_examples: bool = True,
) -> dict[str, Any]:
    """Mean score with bootstrap SE, by example tag (theme:*) and, given rubric items, by item tag (axis:*).

    scores may be None when items are given (they are then computed from the items).  Examples whose
    score is None are left out and counted in n_unscored.
    """
    if items is not None:
        computed = [healthbench_example_score([i[0] for i in ex], [i[1] for i in ex], clip_examples) for ex in items]
        if scores is None:
            scores = computed
        elif len(items) != len(scores):
            raise ValueError(f"{len(scores)} scores but {len(items)} item lists")
    if scores is None:
        raise ValueError("give scores or items")
    tags_per_example = tags_per_example if tags_per_example is not None else [()] * len(scores)
    if len(tags_per_example) != len(scores):
        raise ValueError(f"{len(scores)} scores but {len(tags_per_example)} tag lists")
    kept = [float(s) for s in scores if s is not None]
    out: dict[str, Any] = {**_summary(kept, n_bootstrap, seed), "n_unscored": len(scores) - len(kept)}
    by_tag: dict[str, list[float]] = defaultdict(list)
    for s, tags in zip(scores, tags_per_example):
        if s is not None:
            for t in dict.fromkeys(tags):
                by_tag[t].append(float(s))
    out["by_tag"] = {t: _summary(v, n_bootstrap, seed) for t, v in sorted(by_tag.items())}
    if items is not None:
        by_item_tag: dict[str, list[float]] = defaultdict(list)
        for ex in items:
            groups: dict[str, list[tuple[float, bool]]] = defaultdict(list)
            for points, met, tags in ex:
                for t in dict.fromkeys(tags):
                    groups[t].append((points, met))
            for t, its in groups.items():
                s = healthbench_example_score([i[0] for i in its], [i[1] for i in its], clip_examples)
                if s is not None:
                    by_item_tag[t].append(s)
        out["by_item_tag"] = {t: _summary(v, n_bootstrap, seed) for t, v in sorted(by_item_tag.items())}
    return out


_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_KEY = re.compile(r"""["']?criteria_met["']?\s*[:=]\s*["']?(true|false|yes|no)\b""", re.I)
_WORDS = {"true": True, "yes": True, "false": False, "no": False}


def _verdict_value(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return _WORDS.get(v.strip().lower())
    return None


def parse_grader_verdict(text: str | None) -> bool | None:
    """The criteria_met verdict of a grader reply, leniently read; None when it cannot be read."""
    if not text or not text.strip():
        return None
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for cand in candidates:
        for start in (m.start() for m in re.finditer(r"\{", cand)):
            try:
                obj, _ = decoder.raw_decode(cand, start)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and "criteria_met" in obj:
                return _verdict_value(obj["criteria_met"])
    m = _KEY.search(text)
    if m:
        return _WORDS[m.group(1).lower()]
    bare = re.sub(r"[^a-z]", "", _FENCE.sub(lambda mm: mm.group(1), text).lower())
    return _WORDS.get(bare)


def parse_grader_verdicts(texts: Iterable[str | None]) -> tuple[list[bool | None], int]:
    """Verdicts of many grader replies and the number that could not be read."""
    verdicts = [parse_grader_verdict(t) for t in texts]
    return verdicts, sum(v is None for v in verdicts)


# ---------------------------------------------------------------------------------------------
# An optional LLM judge, asked only where the deterministic rules find no match

JUDGE_PROMPT = """\
You compare two diagnoses. Answer with exactly one word: yes if the predicted diagnosis names the same \
condition as the reference diagnosis (a synonym, a more specific form of it, or the same disease with \
another name), no otherwise.

Reference diagnosis: {gold}
Predicted diagnosis: {prediction}"""


def judge_verdict(reply: str) -> bool | None:
    """yes → True, no → False, anything else (or both) → None, read leniently."""
    words = set(re.findall(r"[a-z]+", (reply or "").lower()))
    yes, no = bool(words & {"yes", "same", "true"}), bool(words & {"no", "different", "false"})
    return None if yes == no else yes


def judged_top_k(client: Any, predictions: Sequence[str], gold: str, k: int, max_tokens: int = 8) -> tuple[bool, int | None, list[dict[str, Any]]]:
    """Ask a judge model, prediction by prediction, whether one of the first k names the gold diagnosis; every judgement kept."""
    log: list[dict[str, Any]] = []
    for i, pred in enumerate(list(predictions)[: max(0, k)]):
        try:
            reply = client.chat([{"role": "user", "content": JUDGE_PROMPT.format(gold=gold, prediction=pred)}], max_tokens=max_tokens, temperature=0.0)
        except Exception as exc:  # a judge that fails leaves the rules' verdict standing; the failure is logged
            log.append({"prediction": pred, "reply": None, "verdict": None, "error": str(exc)[:200]})
            break
        verdict = judge_verdict(reply if isinstance(reply, str) else "")
        log.append({"prediction": pred, "reply": (reply or "")[:200], "verdict": verdict})
        if verdict:
            return True, i + 1, log
    return False, None, log


RULE_STRENGTH = {"exact": 0, "synonym": 1, "contains": 2, "icd10_family": 3}


def gold_conditions(pack: Any, diagnosis: str, synonyms: Mapping[str, Sequence[str]], icd10: Mapping[str, str]) -> list[Any]:
    """The pack's conditions that name a gold diagnosis, the closest first (its own name, a synonym, a containing name, then an ICD-10 sibling)."""
    found = []
    for c in pack.conditions:
        m = match_diagnosis(c.name, diagnosis, synonyms, icd10)
        if m.matched:
            found.append((RULE_STRENGTH.get(m.rule, 9), len(found), c))
    return [c for _, _, c in sorted(found)]
