"""Scoring core of the agent benchmarks, on hand-made data with hand-computed expectations."""

from __future__ import annotations

import math

import pytest

from diagnostician.bench.scoring import (
    STRICT_RULES,
    Match,
    binomial_two_sided_p,
    bootstrap_ci,
    gold_conditions,
    healthbench_example_score,
    healthbench_overall,
    icd10_map,
    match_diagnosis,
    mcnemar,
    normalise_diagnosis,
    parse_grader_verdict,
    parse_grader_verdicts,
    to_semigran,
    top_k_hit,
    triage_metrics,
)

# --- normalisation and matcher rules -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The Guillain-Barré Syndrome", "guillain barre syndrome"),
        ("Meniere's Disease", "meniere disease"),
        ("Hirschsprung\u2019s disease", "hirschsprung disease"),  # a typographic apostrophe too
        ("Acute Cholecystitis.", "acute cholecystitis"),  # clinical qualifiers stay
        ("COVID-19", "covid 19"),
        ("  an   Acute  MI ", "acute mi"),
    ],
)
def test_normalise_diagnosis(text: str, want: str) -> None:
    assert normalise_diagnosis(text) == want


def test_exact_rule() -> None:
    assert match_diagnosis("Acute Pancreatitis", "acute pancreatitis.") == Match(True, "exact", "acute pancreatitis")
    assert match_diagnosis("Meniere's disease", "Meniere Disease").rule == "exact"
    m = match_diagnosis("Acute Pancreatitis", "Chronic Pancreatitis")
    assert (m.matched, m.rule) == (False, "none")
    assert match_diagnosis("", "Pneumonia").matched is False


def test_synonym_rule_builtin_both_directions() -> None:
    assert match_diagnosis("Heart attack", "MI").rule == "synonym"
    assert match_diagnosis("MI", "heart attack").rule == "synonym"
    assert match_diagnosis("Acid reflux", "GERD").rule == "synonym"
    assert match_diagnosis("SARS-CoV-2 infection", "COVID 19").rule == "synonym"
    assert match_diagnosis("common cold", "URTI").rule == "synonym"
    assert match_diagnosis("Deep Venous Thrombosis", "DVT").rule == "synonym"
    assert not match_diagnosis("PE", "UTI").matched
    assert not match_diagnosis("heart attack", "pulmonary embolism").matched


def test_synonym_rule_caller_table() -> None:
    table = {"BPH": ["benign prostatic hyperplasia", "enlarged prostate"]}
    assert match_diagnosis("benign prostatic hyperplasia", "BPH", synonyms=table).rule == "synonym"
    assert match_diagnosis("BPH", "Benign prostatic hyperplasia", synonyms=table).rule == "synonym"
    assert match_diagnosis("enlarged prostate", "benign prostatic hyperplasia", synonyms=table).rule == "synonym"
    assert not match_diagnosis("BPH", "benign prostatic hyperplasia").matched  # not without the table
    # groups are not chained: "x" ~ "mi" and "mi" ~ "heart attack" does not make "x" ~ "heart attack"
    assert not match_diagnosis("x", "heart attack", synonyms={"x": ["mi"]}).matched


def test_icd10_family_rule_hand_mapping() -> None:
    icd = {"STEMI": "I21.0", "NSTEMI": "I21.4", "Stable angina": "I20.9", "Myocardial infarction": "I21.9"}
    m = match_diagnosis("STEMI", "NSTEMI", icd10=icd)
    assert (m.matched, m.rule) == (True, "icd10_family") and "I21" in m.detail
    assert not match_diagnosis("STEMI", "Stable angina", icd10=icd).matched  # I21 vs I20
    assert not match_diagnosis("STEMI", "Pericarditis", icd10=icd).matched  # gold has no code
    assert not match_diagnosis("STEMI", "NSTEMI").matched  # no mapping, no family rule
    assert not match_diagnosis("STEMI", "NSTEMI", icd10=icd, rules=STRICT_RULES).matched
    # a name without a code borrows one from its synonym group: heart attack ~ myocardial infarction (I21.9)
    assert match_diagnosis("heart attack", "NSTEMI", icd10=icd).rule == "icd10_family"
    # several codes in one field (DDXPlus writes "J17, J18"): any shared category matches
    assert match_diagnosis("Lobar pneumonia", "Pneumonia", icd10={"Pneumonia": "J17, J18", "Lobar pneumonia": "J18.1"}).rule == "icd10_family"
    # Chapter U codes are for special purposes, not families: vaping lung injury (U07.0) is no COVID-19 (U07.1).
    assert not match_diagnosis("Vaping lung injury", "COVID-19", icd10={"Vaping lung injury": "U07.0", "COVID-19": "U07.1"}).matched


