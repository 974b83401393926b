"""Exports of a consultation: a FHIR R4 Bundle (validated with fhir.resources' R4B models) and a SOAP-style clinician report.

FHIR mapping (Bundle of type "collection", every resource named by a urn:uuid fullUrl and referenced by it):
- Patient: gender and the age at the consultation (extension EXT_AGE, valueAge in years); no name, no
  identifier, no birth date: the consultation holds no identity and the export adds none.
- Observation per answered finding: code = the finding code in system ``urn:diagnostician:pack:<pack>``
  with the question as display; yes/no → valueBoolean, 0–10 scale → valueInteger, other single value →
  valueCodeableConcept (system ``urn:diagnostician:pack:<pack>:<finding>``), several values → one
  component per value (obs-7 forbids a top-level value then); "don't know" → dataAbsentReason asked-unknown.
- Condition per listed condition of the differential: verificationStatus "differential", code with
  the ICD-10 code(s) (system icd-10; the few ICD-10-CM-only codes of DDXPlus, such as G44.009, under
  icd-10-cm) and the pack's own code, posterior and listing probabilities as extensions and in
  a note, supporting answers as evidence.
- RiskAssessment for triage: the level as the first prediction (with its reasons), the posterior mass
  at each urgency level as further predictions, the advice as mitigation, the fired red flags with
  their basis and the decision-support notice as notes.
"""

from __future__ import annotations

import html
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from diagnostician import __version__
from diagnostician.consult.session import Consultation
from diagnostician.dialogue.render import is_scale
from diagnostician.engine.assess import Assessment
from diagnostician.engine.triage import flag_evidence
from diagnostician.engine.workup import basis_of
from diagnostician.engine.workup import suggestion_lines
from diagnostician.engine.explain import answer_text, log_lr_matrix
from diagnostician.engine.posterior import Answer
from diagnostician.knowledge.results import result_entries
from diagnostician.knowledge.schema import BINARY, CATEGORICAL, TRIAGE_LEVELS, Pack

ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"  # WHO ICD-10
ICD10_CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"  # US clinical modification (codes with 2+ digits after the dot)
_WHO_ICD10 = re.compile(r"[A-Z][0-9]{2}(\.[0-9])?")
VER_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
UCUM_SYSTEM = "http://unitsofmeasure.org"
TRIAGE_SYSTEM = "urn:diagnostician:triage-level"
EXT_AGE = "urn:diagnostician:extension:age-at-consultation"
EXT_POSTERIOR = "urn:diagnostician:extension:posterior-probability"
EXT_LISTING = "urn:diagnostician:extension:differential-listing-probability"
EXT_ROLE = "urn:diagnostician:extension:differential-role"
EXT_URGENCY = "urn:diagnostician:extension:urgency-if-this-is-it"

LEVEL_NAME = {
    "emergency": "Emergency",
    "urgent_24h": "See a doctor within 24 hours",
    "see_doctor": "See a doctor",
    "self_care": "Self-care",
}
ROLE_NAME = {"likely": "likely", "consider": "consider / rule out"}
NO_EXAMINATION = "No examination or tests in this consultation: every finding above is reported by the patient."


def pack_system(pack: Pack) -> str:
    """The code system URI of a pack's finding and condition codes."""
    return f"urn:diagnostician:pack:{pack.name}"


def suggested_tests_text(pack: Pack, a: Assessment) -> str:
    """One paragraph on suggested tests: those of the assessment, or why there are none."""
    if a.tests:
        return "Suggested tests: " + "; ".join(suggestion_lines(a.tests)) + f". {basis_of(a.tests)}"
    if not pack.tests:
        return (
            f"Suggested tests: not available in this knowledge pack ({pack.name} {pack.version} holds no test "
            "or examination data), so none are suggested here; choose them on clinical judgement."
        )
    return "Suggested tests: none of the pack's tests bears on the conditions now listed; choose them on clinical judgement."


# ---------------------------------------------------------------- shared content


@dataclass(frozen=True)
class PertinentNegative:
    """A finding answered absent that lowers one or more leading conditions (likelihood ratio < 1)."""

    code: str
    text: str
    lowers: tuple[tuple[str, float], ...]  # (condition name, likelihood ratio), strongest first

    @property
    def strongest(self) -> float:
        """The smallest likelihood ratio among the conditions it lowers."""
        return self.lowers[0][1]


