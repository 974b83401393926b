"""Fact check of an answer against the DDXPlus pack: each verdict follows from the pack's own numbers."""

from __future__ import annotations

import json

from diagnostician.bench.factcheck import CONTRADICTED, SUPPORTED, UNVERIFIABLE, check_claim, fact_check, likelihood_ratio, split_claims
from test_cli import assert_input_error, assert_ok, run_cli


def _code(pack, name: str) -> str:
    return next(c.code for c in pack.conditions if c.name == name)


def test_claims_are_sentences_and_list_items() -> None:
    assert split_claims("Likely flu. Rest well!\n1. Pneumonia\n- Bronchitis") == ["Likely flu.", "Rest well!", "Pneumonia", "Bronchitis"]


def test_findings_are_checked_by_likelihood_ratio(pack) -> None:
    urti, pneu = _code(pack, "URTI"), _code(pack, "Pneumonia")
    assert likelihood_ratio(pack, urti, "E_45") < 0.5 and likelihood_ratio(pack, pneu, "E_91") > 2  # from the pack's table
    bad = check_claim(pack, "URTI commonly causes coughing up blood.")
    assert bad.verdict == CONTRADICTED and any("coughing up blood" in c.lower() for c in bad.checks)
    good = check_claim(pack, "Pneumonia often comes with fever.")
    assert good.verdict == SUPPORTED and not any("ever had pneumonia" in c.lower() for c in good.checks)


def test_urgency_is_checked_against_the_pack(pack) -> None:
    assert check_claim(pack, "Pulmonary embolism: call an ambulance now.").verdict == SUPPORTED
    assert check_claim(pack, "Bronchitis is an emergency.").verdict == CONTRADICTED


def test_what_the_pack_does_not_know_is_unverifiable(pack) -> None:
    report = fact_check(pack, "Drink plenty of fluids. Appendicitis could also explain this.")
    assert report[UNVERIFIABLE] == 2 and report["hallucination_rate"] is None
    mixed = fact_check(pack, "Pneumonia often comes with fever. Bronchitis is an emergency. Rest.")
    assert (mixed[SUPPORTED], mixed[CONTRADICTED], mixed[UNVERIFIABLE]) == (1, 1, 1) and mixed["hallucination_rate"] == 0.5


def test_cli() -> None:
    p = run_cli("bench", "factcheck", "--json", "Bronchitis is an emergency.")
    assert_ok(p)
    assert json.loads(p.stdout)["contradicted"] == 1
    assert_input_error(run_cli("bench", "factcheck", "   "), "empty")