def test_the_closest_pack_condition_is_the_gold_one() -> None:
    from types import SimpleNamespace as NS

    pack = NS(conditions=[NS(name="Ascending cholangitis"), NS(name="Primary sclerosing cholangitis"), NS(name="Gallstones")])
    icd = {"Ascending cholangitis": "K83.0", "Primary sclerosing cholangitis": "K83.01", "Gallstones": "K80.2"}
    # Both cholangitis share K83; the condition named like the diagnosis comes first, the ICD-10 sibling after.
    assert [c.name for c in gold_conditions(pack, "Primary sclerosing cholangitis", {}, icd)] == ["Primary sclerosing cholangitis", "Ascending cholangitis"]
    assert gold_conditions(pack, "Appendicitis", {}, icd) == []


def test_icd10_family_rule_ddxplus_pack(pack) -> None:
    icd = icd10_map(pack)
    assert icd["Unstable angina"] == "I20.0" and icd["Stable angina"] == "I20.9"
    assert match_diagnosis("Unstable angina", "Stable angina", icd10=icd).rule == "icd10_family"
    assert match_diagnosis("Croup", "Epiglottitis", icd10=icd).rule == "icd10_family"  # J05.0 / J05.1
    assert not match_diagnosis("Pericarditis", "Myocarditis", icd10=icd).matched  # I30 vs I51
    assert not match_diagnosis("Croup", "Epiglottitis", icd10=icd, rules=STRICT_RULES).matched


def test_contains_rule() -> None:
    m = match_diagnosis("Unstable angina pectoris", "Unstable Angina")
    assert (m.matched, m.rule, m.detail) == (True, "contains", "gold in prediction")
    assert match_diagnosis("unstable angina", "unstable angina pectoris").detail == "prediction in gold"
    assert match_diagnosis("acute on chronic heart failure", "Heart Failure").rule == "contains"
    # a one-word shorter side never matches by containment, in either direction
    assert not match_diagnosis("aspiration pneumonia", "pneumonia").matched
    assert not match_diagnosis("pneumonia", "aspiration pneumonia").matched
    assert not match_diagnosis("Variant angina", "Angina").matched
    # two words, not all shared
    assert not match_diagnosis("acute pancreatitis", "chronic pancreatitis").matched
    assert not match_diagnosis("Unstable angina pectoris", "Unstable Angina", rules=("exact",)).matched


def test_top_k_hit() -> None:
    preds = ["Pneumonia", "Heart attack", "Pulmonary embolism"]
    hit, rank, m = top_k_hit(preds, "MI", 3)
    assert (hit, rank, m.rule) == (True, 2, "synonym")
    hit, rank, m = top_k_hit(preds, "MI", 1)
    assert (hit, rank, m.matched) == (False, None, False)
    assert top_k_hit(preds, "pulmonary embolism", 2)[:2] == (False, None)
    assert top_k_hit(preds, "pulmonary embolism", 3)[:2] == (True, 3)
    assert top_k_hit(preds, "Pneumonia", 0)[0] is False
    assert top_k_hit([], "Pneumonia", 5)[0] is False
    # the first matching prediction wins, whatever the rule
    hit, rank, m = top_k_hit(["unstable angina pectoris", "unstable angina"], "Unstable angina", 5)
    assert (rank, m.rule) == (1, "contains")


# --- triage -------------------------------------------------------------------------------------


