"""Exports: the FHIR R4 Bundle (re-validated with fhir.resources' R4B models) and the SOAP clinician report."""

from __future__ import annotations

import html
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from tinypack import tiny_pack_data, write_pack_files

from diagnostician.consult import Consultation
from diagnostician.consult.cases import load_case
from diagnostician.consult.export import (
    clinician_report_html,
    clinician_report_markdown,
    fhir_bundle,
    pertinent_negatives,
)
from diagnostician.engine import NOTICE
from diagnostician.engine.explain import answer_text, log_lr_matrix
from diagnostician.knowledge.schema import load_pack_dir

CASES = Path(__file__).resolve().parents[1] / "src" / "diagnostician" / "cases"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
IDENTITY_FIELDS = ("name", "identifier", "telecom", "address", "birthDate", "photo", "contact", "link")


def play(pack, case_name: str, unknown_at: int | None = None) -> tuple[Consultation, str | None]:
    """Play a shipped case file through the API; answer question number `unknown_at` (0-based) with don't know."""
    case = load_case(CASES / f"{case_name}.json", pack)
    c = Consultation.begin(case.age, case.sex, case.complaints, pack=pack)
    unknown_code = None
    n = 0
    while (q := c.next_question()) is not None:
        value = case.answer(pack, q.code)
        if n == unknown_at:
            value, unknown_code = None, q.code
        c.answer(q.code, value)
        n += 1
    assert c.finished and c.questions_asked == n
    return c, unknown_code


@pytest.fixture(scope="module")
def chest(pack):
    """The chest-pain demo case played to its end, its fourth question answered "don't know"."""
    return play(pack, "chest_pain", unknown_at=3)


@pytest.fixture(scope="module")
def chest_bundle(chest):
    return fhir_bundle(chest[0])


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def section(md: str, start: str, end: str | None) -> str:
    """Text of a Markdown report between two headings."""
    i = md.index(start)
    return md[i : md.index(end, i) if end else len(md)]