def pertinent_negatives(
    consultation: Consultation,
    assessment: Assessment | None = None,
    top: int = 5,
    min_lr: float = 1.5,
    limit: int = 10,
) -> list[PertinentNegative]:
    """Findings answered absent with LR ≤ 1/min_lr for one of the top leading conditions, strongest first."""
    pack, state = consultation.pack, consultation.state
    a = assessment or consultation.assessment()
    leading = [(pack.condition_index[e.code], e.name) for e in a.differential[:top]]
    known = [x for x in state.answers if not x.unknown]
    if not known or not leading:
        return []
    llr = log_lr_matrix(pack, state)
    cut = -math.log(min_lr)
    out = []
    for i, ans in enumerate(known):
        if ans.is_positive(pack):
            continue
        lowers = sorted(((name, float(math.exp(llr[i, ci]))) for ci, name in leading if llr[i, ci] <= cut), key=lambda t: t[1])
        if lowers:
            out.append(PertinentNegative(ans.code, answer_text(pack, ans), tuple(lowers)))
    out.sort(key=lambda n: n.strongest)
    return out[:limit]


@dataclass(frozen=True)
class _Content:
    """Everything a report shows, in plain words, computed once for Markdown and HTML."""

    pack: Pack
    generated: str
    patient: str
    questions_asked: int
    progress: str
    complaints: list[str]
    present: list[str]
    negatives: list[PertinentNegative]
    other_absent: int
    unknown: list[str]
    assessment: Assessment
    red_flag_findings: dict[str, list[str]] = field(default_factory=dict)
    exams: list[str] = field(default_factory=list)  # examination findings entered (stage "exam")
    tests_done: list[str] = field(default_factory=list)  # test results entered (stage "test")
    uninterpreted: list[str] = field(default_factory=list)  # results reported that the pack cannot weigh

    def objective(self) -> list[str]:
        """The objective section's lines: examination, test results, results not interpreted (or why there are none)."""
        if not (self.exams or self.tests_done or self.uninterpreted):
            return [NO_EXAMINATION]
        out = []
        if self.exams:
            out.append("Examination: " + "; ".join(self.exams) + ".")
        if self.tests_done:
            out.append("Test results: " + "; ".join(self.tests_done) + ".")
        if self.uninterpreted:
            out.append("Reported but not interpreted (the knowledge pack holds no accuracy for them): " + "; ".join(self.uninterpreted) + ".")
        out.append("Results move the differential by their published sensitivity and specificity (each with its source in the pack).")
        return out


def result_words(pack: Pack, ans: Answer) -> str:
    """An examination or test result in words: its label and whether it was positive/abnormal."""
    label = result_entries(pack).get(ans.code, {}).get("label", pack.finding(ans.code).question)
    if ans.value is None:
        return f"{label}: result not known"
    return f"{label}: {'positive / abnormal' if ans.is_positive(pack) else 'negative / normal'}"


def _age_words(age: float) -> str:
    if age < 2:
        months = int(round(age * 12))
        return f"{months}-month-old"
    return f"{age:g}-year-old"


def _content(consultation: Consultation) -> _Content:
    pack, state = consultation.pack, consultation.state
    a = consultation.assessment()
    initial = set(range(consultation.initial))
    complaints, present, unknown, exams, tests_done = [], [], [], [], []
    absent = 0
    for i, ans in enumerate(state.answers):
        stage = pack.finding(ans.code).stage
        if stage != "history":
            (exams if stage == "exam" else tests_done).append(result_words(pack, ans))
        elif ans.unknown:
            unknown.append(answer_text(pack, ans))
        elif ans.is_positive(pack):
            (complaints if i in initial else present).append(answer_text(pack, ans))
        else:
            absent += 1
    negatives = pertinent_negatives(consultation, a)
    answered = state.answered
    flag_findings = {
        rf.id: [answer_text(pack, answered[code]) for code in flag_evidence(pack, rf, state)] for rf in a.triage.red_flags
    }
    if consultation.finished:
        progress = f"inquiry ended: {consultation.stop_reason or 'no question left worth asking'}"
    else:
        progress = "inquiry not finished: the assessment is provisional"
    sex = {"F": "female", "M": "male"}.get(state.sex, state.sex)
    return _Content(
        pack=pack,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        patient=f"{_age_words(state.age)} {sex} (no name or identifier recorded)",
        questions_asked=consultation.questions_asked,
        progress=progress,
        complaints=complaints,
        present=present,
        negatives=negatives,
        other_absent=absent - len(negatives),
        unknown=unknown,
        assessment=a,
        red_flag_findings=flag_findings,
        exams=exams,
        tests_done=tests_done,
        uninterpreted=list(consultation.uninterpreted),
    )