def test_to_semigran() -> None:
    assert [to_semigran(x) for x in ("emergency", "urgent_24h", "see_doctor", "self_care")] == ["em", "ne", "ne", "sc"]
    assert [to_semigran(x, strict=True) for x in ("emergency", "urgent_24h", "see_doctor", "self_care")] == ["em", "em", "ne", "sc"]
    assert [to_semigran(x) for x in ("em", "ne", "sc")] == ["em", "ne", "sc"]
    with pytest.raises(ValueError):
        to_semigran("soon")


GOLD = ["em", "em", "em", "ne", "ne", "sc", "sc", "sc"]
PRED = ["emergency", "urgent_24h", "see_doctor", "emergency", "self_care", "see_doctor", "self_care", "urgent_24h"]


def test_triage_metrics_by_hand() -> None:
    # default mapping: em ne ne em sc ne sc ne
    # pairs: ok, under, under, over, under, over, ok, over
    out = triage_metrics(GOLD, PRED)
    assert out["n"] == 8
    assert out["accuracy"] == pytest.approx(2 / 8)
    assert out["under_triage"] == pytest.approx(3 / 8)
    assert out["over_triage"] == pytest.approx(3 / 8)
    assert out["emergency_recall"] == pytest.approx(1 / 3)
    assert out["confusion"] == {
        "em": {"em": 1, "ne": 2, "sc": 0},
        "ne": {"em": 1, "ne": 0, "sc": 1},
        "sc": {"em": 0, "ne": 2, "sc": 1},
    }
    assert out["recall_by_level"] == pytest.approx({"em": 1 / 3, "ne": 0.0, "sc": 1 / 3})
    ci = out["accuracy_ci"]
    assert ci["estimate"] == pytest.approx(0.25) and ci["low"] <= 0.25 <= ci["high"]


def test_triage_metrics_strict_variant_by_hand() -> None:
    # strict mapping: em em ne em sc ne sc em
    # pairs: ok, ok, under, over, under, over, ok, over
    s = triage_metrics(GOLD, PRED)["strict"]
    assert s["accuracy"] == pytest.approx(3 / 8)
    assert s["under_triage"] == pytest.approx(2 / 8)
    assert s["over_triage"] == pytest.approx(3 / 8)
    assert s["emergency_recall"] == pytest.approx(2 / 3)
    assert s["confusion"] == {
        "em": {"em": 2, "ne": 1, "sc": 0},
        "ne": {"em": 1, "ne": 0, "sc": 1},
        "sc": {"em": 1, "ne": 1, "sc": 1},
    }


def test_triage_metrics_edges() -> None:
    assert triage_metrics([], []) == {"n": 0}
    out = triage_metrics(["ne", "sc"], ["ne", "sc"])
    assert out["accuracy"] == 1.0 and out["emergency_recall"] is None and out["recall_by_level"]["em"] is None
    assert out["strict"]["accuracy"] == 1.0
    with pytest.raises(ValueError):
        triage_metrics(["em"], [])


# --- McNemar ------------------------------------------------------------------------------------


def test_mcnemar_exact_by_hand() -> None:
    a = [False] * 1 + [True] * 9 + [True] * 5 + [False] * 3  # 1× A wrong B right, 9× A right B wrong
    b = [True] * 1 + [False] * 9 + [True] * 5 + [False] * 3
    out = mcnemar(a, b)
    assert (out["b01"], out["b10"], out["n"]) == (1, 9, 18)
    assert out["method"] == "exact"
    assert out["p_value"] == out["p_exact"] == 22 / 1024 == 0.021484375
    assert out["chi2"] is None and out["p_chi2"] is None
    assert out["accuracy_a"] == pytest.approx(14 / 18) and out["accuracy_b"] == pytest.approx(6 / 18)


def test_binomial_two_sided_p() -> None:
    assert binomial_two_sided_p(0, 0) == 1.0
    assert binomial_two_sided_p(5, 10) == 1.0  # 2 · 638/1024 capped at 1
    assert binomial_two_sided_p(0, 5) == 2 / 32
    assert binomial_two_sided_p(9, 10) == binomial_two_sided_p(1, 10) == 22 / 1024
    # big n: exact integer tails, no float overflow
    assert binomial_two_sided_p(1000, 2000) == 1.0
    assert 0 < binomial_two_sided_p(850, 2000) < 1e-10