def all_references(obj) -> list[str]:
    if isinstance(obj, dict):
        out = [obj["reference"]] if isinstance(obj.get("reference"), str) else []
        return out + [r for v in obj.values() for r in all_references(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in all_references(v)]
    return []


# ---------------------------------------------------------------- FHIR bundle


@pytest.mark.parametrize("case_name", ["chest_pain", "child_cough", "runny_nose"])
def test_every_shipped_case_exports_a_bundle_that_validates_as_r4b(pack, case_name) -> None:
    from fhir.resources.R4B.bundle import Bundle

    c, _ = play(pack, case_name, unknown_at=1)
    b = fhir_bundle(c)
    json.dumps(b)  # JSON-ready
    parsed = Bundle.model_validate(b)
    assert parsed.type == "collection"
    assert all(type(e.resource).__module__.startswith("fhir.resources.R4B.") for e in parsed.entry)
    assert parsed.model_dump(mode="json", exclude_none=True) == b  # the dict is exactly what R4B reads back
    counts = {}
    for e in b["entry"]:
        counts[e["resource"]["resourceType"]] = counts.get(e["resource"]["resourceType"], 0) + 1
    a = c.assessment()
    assert counts == {
        "Patient": 1,
        "Observation": len(c.state.answers),
        "Condition": len(a.differential),
        "RiskAssessment": 1,
    }


def test_references_are_internal_urn_uuids_that_resolve(chest_bundle) -> None:
    full = [e["fullUrl"] for e in chest_bundle["entry"]]
    assert len(set(full)) == len(full)
    assert all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", u) for u in full)
    for e in chest_bundle["entry"]:
        assert e["fullUrl"] == f"urn:uuid:{e['resource']['id']}"
    refs = all_references(chest_bundle)
    assert refs and set(refs) <= set(full)
    (patient,) = resources(chest_bundle, "Patient")
    subjects = {e["resource"]["subject"]["reference"] for e in chest_bundle["entry"] if "subject" in e["resource"]}
    assert subjects == {f"urn:uuid:{patient['id']}"}


def test_patient_has_demographics_and_no_identity(chest, chest_bundle) -> None:
    c, _ = chest
    (patient,) = resources(chest_bundle, "Patient")
    assert not set(IDENTITY_FIELDS) & set(patient)
    assert patient["gender"] == "male"
    (age,) = [x["valueAge"] for x in patient["extension"]]
    assert age["value"] == c.state.age == 58 and age["code"] == "a" and age["system"] == "http://unitsofmeasure.org"


def test_each_answered_finding_has_one_observation_with_its_value(chest, chest_bundle, pack) -> None:
    c, unknown_code = chest
    obs = {o["code"]["coding"][0]["code"]: o for o in resources(chest_bundle, "Observation")}
    assert list(obs) == [a.code for a in c.state.answers]
    kinds = set()
    for a in c.state.answers:
        o, f = obs[a.code], pack.finding(a.code)
        assert o["status"] == "final"
        assert o["code"]["coding"][0] == {"system": "urn:diagnostician:pack:ddxplus", "code": a.code, "display": f.question}
        values = [k for k in o if k.startswith("value")]
        if a.value is None:
            kinds.add("unknown")
            assert values == [] and "component" not in o
            assert o["dataAbsentReason"]["coding"][0]["code"] == "asked-unknown"
            continue
        assert "dataAbsentReason" not in o
        if f.kind == "binary":
            kinds.add("binary")
            assert o["valueBoolean"] is a.value
        elif f.kind == "categorical" and all(v.isdigit() for v in f.values):
            kinds.add("scale")
            assert o["valueInteger"] == int(a.value)
        elif f.kind == "categorical":
            kinds.add("categorical")
            assert o["valueCodeableConcept"]["coding"][0]["code"] == a.value
        else:
            kinds.add("multi")
            assert values == []  # obs-7: components carry the values
            assert [x["valueCodeableConcept"]["coding"][0]["code"] for x in o["component"]] == list(a.value)
            assert all(x["code"]["coding"][0]["code"] == a.code for x in o["component"])
    assert kinds >= {"unknown", "binary", "scale", "multi"}  # non-scale single values: the tiny-pack test below
    assert obs[unknown_code]["dataAbsentReason"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/data-absent-reason"


def test_conditions_are_the_differential_with_icd10_and_probabilities(chest, chest_bundle, pack) -> None:
    c, _ = chest
    a = c.assessment()
    conds = resources(chest_bundle, "Condition")
    assert [x["code"]["text"] for x in conds] == [e.name for e in a.differential]
    for cond, e in zip(conds, a.differential):
        assert cond["verificationStatus"]["coding"] == [{"system": VER_STATUS, "code": "differential", "display": "Differential"}]
        icd = [x for x in cond["code"]["coding"] if x["system"] in (ICD10, ICD10_CM)]
        assert [x["code"] for x in icd] == [s.strip() for s in pack.condition(e.code).icd10.split(",")]
        ext = {x["url"].rsplit(":", 1)[-1]: x for x in cond["extension"]}
        assert ext["posterior-probability"]["valueDecimal"] == pytest.approx(e.posterior, abs=1e-6)
        assert ext["differential-role"]["valueCode"] == e.role
        assert f"{e.posterior:.1%}" in cond["note"][0]["text"]


def test_triage_risk_assessment_carries_level_advice_red_flags_and_notice(chest, chest_bundle) -> None:
    c, _ = chest
    t = c.assessment().triage
    assert t.red_flags  # the chest-pain case fires danger signs
    (ra,) = resources(chest_bundle, "RiskAssessment")
    assert ra["status"] == "final"
    assert ra["prediction"][0]["outcome"]["coding"][0]["code"] == t.level == "emergency"
    assert ra["mitigation"] == t.advice
    notes = [n["text"] for n in ra["note"]]
    assert NOTICE in notes
    for rf in t.red_flags:
        assert any(rf.id in n and rf.basis in n for n in notes)
    obs_by_code = {o["code"]["coding"][0]["code"]: f"urn:uuid:{o['id']}" for o in resources(chest_bundle, "Observation")}
    basis = [b["reference"] for b in ra["basis"]]
    for rf in t.red_flags:
        for code, _ in rf.when:
            assert obs_by_code[code] in basis
    masses = [p["probabilityDecimal"] for p in ra["prediction"][1:]]
    assert masses == pytest.approx(list(t.mass[:3]), abs=1e-6)


def test_a_bundle_r4b_rejects_is_not_what_we_return(chest_bundle) -> None:
    """The re-parse is a real check: a bundle with two values on one Observation does not validate."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    broken = json.loads(json.dumps(chest_bundle))
    obs = next(e["resource"] for e in broken["entry"] if "valueBoolean" in e["resource"])
    obs["valueString"] = "also"
    with pytest.raises(ValidationError):
        Bundle.model_validate(broken)


# ---------------------------------------------------------------- clinician report (Markdown)


def test_markdown_report_has_soap_sections_and_context(chest, pack) -> None:
    c, _ = chest
    md = clinician_report_markdown(c)
    heads = ["## S — Subjective", "## O — Objective", "## A — Assessment", "## P — Plan"]
    assert [md.index(h) for h in heads] == sorted(md.index(h) for h in heads)
    assert md.count(NOTICE) == 2  # top and bottom
    assert f"{pack.name} {pack.version}" in md and "not yet clinically reviewed" in md
    assert f"Questions asked: {c.questions_asked} " in md
    assert "No examination or tests in this consultation" in section(md, "## O", "## A")
    plan = section(md, "## P", None)
    assert "Suggested tests: not available in this knowledge pack" in plan
    assert "Triage: Emergency" in plan and c.assessment().triage.advice in plan


def test_markdown_subjective_lists_present_and_unknown_answers(chest, pack) -> None:
    c, unknown_code = chest
    s = section(clinician_report_markdown(c), "## S", "## O")
    for a in c.state.answers:
        if a.is_positive(pack):
            assert f"- {answer_text(pack, a)}\n" in s
    dont_know = section(s, "don't know", None)
    assert answer_text(pack, c.state.answered[unknown_code]) in dont_know


def test_pertinent_negatives_are_answered_absent_findings_that_lower_leading_conditions(chest, pack) -> None:
    c, _ = chest
    a = c.assessment()
    negs = pertinent_negatives(c, a)
    assert negs, "the chest-pain case should have pertinent negatives"
    known = [x for x in c.state.answers if not x.unknown]
    llr = log_lr_matrix(pack, c.state)
    leading = {e.name: pack.condition_index[e.code] for e in a.differential[:5]}
    for n in negs:
        ans = c.state.answered[n.code]
        assert ans.value is not None and not ans.is_positive(pack)  # answered, and absent
        row = [x.code for x in known].index(n.code)
        for name, lr in n.lowers:
            assert lr == pytest.approx(math.exp(llr[row, leading[name]]))
            assert lr < 1 / 1.5
    assert [n.strongest for n in negs] == sorted(n.strongest for n in negs)
    block = section(clinician_report_markdown(c), "**Pertinent negatives**", "don't know")
    for n in negs:
        assert n.text in block
    # and no finding answered present or unknown is listed there
    for x in c.state.answers:
        if x.unknown or x.is_positive(pack):
            assert f"- {answer_text(pack, x)} — lowers" not in block


def test_markdown_assessment_lists_the_differential_and_reasons(chest) -> None:
    c, _ = chest
    a = c.assessment()
    body = section(clinician_report_markdown(c), "## A", "## P")
    rows = [line for line in body.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(a.differential)
    for row, e in zip(rows, a.differential):
        assert f"| {e.name} | {e.icd10} |" in row
        assert ("consider / rule out" if e.role == "consider" else "| likely |") in row
    assert body.count("- **") == len(a.explanations) > 0
    first = a.explanations[0]
    assert first.supporting[0].text in body


def test_report_of_a_fresh_consultation_is_provisional(pack) -> None:
    c = Consultation.begin(30, "F", {"E_91": True}, pack=pack)
    md = clinician_report_markdown(c)
    assert "inquiry not finished" in md and "Questions asked: 0 " in md
    assert "30-year-old female" in md


# ---------------------------------------------------------------- HTML and hostile text


class _Tags(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[tuple[str, dict]] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.seen.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def check_html(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    p.close()
    assert p.errors == [] and p.stack == [], "unbalanced tags"
    tags = {t for t, _ in p.seen}
    assert not tags & {"script", "link", "img", "iframe", "object"}
    assert not any(k in ("src", "href") for _, attrs in p.seen for k in attrs)  # no external assets
    return p


def test_html_report_is_self_contained_with_all_sections(chest) -> None:
    c, _ = chest
    page = clinician_report_html(c)
    assert page.startswith("<!DOCTYPE html>")
    p = check_html(page)
    ids = [attrs.get("id") for t, attrs in p.seen if t == "section"]
    assert ids == ["subjective", "objective", "assessment", "plan"]
    assert "<style>" in page and "http://" not in page and "https://" not in page
    assert page.count(html.escape(NOTICE)) == 2
    a = c.assessment()
    assert page.count("<tr><td") == len(a.differential)
    assert "triage-emergency" in page and "Suggested tests: not available in this knowledge pack" in page


@pytest.fixture
def hostile(tmp_path):
    """A tiny pack whose texts try to inject markup, played to the end with one "don't know"."""
    meta, tables = tiny_pack_data()
    meta["findings"][0]["question"] = "Do you have a <script>alert('fever')</script> fever?"
    meta["findings"][2]["values"][2]["label"] = "<img src=x onerror=alert(1)> | suddenly"
    meta["conditions"][0]["name"] = "Condition <b>A</b> | injected"
    meta["conditions"][0]["icd10"] = "X00, G44.009"
    meta["red_flags"][1]["basis"] = "test <i>basis</i> & more"
    pk = load_pack_dir(write_pack_files(tmp_path / "hostile", meta, tables))
    c = Consultation.begin(70, "M", {"pain": True, "fever": True, "onset": "sudden"}, pack=pk)
    while (q := c.next_question()) is not None:
        c.answer(q.code, None)  # don't know
    assert c.questions_asked >= 1
    return c


def test_html_escapes_every_pack_and_answer_text(hostile) -> None:
    page = clinician_report_html(hostile)
    check_html(page)
    for raw in ("<script>", "<img", "<b>A</b>", "<i>basis</i>"):
        assert raw not in page
    assert "&lt;script&gt;alert(&#x27;fever&#x27;)&lt;/script&gt;" in page
    assert "Condition &lt;b&gt;A&lt;/b&gt; | injected" in page
    assert "&lt;i&gt;basis&lt;/i&gt; &amp; more" in page


def test_markdown_escapes_markup_and_table_pipes(hostile) -> None:
    md = clinician_report_markdown(hostile)
    body = re.sub(r"(?m)^> ", "", md)  # the report's own blockquote marker
    assert not re.search(r"(?<!\\)[<>]", body)  # every other angle bracket is backslash-escaped
    assert r"\<script\>" in md
    row = next(line for line in md.splitlines() if "injected" in line and line.startswith("| "))
    assert row.count(" | ") == 5  # the pipe inside the name is escaped, so the row keeps 6 cells
    assert r"Condition \<b\>A\</b\> \| injected" in row


def test_hostile_pack_bundle_keeps_texts_as_data_and_splits_icd10(hostile) -> None:
    from fhir.resources.R4B.bundle import Bundle

    b = fhir_bundle(hostile)
    Bundle.model_validate(b)
    obs = {o["code"]["coding"][0]["code"]: o for o in resources(b, "Observation")}
    assert obs["fever"]["code"]["text"] == "Do you have a <script>alert('fever')</script> fever?"  # JSON carries text as is
    assert obs["fever"]["code"]["coding"][0]["system"] == "urn:diagnostician:pack:tiny"
    assert obs["onset"]["valueCodeableConcept"]["coding"][0] == {
        "system": "urn:diagnostician:pack:tiny:onset",
        "code": "sudden",
        "display": "<img src=x onerror=alert(1)> | suddenly",
    }
    cond = next(x for x in resources(b, "Condition") if "injected" in x["code"]["text"])
    icd = [(x["system"], x["code"]) for x in cond["code"]["coding"] if x["system"] != "urn:diagnostician:pack:tiny"]
    assert icd == [(ICD10, "X00"), (ICD10_CM, "G44.009")]  # split, and a CM-only code under ICD-10-CM
    (ra,) = resources(b, "RiskAssessment")
    assert ra["prediction"][0]["outcome"]["coding"][0]["code"] == "emergency"  # sudden onset red flag
    unknown = [o for o in obs.values() if "dataAbsentReason" in o]
    assert len(unknown) == sum(a.value is None for a in hostile.state.answers)