def _pct(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 else "<0.1%"


def _ratio(lr: float) -> str:
    """A likelihood ratio in few digits: ×97.6, ×0.24, ×<0.01."""
    if lr >= 100:
        return f"×{lr:.0f}"
    if lr >= 1:
        return f"×{lr:.1f}"
    return f"×{lr:.2f}" if lr >= 0.01 else "×<0.01"


def _evidence_words(a: Assessment) -> list[tuple[str, list[str], list[str]]]:
    return [
        (
            e.condition,
            [f"{x.text} ({_ratio(x.likelihood_ratio)})" for x in e.supporting],
            [f"{x.text} ({_ratio(x.likelihood_ratio)})" for x in e.opposing],
        )
        for e in a.explanations
    ]


def _review_status(pack: Pack) -> str:
    return str(pack.meta.get("review_status") or "review status not stated")


# ---------------------------------------------------------------- Markdown


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md(text: object) -> str:
    """Text safe inside Markdown: punctuation that could format or inject HTML is backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def clinician_report_markdown(consultation: Consultation) -> str:
    """A SOAP-style clinician report of the consultation as Markdown."""
    c = _content(consultation)
    a, pack = c.assessment, c.pack
    t = a.triage
    lines = [
        "# Clinician report (SOAP) — decision support, not a diagnosis",
        "",
        f"> **{_md(a.notice)}**",
        "",
        f"- Patient: {_md(c.patient)}",
        f"- Knowledge pack: {_md(pack.name)} {_md(pack.version)} (triage rules and red flags: {_md(_review_status(pack))})",
        f"- Questions asked: {c.questions_asked} ({_md(c.progress)})",
        f"- Generated: {_md(c.generated)} by diagnostician {_md(__version__)}",
        "",
        "## S — Subjective",
        "",
        "**Presenting complaint**" + ("" if c.complaints else ": none recorded"),
    ]
    lines += [f"- {_md(x)}" for x in c.complaints]
    lines += ["", "**Also reported present**" + ("" if c.present else ": none")]
    lines += [f"- {_md(x)}" for x in c.present]
    lines += ["", "**Pertinent negatives** (answered absent; lower a leading condition, likelihood ratio shown)" + ("" if c.negatives else ": none")]
    for n in c.negatives:
        lowers = ", ".join(f"{_md(name)} {_md(_ratio(lr))}" for name, lr in n.lowers)
        lines.append(f"- {_md(n.text)} — lowers {lowers}")
    if c.other_absent > 0:
        lines.append(f"- {c.other_absent} other finding(s) answered absent (little or no weight against the leading conditions, or beyond the list)")
    lines += ["", "**Answered \"don't know\"**" + ("" if c.unknown else ": none")]
    lines += [f"- {_md(x)}" for x in c.unknown]
    lines += ["", "## O — Objective", ""]
    lines += [f"- {_md(x)}" for x in c.objective()] if c.objective() != [NO_EXAMINATION] else [_md(NO_EXAMINATION)]
    lines += ["", "## A — Assessment", ""]
    if a.differential:
        lines += [
            "Differential, most likely first (posterior probability from the answers; *consider / rule out*: listed to be ruled out though less likely):",
            "",
            "| # | Condition | ICD-10 | Probability | Role | Urgency if this is it |",
            "|---:|---|---|---:|---|---|",
        ]
        for i, e in enumerate(a.differential, 1):
            lines.append(
                f"| {i} | {_md(e.name)} | {_md(e.icd10 or '—')} | {_pct(e.posterior)} | {_md(ROLE_NAME.get(e.role, e.role))} | {_md(LEVEL_NAME.get(e.triage, e.triage))} |"
            )
    else:
        lines.append("No condition listed.")
    ev = _evidence_words(a)
    if ev:
        lines += ["", "Why (answers with the largest likelihood ratios for and against each leading condition):", ""]
        for name, up, down in ev:
            parts = []
            if up:
                parts.append("for: " + "; ".join(_md(x) for x in up))
            if down:
                parts.append("against: " + "; ".join(_md(x) for x in down))
            lines.append(f"- **{_md(name)}** — " + (" | ".join(parts) if parts else "no answer weighs strongly either way"))
    lines += [
        "",
        "## P — Plan",
        "",
        f"**Triage: {_md(LEVEL_NAME.get(t.level, t.level))}** — {_md(t.advice)}",
    ]
    lines += [f"- because: {_md(r)}" for r in t.reasons]
    lines += ["", "**Red flags**" + ("" if t.red_flags else ": no danger sign answered present")]
    for rf in t.red_flags:
        found = "; ".join(_md(x) for x in c.red_flag_findings.get(rf.id, []))
        lines.append(
            f"- {_md(rf.id.replace('_', ' '))} ({_md(LEVEL_NAME.get(rf.level, rf.level))}): {_md(rf.advice)} "
            f"Finding: {found}. Basis: {_md(rf.basis)}"
        )
    if a.tests:
        lines += ["", "**Still needed: suggested examinations and tests**", ""] + [f"- {_md(x)}" for x in suggestion_lines(a.tests)] + ["", f"*{_md(basis_of(a.tests))}*"]
    else:
        lines += ["", _md(suggested_tests_text(pack, a))]
    if a.plan is not None:
        lines += ["", "**Plan**", "", f"- {_md(a.plan.text)}"]
        lines += [f"- Watch for: {_md(w)}" for w in a.plan.watch_for] + [f"- Would change the advice: {_md(w)}" for w in a.plan.change]
        lines += ["", f"*Re-check basis: {_md(a.plan.basis)}*"]
    lines += ["", "---", "", f"*{_md(a.notice)}*", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24;line-height:1.45}
main{max-width:60rem;margin:0 auto;padding:1.5rem;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0 1rem}h2{font-size:1.2rem;border-bottom:2px solid #d0d7de;padding-bottom:.2rem;margin-top:1.6rem}
h3{font-size:1rem;margin:1rem 0 .3rem}
.notice{border-left:5px solid #9a6700;background:#fff8c5;padding:.6rem .9rem;font-weight:600}
.meta{color:#444;font-size:.92rem}.meta dt{font-weight:600;float:left;clear:left;width:9.5rem}.meta dd{margin:0 0 .2rem 10rem}
table{border-collapse:collapse;width:100%;font-size:.93rem}th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f4}td.num{text-align:right;white-space:nowrap}
.triage{padding:.7rem 1rem;border-radius:6px;font-weight:600}
.triage-emergency{background:#cf222e;color:#fff}.triage-urgent_24h{background:#ffd8d3;color:#82071e}
.triage-see_doctor{background:#fff1c5;color:#6a4a00}.triage-self_care{background:#dafbe1;color:#0a4b1e}
.muted{color:#57606a}.flag{border:1px solid #cf222e;border-radius:6px;padding:.4rem .7rem;margin:.4rem 0}
footer{margin-top:2rem;font-size:.9rem}
@media print{body{background:#fff}main{padding:0}}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _ul(items: list[str], empty: str) -> str:
    if not items:
        return f'<p class="muted">{_e(empty)}</p>'
    return "<ul>" + "".join(f"<li>{x}</li>" for x in items) + "</ul>"


def clinician_report_html(consultation: Consultation) -> str:
    """A SOAP-style clinician report of the consultation as a self-contained HTML page (inline CSS, all text escaped)."""
    c = _content(consultation)
    a, pack = c.assessment, c.pack
    t = a.triage
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>Clinician report — decision support, not a diagnosis</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<h1>Clinician report (SOAP) — decision support, not a diagnosis</h1>",
        f'<p class="notice" role="note">{_e(a.notice)}</p>',
        '<dl class="meta">',
        f"<dt>Patient</dt><dd>{_e(c.patient)}</dd>",
        f"<dt>Knowledge pack</dt><dd>{_e(pack.name)} {_e(pack.version)} (triage rules and red flags: {_e(_review_status(pack))})</dd>",
        f"<dt>Questions asked</dt><dd>{c.questions_asked} ({_e(c.progress)})</dd>",
        f"<dt>Generated</dt><dd>{_e(c.generated)} by diagnostician {_e(__version__)}</dd>",
        "</dl>",
        '<section id="subjective"><h2>S — Subjective</h2>',
        "<h3>Presenting complaint</h3>",
        _ul([_e(x) for x in c.complaints], "None recorded."),
        "<h3>Also reported present</h3>",
        _ul([_e(x) for x in c.present], "None."),
        "<h3>Pertinent negatives</h3>",
        '<p class="muted">Answered absent; each lowers a leading condition (likelihood ratio shown).</p>',
    ]
    neg = [
        f"{_e(n.text)} — lowers " + ", ".join(f"{_e(name)} {_e(_ratio(lr))}" for name, lr in n.lowers) for n in c.negatives
    ]
    if c.other_absent > 0:
        neg.append(_e(f"{c.other_absent} other finding(s) answered absent (little or no weight against the leading conditions, or beyond the list)"))
    out.append(_ul(neg, "None."))
    out += ["<h3>Answered “don't know”</h3>", _ul([_e(x) for x in c.unknown], "None."), "</section>"]
    out += ['<section id="objective"><h2>O — Objective</h2>', *(f"<p>{_e(x)}</p>" for x in c.objective()), "</section>"]
    out.append('<section id="assessment"><h2>A — Assessment</h2>')
    if a.differential:
        out.append(
            "<p>Differential, most likely first (posterior probability from the answers; "
            "<em>consider / rule out</em>: listed to be ruled out though less likely).</p>"
        )
        out.append(
            '<table><thead><tr><th scope="col">#</th><th scope="col">Condition</th><th scope="col">ICD-10</th>'
            '<th scope="col">Probability</th><th scope="col">Role</th><th scope="col">Urgency if this is it</th></tr></thead><tbody>'
        )
        for i, e in enumerate(a.differential, 1):
            out.append(
                f'<tr><td class="num">{i}</td><td>{_e(e.name)}</td><td>{_e(e.icd10 or "—")}</td>'
                f'<td class="num">{_e(_pct(e.posterior))}</td><td>{_e(ROLE_NAME.get(e.role, e.role))}</td>'
                f"<td>{_e(LEVEL_NAME.get(e.triage, e.triage))}</td></tr>"
            )
        out.append("</tbody></table>")
    else:
        out.append("<p>No condition listed.</p>")
    ev = _evidence_words(a)
    if ev:
        out.append("<h3>Why</h3><p class=\"muted\">Answers with the largest likelihood ratios for and against each leading condition.</p><ul>")
        for name, up, down in ev:
            parts = []
            if up:
                parts.append("for: " + "; ".join(_e(x) for x in up))
            if down:
                parts.append("against: " + "; ".join(_e(x) for x in down))
            out.append(f"<li><strong>{_e(name)}</strong> — " + (" | ".join(parts) if parts else "no answer weighs strongly either way") + "</li>")
        out.append("</ul>")
    out.append("</section>")
    level = t.level if t.level in TRIAGE_LEVELS else "see_doctor"
    out += [
        '<section id="plan"><h2>P — Plan</h2>',
        f'<p class="triage triage-{level}" role="status">Triage: {_e(LEVEL_NAME.get(t.level, t.level))} — {_e(t.advice)}</p>',
        _ul([_e(f"because: {r}") for r in t.reasons], "") if t.reasons else "",
        "<h3>Red flags</h3>",
    ]
    if t.red_flags:
        for rf in t.red_flags:
            found = "; ".join(_e(x) for x in c.red_flag_findings.get(rf.id, []))
            out.append(
                f'<div class="flag"><strong>{_e(rf.id.replace("_", " "))}</strong> ({_e(LEVEL_NAME.get(rf.level, rf.level))}): '
                f"{_e(rf.advice)}<br>Finding: {found}<br>Basis: {_e(rf.basis)}</div>"
            )
    else:
        out.append('<p class="muted">No danger sign answered present.</p>')
    if a.tests:
        out += ["<h3>Still needed: suggested examinations and tests</h3>", _ul([_e(x) for x in suggestion_lines(a.tests)], ""), f"<p><em>{_e(basis_of(a.tests))}</em></p>"]
    else:
        out.append(f"<p>{_e(suggested_tests_text(pack, a))}</p>")
    if a.plan is not None:
        items = [_e(a.plan.text), *(f"Watch for: {_e(w)}" for w in a.plan.watch_for), *(f"Would change the advice: {_e(w)}" for w in a.plan.change)]
        out += ["<h3>Plan</h3>", _ul(items, ""), f"<p><em>Re-check basis: {_e(a.plan.basis)}</em></p>"]
    out += ["</section>", f"<footer><p><em>{_e(a.notice)}</em></p></footer>", "</main></body></html>", ""]
    return "\n".join(x for x in out if x)


# ---------------------------------------------------------------- FHIR


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    d = {"system": system, "code": code}
    if display:
        d["display"] = display
    return d


def _observation(pack: Pack, ans: Answer, uid: str, patient_ref: dict[str, str], issued: str, volunteered: bool) -> dict[str, Any]:
    f = pack.finding(ans.code)
    system = pack_system(pack)
    value_system = f"{system}:{f.code}"
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": uid,
        "status": "final",
        "category": [{"coding": [_coding(OBSERVATION_CATEGORY_SYSTEM, "survey", "Survey")]}],
        "code": {"coding": [_coding(system, f.code, f.question)], "text": f.question},
        "subject": patient_ref,
        "issued": issued,
        "performer": [patient_ref],  # patient-reported
    }
    v = ans.value
    if v is None:
        obs["dataAbsentReason"] = {"coding": [_coding(DATA_ABSENT_SYSTEM, "asked-unknown", "Asked But Unknown")], "text": "don't know"}
    elif f.kind == BINARY:
        obs["valueBoolean"] = bool(v)
    elif is_scale(f):
        obs["valueInteger"] = int(v)  # type: ignore[arg-type]
    elif f.kind == CATEGORICAL:
        obs["valueCodeableConcept"] = {"coding": [_coding(value_system, str(v), f.label_of(str(v)))], "text": f.label_of(str(v))}
    else:
        vals = (v,) if isinstance(v, str) else tuple(v)  # type: ignore[arg-type]
        if vals:  # several selections: one component each (obs-7: no top-level value beside same-code components)
            obs["component"] = [
                {
                    "code": {"coding": [_coding(system, f.code, f.question)], "text": f.question},
                    "valueCodeableConcept": {"coding": [_coding(value_system, x, f.label_of(x))], "text": f.label_of(x)},
                }
                for x in vals
            ]
        else:
            obs["valueString"] = "none"
    notes = [answer_text(pack, ans)]
    if volunteered:
        notes.append("Reported by the patient at the start of the consultation (not asked).")
    obs["note"] = [{"text": n} for n in notes]
    return obs


def _icd_codings(icd10: str, name: str) -> list[dict[str, Any]]:
    """One coding per listed code ("J17, J18" → two); ICD-10-CM-only codes (e.g. G44.009) get the ICD-10-CM system."""
    codes = [x.strip() for x in icd10.split(",") if x.strip()]
    return [_coding(ICD10_SYSTEM if _WHO_ICD10.fullmatch(c) else ICD10_CM_SYSTEM, c, name) for c in codes]


def fhir_bundle(consultation: Consultation) -> dict[str, Any]:
    """The consultation as a validated FHIR R4 Bundle (type collection, R4B models), as a JSON-ready dict."""
    from fhir.resources.R4B.bundle import Bundle  # imported here: the package is only needed for this export

    pack, state = consultation.pack, consultation.state
    a = consultation.assessment()
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    root = uuid.uuid4()

    def uid(key: str) -> str:
        return str(uuid.uuid5(root, key))

    def ref(u: str) -> dict[str, str]:
        return {"reference": f"urn:uuid:{u}"}

    entries: list[dict[str, Any]] = []

    def add(resource: dict[str, Any]) -> None:
        entries.append({"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource})

    patient_id = uid("patient")
    patient_ref = ref(patient_id)
    add(
        {
            "resourceType": "Patient",
            "id": patient_id,
            "extension": [
                {
                    "url": EXT_AGE,
                    "valueAge": {"value": round(float(state.age), 2), "unit": "years", "system": UCUM_SYSTEM, "code": "a"},
                }
            ],
            "gender": {"F": "female", "M": "male"}.get(state.sex, "unknown"),
        }
    )

    obs_ids: dict[str, str] = {}
    for i, ans in enumerate(state.answers):
        obs_ids[ans.code] = uid(f"observation:{ans.code}")
        add(_observation(pack, ans, obs_ids[ans.code], patient_ref, now, volunteered=i < consultation.initial))

    condition_ids = []
    explanations = dict(zip((e.code for e in a.differential), a.explanations))
    for rank, e in enumerate(a.differential, 1):
        cid = uid(f"condition:{e.code}")
        condition_ids.append(cid)
        role = ROLE_NAME.get(e.role, e.role)
        urgency = LEVEL_NAME.get(e.triage, e.triage)
        note = (
            f"Differential rank {rank}: posterior probability {e.posterior:.1%} from the answers; role: {role}; "
            f"listing probability (differential model) {e.probability:.1%}; urgency if this is it: {urgency}."
        )
        ex = explanations.get(e.code)
        notes = [{"text": note}] + ([{"text": ex.sentence()}] if ex is not None else [])
        cond: dict[str, Any] = {
            "resourceType": "Condition",
            "id": cid,
            "extension": [
                {"url": EXT_POSTERIOR, "valueDecimal": round(e.posterior, 6)},
                {"url": EXT_LISTING, "valueDecimal": round(e.probability, 6)},
                {"url": EXT_ROLE, "valueCode": e.role},
                {"url": EXT_URGENCY, "valueCode": e.triage},
            ],
            "verificationStatus": {"coding": [_coding(VER_STATUS_SYSTEM, "differential", "Differential")]},
            "category": [{"coding": [_coding(CONDITION_CATEGORY_SYSTEM, "encounter-diagnosis", "Encounter Diagnosis")]}],
            "code": {"coding": _icd_codings(e.icd10, e.name) + [_coding(pack_system(pack), e.code, e.name)], "text": e.name},
            "subject": patient_ref,
            "recordedDate": now,
            "note": notes,
        }
        support = [ref(obs_ids[x.code]) for x in (ex.supporting if ex is not None else ()) if x.code in obs_ids]
        if support:
            cond["evidence"] = [{"detail": support}]
        add(cond)

    t = a.triage
    predictions: list[dict[str, Any]] = [
        {
            "outcome": {
                "coding": [_coding(TRIAGE_SYSTEM, t.level, LEVEL_NAME.get(t.level, t.level))],
                "text": f"Triage: {LEVEL_NAME.get(t.level, t.level)}",
            },
            "rationale": "; ".join(t.reasons) or "no danger sign and no urgency level reached its threshold",
        }
    ]
    for lvl, mass in zip(TRIAGE_LEVELS[:-1], t.mass):
        predictions.append(
            {
                "outcome": {"text": f"a condition needing '{LEVEL_NAME[lvl]}' care or sooner"},
                "probabilityDecimal": round(float(mass), 6),
                "rationale": "posterior mass of the conditions whose own triage level is this one or more urgent",
            }
        )
    answered = state.answered
    flag_notes = [
        {
            "text": f"Red flag {rf.id} ({LEVEL_NAME.get(rf.level, rf.level)}): {rf.advice} Finding: "
            + "; ".join(answer_text(pack, answered[code]) for code in flag_evidence(pack, rf, state))
            + f". Basis: {rf.basis}"
        }
        for rf in t.red_flags
    ]
    flagged = list(dict.fromkeys(code for rf in t.red_flags for code in flag_evidence(pack, rf, state) if code in obs_ids))
    basis_obs = flagged + [code for code in obs_ids if code not in flagged]  # red-flag findings first
    add(
        {
            "resourceType": "RiskAssessment",
            "id": uid("triage"),
            "status": "final",
            "code": {"text": "Triage: urgency of care"},
            "method": {
                "text": "diagnostician triage rule: fired red flags set a floor; otherwise the most urgent level "
                "whose posterior mass reaches its threshold; otherwise self-care"
            },
            "subject": patient_ref,
            "occurrenceDateTime": now,
            "basis": [ref(obs_ids[code]) for code in basis_obs] + [ref(u) for u in condition_ids],
            "prediction": predictions,
            "mitigation": t.advice,
            "note": flag_notes
            + [
                {
                    "text": f"Knowledge pack {pack.name} {pack.version} ({_review_status(pack)}); "
                    f"{consultation.questions_asked} questions asked; {suggested_tests_text(pack, a)}"
                },
                {"text": a.notice},
            ],
        }
    )
    bundle = Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "id": str(root),
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{root}"},
            "type": "collection",
            "timestamp": now,
            "entry": entries,
        }
    )
    return bundle.model_dump(mode="json", exclude_none=True)