def test_mcnemar_chi_square_branch() -> None:
    a = [False] * 10 + [True] * 20
    b = [True] * 10 + [False] * 20
    out = mcnemar(a, b)
    assert (out["b01"], out["b10"], out["method"]) == (10, 20, "chi2_cc")
    assert out["chi2"] == pytest.approx((10 - 1) ** 2 / 30)  # 2.7
    assert out["p_value"] == out["p_chi2"] == pytest.approx(math.erfc(math.sqrt(2.7 / 2)))
    assert out["p_value"] == pytest.approx(0.1003, abs=1e-4)  # chi-square table, 1 dof, x = 2.7
    assert out["p_exact"] == pytest.approx(0.0987, abs=1e-4)
    # 24 discordant pairs stay exact, 25 switch to chi-square
    assert mcnemar([True] * 24, [False] * 24)["method"] == "exact"
    assert mcnemar([True] * 25, [False] * 25)["method"] == "chi2_cc"
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0
    with pytest.raises(ValueError):
        mcnemar([True], [])


# --- bootstrap ----------------------------------------------------------------------------------


def test_bootstrap_ci() -> None:
    assert bootstrap_ci([0.4] * 7) == {"estimate": pytest.approx(0.4), "se": 0.0, "low": pytest.approx(0.4), "high": pytest.approx(0.4)}
    assert bootstrap_ci([]) == {"estimate": None, "se": None, "low": None, "high": None}
    vals = [0.0, 1.0] * 50
    r1, r2 = bootstrap_ci(vals, seed=3), bootstrap_ci(vals, seed=3)
    assert r1 == r2
    assert r1["se"] != bootstrap_ci(vals, seed=4)["se"]
    assert r1["se"] == pytest.approx(0.05, abs=0.01)  # sd 0.5 / √100
    assert r1["low"] < 0.5 < r1["high"]
    assert bootstrap_ci(vals, statistic=lambda v: float(v.max()))["estimate"] == 1.0


# --- HealthBench --------------------------------------------------------------------------------


def test_healthbench_example_score() -> None:
    assert healthbench_example_score([5, 3, -2], [True, False, True]) == pytest.approx(3 / 8)
    assert healthbench_example_score([5, 3, -2], [True, False, False]) == pytest.approx(5 / 8)
    # negative points can push below 0: clipped to 0, or kept with clip=False
    assert healthbench_example_score([5, -10], [True, True]) == 0.0
    assert healthbench_example_score([5, -10], [True, True], clip=False) == pytest.approx(-1.0)
    # all positive points met and no penalty: exactly 1 (met points can never exceed the positive total)
    assert healthbench_example_score([4, 6, -3], [True, True, False]) == 1.0
    assert healthbench_example_score([4, 6], [True, True], clip=False) == 1.0
    # zero-point items count for nothing
    assert healthbench_example_score([5, 0], [False, True]) == 0.0
    # no positive points
    assert healthbench_example_score([-3], [True]) is None
    assert healthbench_example_score([], []) is None
    with pytest.raises(ValueError):
        healthbench_example_score([1, 2], [True])


# ex1: overall (4-3)/6 = 1/6; accuracy (4-3)/4 = 1/4; completeness 0/2 = 0
# ex2: overall 10/10 = 1;     accuracy 1; communication 1
# ex3: overall (1-2)/4 → 0 (raw -1/4); completeness 1/4; communication has no positive item → none
ITEMS = [
    [(4, True, ["axis:accuracy"]), (2, False, ["axis:completeness"]), (-3, True, ["axis:accuracy"])],
    [(5, True, ["axis:accuracy"]), (5, True, ["axis:communication"])],
    [(3, False, ["axis:completeness"]), (-2, True, ["axis:communication"]), (1, True, ["axis:completeness"])],
]
THEMES = [["theme:a"], ["theme:a"], ["theme:b"]]


