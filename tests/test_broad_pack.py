"""The broad-pack builder on small written data, its validation messages, and the shipped pack."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from broadmini import write_data, write_sources
from conftest import SHARED, needs_shared

from diagnostician.engine import Answer, InquiryPolicy, assess, next_question, posterior, start, update
from diagnostician.engine.triage import accounting, triage
from diagnostician.engine.workup import suggest_tests
from diagnostician.dialogue.nlu import read_text
from diagnostician.errors import PackError
from diagnostician.knowledge import schema
from diagnostician.knowledge.build_broad import LEAK_MAX, LEAK_MIN, MISS, PACK_FILES, build, implications, write
from diagnostician.knowledge.results import RESULT_SOURCE


@pytest.fixture()
def mini(tmp_path: Path) -> tuple[Path, Path]:
    return write_data(tmp_path / "data"), write_sources(tmp_path / "sources")


@pytest.fixture()
def mini_pack(mini: tuple[Path, Path], tmp_path: Path) -> schema.Pack:
    write(build(*mini), tmp_path / "pack")
    return schema.load_pack_dir(tmp_path / "pack")


def test_conditions_merge_and_topics_drop(mini_pack: schema.Pack) -> None:
    codes = [c.code for c in mini_pack.conditions]
    # The MedlinePlus page on pneumonia merges into SymCAT's; pleurisy is new; 'genetic testing' is a topic.
    assert codes == ["croup", "ectopic-pregnancy", "pneumonia", "pleurisy"]
    pneu = mini_pack.condition("pneumonia")
    assert "MedlinePlus: pneumonia" in pneu.source and "DDXPlus statistics: Pneumonia" in pneu.source
    assert pneu.synonyms == ("lung infection",) and pneu.system == "respiratory" and pneu.icd10 == "J18.9"


def test_likelihood_cells_trace_to_their_source(mini_pack: schema.Pack) -> None:
    p, src = mini_pack.p, mini_pack.p_source
    ci, fi = mini_pack.condition_index, mini_pack.finding_index
    assert p[ci["pneumonia"], fi["cough"]] == pytest.approx(0.001 + 0.998 * 0.9 * (1 - MISS)) and src[ci["pneumonia"], fi["cough"]] == 1
    # Two MedlinePlus concepts merged into one finding; its share is the mean SymCAT share of co-listed symptoms (0.9, 0.7).
    assert src[ci["pleurisy"], fi["chest-pain"]] == 2 and p[ci["pleurisy"], fi["chest-pain"]] == pytest.approx(0.001 + 0.998 * 0.8 * (1 - MISS))
    assert src[ci["pneumonia"], fi["rf-blue-lips"]] == 4
    assert src[ci["ectopic-pregnancy"], fi["rf-pregnant"]] == 5
    assert src[ci["croup"], fi["chest-pain"]] == 0 and 0.001 + 0.998 * LEAK_MIN <= p[ci["croup"], fi["chest-pain"]] <= 0.001 + 0.998 * LEAK_MAX
    legend = mini_pack.meta["provenance"]["likelihood_sources"]
    assert {str(s) for s in np.unique(src)} <= set(legend)


def test_applicability_and_priors(mini_pack: schema.Pack) -> None:
    ci = mini_pack.condition_index
    adult = mini_pack.age_band(35)
    assert mini_pack.p_age[ci["croup"], adult] < 1e-3  # child-only: age_max 6
    assert mini_pack.p_sex[ci["ectopic-pregnancy"], 1] < 1e-3  # female only
    bases = {c["code"]: c["prior_basis"] for c in mini_pack.meta["conditions"]}
    assert bases["pneumonia"].startswith("Bayes' rule") and bases["pleurisy"].startswith("not among SymCAT")
    # P(c) ∝ P(c|s)/P(s|c): pneumonia 10/0.9 vs croup 2/0.8 through cough (and fever agrees in direction).
    assert mini_pack.condition("pneumonia").prior > mini_pack.condition("croup").prior


def test_red_flag_screening_comes_first(mini_pack: schema.Pack) -> None:
    s = start(mini_pack, 70, "M", [Answer("shortness-of-breath", True)])
    q = next_question(mini_pack, s, InquiryPolicy())
    assert q is not None and q.phase == "screening" and q.code == "rf-blue-lips" and q.screens == "breathless_blue"
    s2 = update(mini_pack, s, Answer("rf-blue-lips", True))
    a = assess(mini_pack, s2)
    assert a.triage.level == "emergency" and [r.id for r in a.triage.red_flags] == ["breathless_blue"]
    # Denied: the flag can no longer fire and screening moves on.
    s3 = update(mini_pack, s, Answer("rf-blue-lips", False))
    q3 = next_question(mini_pack, s3, InquiryPolicy())
    assert q3 is None or q3.phase != "screening"
    # The screening cap hands over to the diagnostic phase.
    q0 = next_question(mini_pack, s, InquiryPolicy(max_screening=0))
    assert q0 is None or q0.phase != "screening"


def test_tests_suggested_by_probability_addressed(mini_pack: schema.Pack) -> None:
    s = start(mini_pack, 50, "F", [Answer("chest-pain", True), Answer("cough", True)])
    p = posterior(s)
    got = suggest_tests(mini_pack, p)
    assert got and got[0].id == "chest-x-ray"  # bears on both pneumonia and pleurisy
    assert all(t.id != "physical-exam" for t in got)  # generic: never suggested
    assert got[0].mass == pytest.approx(sum(x for _, x in got[0].conditions))
    assert {name for name, _ in got[0].conditions} == {c.name for c, x in zip(mini_pack.conditions, p) if x >= 0.01 and "chest-x-ray" in c.tests}
    a = assess(mini_pack, s).to_dict()
    assert a["tests"]["suggested"][0]["id"] == "chest-x-ray" and "not a value-of-information" in a["tests"]["basis"]


@pytest.mark.parametrize(
    ("table", "mutate", "message"),
    [
        ("red_flags.jsonl", lambda r: r[0].update(when=["no-such-finding"]), "unknown findings"),
        ("findings_sc.jsonl", lambda r: r.append(dict(r[0])), "duplicate finding 'cough'"),
        ("red_flag_findings.jsonl", lambda r: r[1]["conditions"][0].update(p=1.5), "probability 1.5 for pneumonia"),
        ("red_flag_findings.jsonl", lambda r: r[1]["conditions"][0].update(basis=""), "has no basis"),
        ("conditions_sc_a.jsonl", lambda r: r[0].update(urgency="soon"), "sc:croup"),
        ("conditions_sc_a.jsonl", lambda r: r.pop(0), "sc:croup has no curated row"),
        ("conditions_ml_a.jsonl", lambda r: r[0].update(same_as="sc:nothing"), "same_as 'sc:nothing'"),
        ("red_flags.jsonl", lambda r: r[1].update(basis=""), "pregnant_pain"),
    ],
)
def test_bad_sources_fail_naming_the_entry(mini: tuple[Path, Path], table: str, mutate, message: str) -> None:
    data, sources = mini
    path = sources / table
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    mutate(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(PackError, match=message.replace("(", r"\(").replace("'", "'")):
        build(data, sources)


def test_normal_states_deny_their_findings_and_unknown_codes_fail_the_build(mini: tuple[Path, Path], mini_pack: schema.Pack) -> None:
    got = {m.code: m.polarity for m in read_text(mini_pack, "I have a cough, breathing is fine").mentions}
    assert got == {"cough": "present", "shortness-of-breath": "absent"}
    data, sources = mini
    (sources / "normal_states.json").write_text(json.dumps({"about": "x", "entries": [{"subjects": ["chest"], "denies": ["chest-ache"], "basis": "b"}]}))
    with pytest.raises(PackError, match=r"entries\[0\] \(chest\): unknown findings \['chest-ache'\]"):
        build(data, sources)


def test_hallmarks_fill_gaps_and_the_flat_medlineplus_share_but_not_data(mini: tuple[Path, Path], tmp_path: Path) -> None:
    rows = [
        {"condition": "croup", "finding": "chest-pain", "p": 0.3, "basis": "test reference: a gap"},
        {"condition": "pleurisy", "finding": "chest-pain", "p": 0.85, "basis": "test reference: replaces the flat share"},
        {"condition": "pneumonia", "finding": "cough", "p": 0.2, "basis": "test reference: SymCAT stays"},
    ]
    pack = _built_with(mini, tmp_path, "hallmarks_test.jsonl", rows)
    p, src, ci, fi = pack.p, pack.p_source, pack.condition_index, pack.finding_index
    assert src[ci["croup"], fi["chest-pain"]] == 7 and p[ci["croup"], fi["chest-pain"]] == pytest.approx(0.001 + 0.998 * 0.3 * (1 - MISS))
    assert src[ci["pleurisy"], fi["chest-pain"]] == 7 and p[ci["pleurisy"], fi["chest-pain"]] == pytest.approx(0.001 + 0.998 * 0.85 * (1 - MISS))
    assert src[ci["pneumonia"], fi["cough"]] == 1 and p[ci["pneumonia"], fi["cough"]] == pytest.approx(0.001 + 0.998 * 0.9 * (1 - MISS))
    assert "recalled" in pack.meta["provenance"]["likelihood_sources"]["7"]
    bad_rows = (({"condition": "nothing"}, "unknown condition 'nothing'"), ({"finding": "nope"}, "unknown finding 'nope'"), ({"p": 1.2}, "probability 1.2"), ({"basis": ""}, "no basis"))  # fmt: skip
    _each_bad_row_fails(mini, "hallmarks_test.jsonl", rows[0], bad_rows)


def test_corrections_replace_implausible_source_shares_but_not_data(mini: tuple[Path, Path], tmp_path: Path) -> None:
    rows = [
        {"condition": "pneumonia", "finding": "cough", "p": 0.6, "was": 0.9, "basis": "test reference: a SymCAT share corrected"},
        {"condition": "pleurisy", "finding": "chest-pain", "p": 0.9, "was": 0.3, "basis": "test reference: the flat share corrected"},
    ]
    pack = _built_with(mini, tmp_path, "corrections_test.jsonl", rows)
    p, src, ci, fi = pack.p, pack.p_source, pack.condition_index, pack.finding_index
    assert src[ci["pneumonia"], fi["cough"]] == 8 and p[ci["pneumonia"], fi["cough"]] == pytest.approx(0.001 + 0.998 * 0.6 * (1 - MISS))
    assert src[ci["pleurisy"], fi["chest-pain"]] == 8 and p[ci["pleurisy"], fi["chest-pain"]] == pytest.approx(0.001 + 0.998 * 0.9 * (1 - MISS))
    assert "implausible" in pack.meta["provenance"]["likelihood_sources"]["8"]
    bad_rows = (({"finding": "chest-pain", "condition": "croup"}, "a correction needs a listed share"), ({"p": 0}, "probability 0"),
                ({"condition": "nothing"}, "unknown condition 'nothing'"), ({"basis": " "}, "no basis"))  # fmt: skip
    _each_bad_row_fails(mini, "corrections_test.jsonl", rows[0], bad_rows)


def test_background_state_takes_its_population_rate_where_no_source_lists_it(mini: tuple[Path, Path], tmp_path: Path) -> None:
    # A background state (as if fever were one, at 45 %) no source ties to a condition is as common among its
    # patients as among everyone: the rate, not the leak (0.10 here) nor a condition's cap; listed shares below it rise to it.
    rows = [{"finding": "fever", "rate": 0.45, "basis": "test reference: a population rate"}]
    pack = _built_with(mini, tmp_path, "background_test.jsonl", rows)
    p, src, ci, fi = pack.p, pack.p_source, pack.condition_index, pack.finding_index
    assert src[ci["pleurisy"], fi["fever"]] == 0 and p[ci["pleurisy"], fi["fever"]] == pytest.approx(0.001 + 0.998 * 0.45)
    assert src[ci["croup"], fi["fever"]] == 1 and p[ci["croup"], fi["fever"]] == pytest.approx(0.001 + 0.998 * 0.45)
    assert p[ci["pneumonia"], fi["fever"]] == pytest.approx(0.55988)  # a listed share above the rate stays
    assert pack.meta["provenance"]["background_rates"] == [{"finding": "fever", "rate": 0.45, "basis": "test reference: a population rate"}]
    assert "population rate" in pack.meta["provenance"]["absent_symptom_model"]
    bad_rows = (({"finding": "nothing"}, "unknown finding 'nothing'"), ({"rate": 0}, "rate 0 is not in (0, 0.5]"),
                ({"rate": 0.7}, "rate 0.7 is not in"), ({"rate": True}, "rate True"), ({"basis": ""}, "no basis"))  # fmt: skip
    _each_bad_row_fails(mini, "background_test.jsonl", rows[0], bad_rows)
    (mini[1] / "background_test.jsonl").write_text((json.dumps(rows[0]) + "\n") * 2)
    with pytest.raises(PackError, match="a second background rate"):
        build(*mini)


def _built_with(mini: tuple[Path, Path], tmp_path: Path, table: str, rows: list[dict]) -> schema.Pack:
    """The mini pack built with one more curated table."""
    data, sources = mini
    (sources / table).write_text("".join(json.dumps(r) + "\n" for r in rows))
    write(build(data, sources), tmp_path / "pack")
    return schema.load_pack_dir(tmp_path / "pack")


def _each_bad_row_fails(mini: tuple[Path, Path], table: str, good: dict, bad_rows: tuple) -> None:
    """Each spoilt version of a good row, alone in the table, fails the build with its message."""
    data, sources = mini
    for bad, message in bad_rows:
        (sources / table).write_text(json.dumps({**good, **bad}) + "\n")
        with pytest.raises(PackError, match=re.escape(message)):
            build(data, sources)


def test_curated_conditions_join_with_their_features_and_prevalence_tier(mini: tuple[Path, Path], tmp_path: Path) -> None:
    data, sources = mini
    row = {"id": "cu:covid-19", "name": "COVID-19", "icd10": "U07.1", "system": "infectious", "urgency": "see_doctor", "rationale": "test",
           "sex": "any", "age_min": 0, "age_max": 120, "pregnancy_only": False, "synonyms": ["coronavirus disease 2019"],
           "prevalence": "common", "prevalence_basis": "test basis",
           "features": [{"finding": "cough", "p": 0.7, "basis": "test reference"}, {"finding": "fever", "p": 0.6, "basis": "test reference"}]}  # fmt: skip
    path = sources / "conditions_cu_test.jsonl"
    path.write_text(json.dumps(row) + "\n")
    write(build(data, sources), tmp_path / "pack")
    pack = schema.load_pack_dir(tmp_path / "pack")
    ci, fi = pack.condition_index, pack.finding_index
    assert pack.conditions[-1].code == "covid-19" and pack.conditions[-1].synonyms == ("coronavirus disease 2019",)
    assert pack.p_source[ci["covid-19"], fi["cough"]] == 7 and pack.p[ci["covid-19"], fi["cough"]] == pytest.approx(0.001 + 0.998 * 0.7 * (1 - MISS))
    assert "curated prevalence tier 'common'" in pack.meta["conditions"][ci["covid-19"]]["prior_basis"]
    for bad, message in (({"synonyms": ["lung infection"]}, "'lung infection' already names a condition"),
                         ({"prevalence": "often"}, "prevalence must be one of"),
                         ({"features": [{"finding": "nope", "p": 0.5, "basis": "b"}]}, "unknown finding 'nope'"),
                         ({"features": []}, "needs its features")):  # fmt: skip
        path.write_text(json.dumps({**row, **bad}) + "\n")
        with pytest.raises(PackError, match=re.escape(message)):
            build(data, sources)


def test_broken_json_line_names_file_and_line(mini: tuple[Path, Path]) -> None:
    data, sources = mini
    with (sources / "red_flags.jsonl").open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(PackError, match=r"red_flags.jsonl:3: not valid JSON"):
        build(data, sources)


def test_sparse_table_out_of_range_cell_is_rejected(mini_pack: schema.Pack, tmp_path: Path) -> None:
    path = tmp_path / "pack" / "likelihoods.json"
    table = json.loads(path.read_text())
    table["cells"].append([99, 0, 0.5, 1])
    path.write_text(json.dumps(table))
    with pytest.raises(PackError, match="out of range"):
        schema.load_pack_dir(tmp_path / "pack")


@needs_shared
def test_shipped_broad_pack_equals_build(tmp_path: Path) -> None:
    write(build(SHARED), tmp_path)
    shipped = schema.PACKS_DIR / "broad"
    for name in PACK_FILES:
        assert (tmp_path / name).read_text(encoding="utf-8") == (shipped / name).read_text(encoding="utf-8"), name


def test_shipped_broad_pack_is_traceable_and_broad() -> None:
    pack = schema.load_pack("broad")
    # Each source code keeps its own legend: the corrections' code is not taken over by the result cells.
    legend = pack.meta["provenance"]["likelihood_sources"]
    assert "implausible" in legend["8"] and "test result" in legend[str(RESULT_SOURCE)]
    assert {str(s) for s in np.unique(pack.p_source)} <= set(legend)
    assert len(pack.conditions) >= 1000 and len(pack.findings) >= 700
    assert len({c.system for c in pack.conditions}) >= 15
    assert len(pack.red_flags) >= 40 and all(r.basis and r.advice for r in pack.red_flags)
    assert all(c.rationale and c.triage in schema.TRIAGE_LEVELS for c in pack.conditions)
    assert ((pack.p > 0) & (pack.p < 1)).all()
    assert pack.meta["review_status"] == "not yet clinically reviewed"


def test_precise_pack_takes_precedence_inside_its_scope(mini_pack: schema.Pack) -> None:
    from diagnostician.knowledge.compose import PRECEDENCE_SOURCE, with_precedence

    ddx = schema.load_pack("ddxplus")
    both = with_precedence(mini_pack, ddx)
    ci, fi = mini_pack.condition_index, mini_pack.finding_index
    d_p = ddx.p[ddx.condition_index["Pneumonia"], ddx.finding_columns[ddx.finding_index["E_91"]][0]]
    assert both.name == "broad+ddxplus"
    assert both.p[ci["pneumonia"], fi["fever"]] == pytest.approx(max(d_p, float(np.median(mini_pack.p[:, fi["fever"]]))))
    assert both.p_source[ci["pneumonia"], fi["fever"]] == PRECEDENCE_SOURCE
    # Out of scope: a condition DDXPlus lacks, and a finding the crosswalk does not name, are untouched.
    assert both.p[ci["pleurisy"], fi["fever"]] == mini_pack.p[ci["pleurisy"], fi["fever"]]
    assert both.p[ci["pneumonia"], fi["cough"]] == mini_pack.p[ci["pneumonia"], fi["cough"]]
    assert str(PRECEDENCE_SOURCE) in both.meta["provenance"]["likelihood_sources"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda meta, tab: meta["conditions"].append(dict(meta["conditions"][0])), "duplicate condition code 'croup'"),
        (lambda meta, tab: meta["findings"].append(dict(meta["findings"][0])), "duplicate finding code 'cough'"),
        (lambda meta, tab: tab["cells"].append([0, 0, 1.2, 1]), r"P\(cough \| croup\) = 1.2"),
        (lambda meta, tab: meta["red_flags"][0].update(ask_when=["nothing"]), "ask_when names an unknown finding"),
        (lambda meta, tab: meta["conditions"][0].update(tests=["no-such-test"]), "unknown tests"),
        (lambda meta, tab: tab.update(default_p_uncapped=[99]), "default_p_uncapped names a column out of range"),
    ],
)
def test_loader_names_the_bad_entry(mini_pack: schema.Pack, tmp_path: Path, edit, message: str) -> None:
    folder = tmp_path / "pack"
    meta = json.loads((folder / "pack.json").read_text())
    table = json.loads((folder / "likelihoods.json").read_text())
    edit(meta, table)
    (folder / "pack.json").write_text(json.dumps(meta))
    (folder / "likelihoods.json").write_text(json.dumps(table))
    with pytest.raises(PackError, match=message):
        schema.load_pack_dir(folder)


def test_same_meaning_findings_fold_into_one(mini: tuple[Path, Path], tmp_path: Path) -> None:
    data, sources = mini
    (sources / "finding_merges.jsonl").write_text(json.dumps({"finding": "rf-blue-lips", "into": "shortness-of-breath", "note": "test"}) + "\n")
    write(build(data, sources), tmp_path / "folded")
    pack = schema.load_pack_dir(tmp_path / "folded")
    assert "rf-blue-lips" not in pack.finding_index
    ci, fi = pack.condition_index, pack.finding_index
    assert pack.p[ci["pneumonia"], fi["shortness-of-breath"]] == pytest.approx(0.001 + 0.998 * 0.4 * (1 - MISS))  # the larger of 0.4 and 0.1
    flag = next(r for r in pack.red_flags if r.id == "breathless_blue")
    assert [code for code, _ in flag.when] == ["shortness-of-breath"]
    lex = json.loads((tmp_path / "folded" / "lexicon_en.json").read_text())
    assert "blue lips" in lex["findings"]["shortness-of-breath"]["terms"]
    (sources / "finding_merges.jsonl").write_text(
        json.dumps({"finding": "rf-blue-lips", "into": "cough"}) + "\n" + json.dumps({"finding": "cough", "into": "fever"}) + "\n"
    )
    with pytest.raises(PackError, match="folded twice, into itself, or into a folded finding"):
        build(data, sources)


def test_report_and_chat_suggest_tests_with_their_basis() -> None:
    from diagnostician.consult.export import clinician_report_html, clinician_report_markdown
    from diagnostician.consult.session import Consultation

    c = Consultation.begin(30, "F", {"painful-urination": True, "frequent-urination": True}, pack="broad")
    md = clinician_report_markdown(c)
    assert "**Still needed: suggested examinations and tests**" in md and "of the differential: Urinary tract infection" in md
    # A result of known accuracy for the urinary infection, by value of information (the best of those with the same targets).
    assert any("a result would tell" in line and "Urinary tract infection" in line and "urine" in line.lower() for line in md.splitlines())
    assert "value of information" in md and "not a value-of-information estimate" in md  # both rankings said plainly
    assert "Still needed: suggested examinations and tests" in clinician_report_html(c)
    # The DDXPlus pack has no test lists: only results with a published accuracy are suggested, by value of information.
    d = Consultation.begin(60, "M", {"E_53": True}, pack="ddxplus")
    assert all(t.bits is not None for t in d.assessment().tests)


def test_a_red_flag_on_a_kind_of_symptom_fires_on_the_symptom_and_on_its_kinds() -> None:
    from diagnostician.consult.session import Consultation

    pack = schema.load_pack("broad")
    for complaint in ("chest-pain", "sharp-chest-pain"):  # "sharp chest pain" entails "chest pain"
        c = Consultation.begin(58, "M", {complaint: True, "sweating": True}, pack=pack)
        a = c.assessment()
        assert a.triage.level == "emergency" and a.triage.red_flags, complaint
    # Chest pain alone is screened for danger signs first.
    c = Consultation.begin(58, "M", {"chest-pain": True}, pack=pack)
    q = c.next_question()
    assert q is not None and q.phase == "screening"


def test_findings_the_age_decides_are_answered_from_it_never_asked() -> None:
    from diagnostician.consult.session import Consultation

    pack = schema.load_pack("broad")
    toddler = Consultation.begin(2, "F", {"fever": True}, pack=pack)
    assert toddler.state.answered["rf-baby-under-3-months"].value is False
    asked = []
    for _ in range(12):
        q = toddler.next_question()
        if q is None:
            break
        asked.append(q.code)
        toddler.answer(q.code, False)
    assert "rf-baby-under-3-months" not in asked
    # A feverish 6-week-old fires the infant-fever red flag without being asked its age again.
    baby = Consultation.begin(6 / 52, "M", {"fever": True}, pack=pack)
    a = baby.assessment()
    assert a.triage.level == "emergency" and any("3_months" in r.id or "baby" in r.id for r in a.triage.red_flags)


def test_questions_already_asked_of_the_parent_are_not_turned_again() -> None:
    from diagnostician.dialogue.render import Audience, address

    who = Audience(True, "daughter", "F")
    assert address("Is your baby unusually irritable, fussy or hard to settle?", who) == "Is your baby unusually irritable, fussy or hard to settle?"
    assert address("Do you have a fever?", who).startswith("Does your daughter")
    assert Audience(True, None, "F", adult=True).who == "the patient"


def test_triage_counts_only_conditions_that_account_for_a_reported_finding(mini_pack: schema.Pack) -> None:
    ci = mini_pack.condition_index
    # A cough in a woman: ectopic pregnancy (an emergency) lists no cough, so its prior mass does not count.
    s = start(mini_pack, 30, "F", [Answer("cough", True)])
    p = posterior(s)
    assert not accounting(mini_pack, s)[ci["ectopic-pregnancy"]] and p[ci["ectopic-pregnancy"]] > 0.05
    assert triage(mini_pack, s, p).mass[0] == 0.0
    # Sharp tummy pain is one of its findings: now it counts, whatever else is reported.
    s2 = start(mini_pack, 30, "F", [Answer("cough", True), Answer("sharp-abdominal-pain", True)])
    assert accounting(mini_pack, s2)[ci["ectopic-pregnancy"]]
    assert triage(mini_pack, s2, posterior(s2)).level == "emergency"
    # Nothing reported yet: every condition counts.
    assert accounting(mini_pack, start(mini_pack, 30, "F")).all()


def test_curated_prevalence_tiers_set_the_priors_the_sources_lack(mini: tuple[Path, Path], mini_pack: schema.Pack, tmp_path: Path) -> None:
    data, sources = mini
    rows = mini_pack.meta["conditions"]
    derived = [r for r in rows if r["prior_basis"].startswith("Bayes")]
    plain = next(r for r in rows if not r["prior_basis"].startswith(("Bayes", "curated")))
    path = sources / "prevalence_tiers_test.jsonl"
    path.write_text(json.dumps({"code": plain["code"], "prevalence": "very_rare", "basis": "test basis: eradicated"}) + "\n")
    write(build(data, sources), tmp_path / "tiered")
    after = {r["code"]: r for r in schema.load_pack_dir(tmp_path / "tiered").meta["conditions"]}
    assert "curated prevalence tier 'very_rare' (test basis: eradicated" in after[plain["code"]]["prior_basis"]
    logs = np.log([r["prior"] for r in derived])
    rare = float(np.exp(np.quantile(logs, 0.10) - logs.max()))
    assert after[plain["code"]]["prior"] == pytest.approx(0.1 * rare, rel=1e-3)
    # Data-derived priors are never overridden, and a bad row fails the build naming it.
    assert all(after[r["code"]]["prior"] == r["prior"] for r in derived)
    for bad, message in (({"code": "nothing"}, "unknown condition 'nothing'"), ({"prevalence": "often"}, "prevalence must be one of"), ({"basis": ""}, "missing or malformed field 'basis'")):
        path.write_text(json.dumps({"code": plain["code"], "prevalence": "rare", "basis": "b", **bad}) + "\n")
        with pytest.raises(PackError, match=re.escape(message)):
            build(data, sources)
    path.write_text(2 * (json.dumps({"code": plain["code"], "prevalence": "rare", "basis": "b"}) + "\n"))
    with pytest.raises(PackError, match="has a tier already"):
        build(data, sources)


def test_a_narrower_label_implies_the_broader_one_unless_it_turns_it_round_or_lists_it_as_one_choice() -> None:
    labels = {"wg": "weight gain", "pwg": "poor weight gain", "cp": "chest pain", "scp": "sharp chest pain", "aw": "arm weakness",
              "fas": "sudden face drooping, arm weakness or speech problem", "rad": "chest pain spreading to arm, jaw, neck or back",
              "sp": "painful skin", "red": "red, painful skin spreading fast"}  # fmt: skip
    got = implications({k: {"label": v} for k, v in labels.items()}, labels)
    assert got == {"scp": ["cp"], "rad": ["cp"], "red": ["sp"]}
