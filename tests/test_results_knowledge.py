"""Examination and test results of known accuracy: as findings of a pack, never asked, entered, weighed, suggested by value of information."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diagnostician.consult import Consultation
from diagnostician.dialogue.results import read_results
from diagnostician.engine.posterior import posterior
from diagnostician.engine.workup import result_suggestions, suggestion_lines
from diagnostician.errors import InputError, PackError
from diagnostician.knowledge.results import RESULT_SOURCE, ResultEntry, ValueRule, load_results, parse_results, with_results
from diagnostician.knowledge.schema import load_pack
from tinypack import make_tiny_pack

STREP = ResultEntry(
    "strep-test-positive", "lab", "rapid strep test", "Was the rapid strep test positive?", "rapid strep test",
    ("strep test positive", "positive strep test"), ("strep test negative", "negative strep test"),
    {"tiny": ("CB",)}, 0.8, 0.9, "hand-made for the test",
)  # fmt: skip


@pytest.fixture()
def tiny(tmp_path):
    pack = make_tiny_pack(tmp_path)
    return with_results(pack, (STREP,))


def test_a_result_is_a_finding_with_sensitivity_for_its_targets_and_false_positives_for_the_rest(tiny) -> None:
    f = tiny.finding("result:strep-test-positive")
    assert f.stage == "test" and f.kind == "binary"
    col = tiny.finding_columns[tiny.finding_index[f.code]][0]
    assert np.allclose(tiny.p[:, col], [0.1, 0.8, 0.1]) and set(tiny.p_source[:, col]) == {RESULT_SOURCE}
    assert with_results(tiny, (STREP,)) is tiny  # applied once


def test_result_cells_never_take_over_a_source_code_the_pack_uses(tmp_path) -> None:
    from dataclasses import replace

    pack = make_tiny_pack(tmp_path)
    meta = {**pack.meta, "provenance": {**pack.meta.get("provenance", {}), "likelihood_sources": {str(RESULT_SOURCE): "a curated table"}}}
    with pytest.raises(PackError, match=f"likelihood source {RESULT_SOURCE} is taken"):
        with_results(replace(pack, meta=meta), (STREP,))


def test_results_are_never_asked_but_move_the_posterior_by_their_likelihood_ratio(tiny) -> None:
    c = Consultation.begin(30, "F", {"pain": True}, pack=tiny)
    asked = []
    while (q := c.next_question()) is not None:
        asked.append(q.code)
        c.answer(q.code, None)
    assert "result:strep-test-positive" not in asked
    before = posterior(c.state)
    c.enter_result("result:strep-test-positive", True)
    after = posterior(c.state)
    # Bayes by hand: odds of CB against CA move by 0.8 / 0.1.
    assert math.isclose((after[1] / after[0]) / (before[1] / before[0]), 8.0, rel_tol=1e-9)
    c.enter_result("result:strep-test-positive", False)  # a later result replaces the earlier one
    assert [a.value for a in c.state.answers if a.code.startswith("result:")] == [False]
    with pytest.raises(InputError):
        c.enter_result("fever", True)


def test_value_of_information_ranks_results_and_says_so(tiny) -> None:
    p = np.array([0.2, 0.3, 0.5])
    (s,) = result_suggestions(tiny, p, set())
    # Expected information gain in bits, by hand.
    h = lambda v: -sum(x * math.log2(x) for x in v if x > 0)  # noqa: E731
    q = np.array([0.1, 0.8, 0.1])
    py = float(p @ q)
    expected = h(p) - py * h(p * q / py) - (1 - py) * h(p * (1 - q) / (1 - py))
    assert s.bits == pytest.approx(expected) and s.result == "result:strep-test-positive"
    assert "bits about the diagnosis" in suggestion_lines([s])[0]
    assert result_suggestions(tiny, p, {"result:strep-test-positive"}) == []  # once known, not suggested again


def test_results_in_words(tiny) -> None:
    read = read_results(tiny, "Positive strep test, and the chest X-ray was fine")
    assert [(r.code, r.value) for r in read.results] == [("result:strep-test-positive", True)]
    assert [(r.code, r.value) for r in read_results(tiny, "strep test negative").results] == [("result:strep-test-positive", False)]
    assert [(r.code, r.value) for r in read_results(tiny, "no positive strep test").results] == [("result:strep-test-positive", False)]


def test_the_table_is_checked() -> None:
    good = {"id": "x", "kind": "lab", "test": "t", "question": "q?", "label": "l", "terms": ["x"], "targets": {"ddxplus": ["URTI"]},
            "sensitivity": 0.9, "specificity": 0.8, "basis": "b"}  # fmt: skip
    assert parse_results({"format": "diagnostician-results/1", "results": [good]})[0].sensitivity == 0.9
    for bad in ({**good, "sensitivity": 1.0}, {**good, "sensitivity": 0.3, "specificity": 0.6}, {**good, "kind": "magic"},
                {**good, "basis": " "}, {**good, "targets": {}}, {k: v for k, v in good.items() if k != "terms"}):  # fmt: skip
        with pytest.raises(PackError):
            parse_results({"format": "diagnostician-results/1", "results": [bad]})
    with pytest.raises(PackError):
        parse_results({"format": "diagnostician-results/1", "results": [good, good]})


def test_shipped_results_name_real_conditions_and_cite_a_source() -> None:
    entries = load_results()
    if not entries:
        pytest.skip("no result table shipped")
    for name in ("ddxplus", "broad"):
        pack = load_pack(name)
        for e in entries:
            for code in e.targets.get(name, ()):
                assert code in pack.condition_index, (e.id, name, code)
    assert all(e.basis and e.terms for e in entries)
    assert json.loads(json.dumps([e.id for e in entries]))


def test_results_over_http_move_the_differential_and_unknown_tests_are_recorded_not_weighed(http) -> None:
    r = http.post("/v1/consultations", json={"age": 30, "sex": "F", "findings": {"E_97": True, "E_201": True}})
    cid = r.json()["id"]
    before = http.get(f"/v1/consultations/{cid}/assessment").json()
    suggested = before["tests"]["suggested"]
    assert suggested and all(t["bits"] > 0 and t["result"].startswith("result:") for t in suggested)  # DDXPlus: results of known accuracy only
    r = http.post(f"/v1/consultations/{cid}/results", json={"text": "rapid flu test positive, and an MRI of the knee was normal"})
    assert r.status_code == 200, r.text
    after = r.json()
    assert [e["finding"] for e in after["results"]["entered"]] == ["result:rapid-flu-positive"]
    assert after["results"]["uninterpreted"] and "mri" in after["results"]["uninterpreted"][0].lower()
    flu = lambda a: next((e["posterior"] for e in a["differential"] if e["name"] == "Influenza"), 0.0)  # noqa: E731
    assert flu(after) > flu(before)
    assert http.post(f"/v1/consultations/{cid}/results", json={"text": "nothing to report"}).status_code == 422
    assert http.post(f"/v1/consultations/{cid}/results", json={"results": {"E_91": True}}).status_code == 422  # a question, not a result
    r = http.post(f"/v1/consultations/{cid}/results", json={"results": {"result:rapid-flu-positive": False}})
    assert r.status_code == 200 and flu(r.json()) < flu(after)  # a later result replaces the earlier one
    report = http.get(f"/v1/consultations/{cid}/report").text
    assert "Test results:" in report and "not interpreted" in report
    audit = http.get(f"/v1/consultations/{cid}/audit").json()
    assert any(e["finding"] == "result:rapid-flu-positive" for e in audit["entries"])


def test_examination_findings_in_words_enter_as_findings_the_inquiry_left_open(http) -> None:
    r = http.post("/v1/consultations", json={"age": 30, "sex": "F", "findings": {"E_97": True, "E_201": True}})
    cid = r.json()["id"]
    r = http.post(f"/v1/consultations/{cid}/results", json={"text": "on examination: temperature 39.1 C, rapid flu test positive"})
    assert r.status_code == 200, r.text
    entered = {e["finding"]: e["value"] for e in r.json()["results"]["entered"]}
    assert entered == {"E_91": True, "result:rapid-flu-positive": True}
    assert any(e["finding"] == "E_91" for e in http.get(f"/v1/consultations/{cid}/audit").json()["entries"])
    # An examiner's "normal" is not the patient's "no": it denies nothing, so nothing is entered.
    assert http.post(f"/v1/consultations/{cid}/results", json={"text": "throat: normal"}).status_code == 422


def test_consultation_observe_fills_only_open_findings() -> None:
    pack = load_pack("ddxplus")
    c = Consultation.begin(30, "F", {"E_91": False}, pack=pack)
    turns = c.observe("temperature 38.9, she has a dry cough")
    assert [t.answer.code for t in turns] == ["E_201"]  # the fever already answered is left as the patient said
    assert c.state.answered["E_91"].value is False and c.state.answered["E_201"].value is True


TSH = ResultEntry(
    "tsh-raised", "lab", "thyroid-stimulating hormone", "Was the TSH raised?", "TSH raised", ("tsh raised", "raised tsh"), ("tsh normal",),
    {"tiny": ("CA",)}, 0.9, 0.85, "hand-made for the test", ("TSH", "thyroid function"),
    ValueRule(("tsh", "thyroid stimulating hormone"), 4.5, True, "mIU/L"),
)  # fmt: skip


def test_a_lab_value_is_read_against_its_threshold_in_its_unit(tmp_path) -> None:
    pack = with_results(make_tiny_pack(tmp_path), (TSH,))
    read = lambda text: [(r.code, r.value) for r in read_results(pack, text).results]  # noqa: E731
    assert read("TSH: 12.1 mIU/L") == [("result:tsh-raised", True)]
    assert read("Thyroid stimulating hormone was 2.0") == [("result:tsh-raised", False)]
    assert read("Blood tests, TSH: 8 mIU/L; free T4 low") == [("result:tsh-raised", True)]
    assert read("TSH 8 mg/dL") == []  # another unit: never converted or guessed
    assert read("TSH raised at 3") == [("result:tsh-raised", True)]  # the words said it; they come first
    assert read("WBC 15,000/mm3, TSH 1.2") == [("result:tsh-raised", False)]  # clauses do not split inside numbers
    assert read("TSH: Elevated") == [("result:tsh-raised", True)] and read("TSH: Normal") == [("result:tsh-raised", False)]  # a report's words
    assert read("TSH: slightly decreased") == [("result:tsh-raised", False)]
    assert read("TSH >10") == [("result:tsh-raised", True)]
    assert read("urine TSH 12") == []  # another specimen: another measurement
    meta = pack.meta["results"][0]
    assert meta["orders"] == ["TSH", "thyroid function"] and meta["value"] == {"analytes": ["tsh", "thyroid stimulating hormone"], "above": 4.5, "unit": "mIU/L"}


def test_a_value_rule_is_checked() -> None:
    good = {"id": "x", "kind": "lab", "test": "t", "question": "q?", "label": "l", "terms": ["x"], "targets": {"ddxplus": ["URTI"]},
            "sensitivity": 0.9, "specificity": 0.8, "basis": "b", "orders": ["t"], "value": {"analytes": ["x"], "above": 3, "unit": "g/L"}}  # fmt: skip
    assert parse_results({"format": "diagnostician-results/1", "results": [good]})[0].value.threshold == 3.0
    for bad in ({"analytes": [], "above": 3, "unit": ""}, {"analytes": ["x"], "above": 3, "below": 1, "unit": ""}, {"analytes": ["x"], "above": "3", "unit": ""},
                {"analytes": ["x"], "above": 3}):  # fmt: skip
        with pytest.raises(PackError):
            parse_results({"format": "diagnostician-results/1", "results": [{**good, "value": bad}]})
    with pytest.raises(PackError):
        parse_results({"format": "diagnostician-results/1", "results": [{**good, "orders": "t"}]})


def test_take_results_enters_results_and_examination_findings_and_notes_what_it_cannot_weigh() -> None:
    c = Consultation.begin(30, "F", {"E_201": True}, pack=load_pack("ddxplus"))
    taken = c.take_results("rapid flu test positive, temperature 39.1 C; MRI of the knee normal")
    assert [(r.code, r.value) for r, _ in taken.entered] == [("result:rapid-flu-positive", True)]
    assert [t.answer.code for t in taken.observed] == ["E_91"] and c.state.answered["E_91"].value is True
    assert c.state.answered["result:rapid-flu-positive"].value is True
    assert taken.uninterpreted and c.uninterpreted == taken.uninterpreted
    assert not c.take_results("nothing to see here")


def test_result_tables_are_read_from_every_file_and_ids_are_unique_across_them(tmp_path, monkeypatch) -> None:
    import diagnostician.knowledge.results as results

    row = {"id": "x", "kind": "lab", "test": "t", "question": "q?", "label": "l", "terms": ["x"], "targets": {"ddxplus": ["URTI"]},
           "sensitivity": 0.9, "specificity": 0.8, "basis": "b"}  # fmt: skip
    for name, rid in (("test_results_a.json", "x"), ("test_results_b.json", "y")):
        (tmp_path / name).write_text(json.dumps({"format": "diagnostician-results/1", "results": [{**row, "id": rid}]}), encoding="utf-8")
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    results.load_results.cache_clear()
    try:
        assert [e.id for e in results.load_results()] == ["x", "y"]
        (tmp_path / "test_results_c.json").write_text(json.dumps({"format": "diagnostician-results/1", "results": [row]}), encoding="utf-8")
        results.load_results.cache_clear()
        with pytest.raises(PackError, match="also in test_results_a.json"):
            results.load_results()
    finally:
        results.load_results.cache_clear()


def test_report_words_that_are_not_a_denial_and_initials_that_do_not_end_a_clause() -> None:
    pack = load_pack("broad")
    got = {r.code: r.value for r in read_results(pack, "ECG: normal sinus rhythm with ST elevation in leads II, III and aVF").results}
    assert got.get("result:ecg-st-elevation-mi") is True  # "normal" earlier in the clause describes the rhythm
    got = {r.code: r.value for r in read_results(pack, "Stool: C. difficile toxin positive").results}
    assert got.get("result:c-difficile-test-positive") is True
    got = {r.code: r.value for r in read_results(pack, "Serum sodium 120 mEq/L").results}
    assert got.get("result:sodium-low") is True  # mmol/L and mEq/L: one unit for a monovalent ion


def test_vital_signs_in_an_examination_record_enter_what_they_show_for_an_adult() -> None:
    from diagnostician.dialogue.results import read_vital_signs

    pack = load_pack("broad")
    record = "Vital Signs, Blood Pressure: 85/50 mmHg; Vital Signs, Heart Rate: 128 bpm; Vital Signs, Respiratory Rate: 28 breaths/min"
    got = {code for code, value, _ in read_vital_signs(pack, record, 40)}
    assert got == {"low-blood-pressure", "increased-heart-rate", "breathing-fast"}
    assert read_vital_signs(pack, record, 3) == []  # adult thresholds: a child's pulse and breathing rate run higher
    assert read_vital_signs(pack, record, None) == []
    assert read_vital_signs(pack, "BP 140/90, pulse 72, RR 16", 60) == []  # normal readings deny nothing
    c = Consultation.begin(60, "M", {"headache": True}, pack=pack)
    (turn,) = c.observe("on examination BP 190/125, pulse 72")
    assert turn.answer.code == "rf-very-high-blood-pressure" and turn.new_red_flags  # a danger sign fires at once
    assert c.assessment(explain_top=0).triage.level == "emergency"


def test_a_measurement_rule_has_one_side() -> None:
    from diagnostician.knowledge.lexicon import Measurement

    low = Measurement("bp", "x", None, None, "mmHg", "s", present_below=90, absent_at_or_above=100, quantity="systolic_bp", min_age=16)
    assert (low.decide(80), low.decide(95), low.decide(120)) == (True, None, False)


def test_a_second_test_for_the_same_conditions_is_not_suggested(tmp_path) -> None:
    weaker = ResultEntry("strep-culture", "lab", "throat culture", "Did the throat culture grow strep?", "throat culture", ("culture grew strep",), (),
                         {"tiny": ("CB",)}, 0.7, 0.8, "hand-made for the test")  # fmt: skip
    pack = with_results(make_tiny_pack(tmp_path), (STREP, weaker))
    got = result_suggestions(pack, np.array([0.2, 0.3, 0.5]), set())
    assert [s.result for s in got] == ["result:strep-test-positive"]  # the better of the two, once
    assert [s.result for s in result_suggestions(pack, np.array([0.2, 0.3, 0.5]), {"result:strep-test-positive"})] == ["result:strep-culture"]