def test_healthbench_overall_axes_by_hand() -> None:
    out = healthbench_overall(None, THEMES, items=ITEMS)
    assert out["mean"] == pytest.approx((1 / 6 + 1 + 0) / 3) and out["n"] == 3 and out["n_unscored"] == 0
    assert out["by_tag"]["theme:a"]["mean"] == pytest.approx((1 / 6 + 1) / 2)
    assert out["by_tag"]["theme:b"] == {"mean": 0.0, "se": 0.0, "n": 1}
    axes = out["by_item_tag"]
    assert set(axes) == {"axis:accuracy", "axis:completeness", "axis:communication"}
    assert (axes["axis:accuracy"]["mean"], axes["axis:accuracy"]["n"]) == (pytest.approx(0.625), 2)
    assert (axes["axis:completeness"]["mean"], axes["axis:completeness"]["n"]) == (pytest.approx(0.125), 2)
    assert (axes["axis:communication"]["mean"], axes["axis:communication"]["n"]) == (1.0, 1)
    # official simple-evals style: examples unclipped, only the mean clipped
    raw = healthbench_overall(None, THEMES, items=ITEMS, clip_examples=False)
    assert raw["mean"] == pytest.approx((1 / 6 + 1 - 1 / 4) / 3)
    assert raw["by_tag"]["theme:b"]["mean"] == 0.0  # mean of [-1/4] clipped at 0


def test_healthbench_overall_scores_and_bootstrap() -> None:
    out = healthbench_overall([0.5, None, 0.5, 0.5], [["theme:x"], ["theme:x"], [], ["theme:y", "theme:y"]])
    assert out["mean"] == 0.5 and out["se"] == 0.0 and out["n"] == 3 and out["n_unscored"] == 1
    assert out["by_tag"] == {"theme:x": {"mean": 0.5, "se": 0.0, "n": 1}, "theme:y": {"mean": 0.5, "se": 0.0, "n": 1}}
    assert "by_item_tag" not in out
    scores = [0.0, 0.25, 1.0, 0.5, 0.75, 0.1]
    a, b = healthbench_overall(scores, seed=7), healthbench_overall(scores, seed=7)
    assert a == b and a["se"] > 0
    assert a["se"] != healthbench_overall(scores, seed=8)["se"]
    assert healthbench_overall([], [])["mean"] is None
    with pytest.raises(ValueError):
        healthbench_overall([0.5], [[], []])
    with pytest.raises(ValueError):
        healthbench_overall(None)


# --- grader verdicts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "want"),
    [
        ('{"explanation": "Mentions 911.", "criteria_met": true}', True),
        ('{"explanation": "No referral.", "criteria_met": false}', False),
        ('```json\n{"explanation": "ok", "criteria_met": true}\n```', True),
        ('```\n{"explanation": "ok", "criteria_met": false}\n```\nLet me know if you need more.', False),
        ('{"explanation": "ok", "criteria_met": true}\nThe response is good.', True),
        ('My verdict: {"explanation": "uses {braces}", "criteria_met": false}', False),
        ('{"explanation": "ok", "criteria_met": "true"}', True),
        ('{"explanation": "ok", "criteria_met": "False"}', False),
        ('{"explanation": "ok", "criteria_met": "yes"}', True),
        ("{'explanation': 'python style', 'criteria_met': True}", True),
        ('{"explanation": "cut off", "criteria_met": false', False),
        ('{"result": {"criteria_met": true}}', True),
        ("Yes", True),
        ("no.", False),
        ("  TRUE\n", True),
        # unparseable
        ("", None),
        (None, None),
        ("I cannot tell from this conversation.", None),
        ('{"explanation": "forgot the verdict"}', None),
        ('{"explanation": "x", "criteria_met": null}', None),
        ('{"explanation": "x", "criteria_met": "partially"}', None),
        ("Yes and no", None),
        ("criteria_met: maybe", None),
    ],
)
def test_parse_grader_verdict(reply: str | None, want: bool | None) -> None:
    assert parse_grader_verdict(reply) is want


def test_parse_grader_verdicts_counts_unparseable() -> None:
    verdicts, bad = parse_grader_verdicts(['{"criteria_met": true}', "garbage", "no", ""])
    assert verdicts == [True, None, False, None] and bad == 2
