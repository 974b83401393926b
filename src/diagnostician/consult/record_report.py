"""A member's health summary from the family record: profile, history, diary with plots, consultations and follow-ups."""

from __future__ import annotations

import base64
import html
from datetime import datetime
from typing import Any

from diagnostician.consult.household import Household, Member, now_utc
from diagnostician.consult.plot import series_svg
from diagnostician.consult.session import Consultation
from diagnostician.engine import NOTICE
from diagnostician.knowledge.schema import load_pack

MAX_DIARY_ROWS = 50


def _consultations(hh: Household, m: Member) -> list[dict[str, Any]]:
    """Each stored consultation of the member, oldest first, with its triage, leading conditions and plan."""
    out = []
    for s in reversed(hh.store.list(member_id=m.id, limit=1000)):
        stored = hh.store.get(s.id)
        c = Consultation.from_dict(stored.data, load_pack(stored.pack_name))
        a = c.assessment(explain_top=0)
        out.append({
            "id": s.id,
            "at": s.created_at,
            "level": a.triage.level,
            "advice": a.triage.advice,
            "top": [f"{e.name} ({e.posterior:.0%})" for e in a.differential[:3]],
            "plan": a.plan.text if a.plan else "",
        })  # fmt: skip
    return out


def _age_text(m: Member, when: datetime) -> str:
    age = m.age_at(when)
    return f"{int(age)} years" if age >= 2 else f"{int(age * 12)} months"


def member_report_markdown(hh: Household, m: Member, now: datetime | None = None) -> str:
    """The member's health summary in Markdown (plots embedded as SVG data URIs)."""
    t = now or now_utc()
    lines = [f"# Health summary: {m.name}", "", f"_{NOTICE}_", "", f"- Sex: {m.sex}", f"- Age: {_age_text(m, t)}"]
    if m.birth_date:
        lines.append(f"- Born: {m.birth_date.isoformat()}")
    if m.pregnant:
        lines.append("- Pregnant")
    if m.history:
        lines += ["", "## History", *[f"- {h.kind}: {h.text}" for h in m.history]]
    diary = hh.diary(m.id)
    if diary:
        lines += ["", "## Diary", "", "| when (UTC) | entry |", "|---|---|"]
        lines += [f"| {e.at.isoformat(timespec='minutes')} | {e.text()} |" for e in diary[-MAX_DIARY_ROWS:]]
    for s in hh.series(m.id):
        uri = "data:image/svg+xml;base64," + base64.b64encode(series_svg(s).encode("utf-8")).decode("ascii")
        lines += ["", f"![{s.title}]({uri})"]
    cons = _consultations(hh, m)
    if cons:
        lines += ["", "## Consultations"]
        for c in cons:
            lines += ["", f"### {c['at'].isoformat(timespec='minutes')} — triage {c['level']}", f"- Advice: {c['advice']}"]
            lines += [f"- Leading conditions: {', '.join(c['top'])}"] if c["top"] else []
            lines += [f"- Plan: {c['plan']}"] if c["plan"] else []
    fups = hh.followups(member=m.id, status=None)
    if fups:
        lines += ["", "## Follow-ups", *[f"- {f.due_at.isoformat(timespec='minutes')}: {f.status} — {f.plan.get('text', '')}" for f in fups]]
    return "\n".join(lines) + "\n"


def member_report_html(hh: Household, m: Member, now: datetime | None = None) -> str:
    """The member's health summary as a standalone HTML page with inline SVG plots."""
    t = now or now_utc()
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Health summary: {e(m.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:760px;margin:2em auto;color:#24292f}table{border-collapse:collapse}"
        "td,th{border:1px solid #d0d7de;padding:2px 8px;text-align:left}.notice{background:#fff8c5;padding:.5em}</style></head><body>",
        f"<h1>Health summary: {e(m.name)}</h1>",
        f"<p class='notice'>{e(NOTICE)}</p>",
        f"<p>Sex: {e(m.sex)} · Age: {e(_age_text(m, t))}" + (f" · Born: {m.birth_date.isoformat()}" if m.birth_date else "") + (" · Pregnant" if m.pregnant else "") + "</p>",
    ]
    if m.history:
        parts.append("<h2>History</h2><ul>" + "".join(f"<li>{e(h.kind)}: {e(h.text)}</li>" for h in m.history) + "</ul>")
    series = hh.series(m.id)
    if series:
        parts.append("<h2>Plots</h2>" + "".join(f"<figure>{series_svg(s)}</figure>" for s in series))
    diary = hh.diary(m.id)
    if diary:
        rows = "".join(f"<tr><td>{e(x.at.isoformat(timespec='minutes'))}</td><td>{e(x.text())}</td></tr>" for x in diary[-MAX_DIARY_ROWS:])
        parts.append(f"<h2>Diary</h2><table><tr><th>when (UTC)</th><th>entry</th></tr>{rows}</table>")
    cons = _consultations(hh, m)
    if cons:
        parts.append("<h2>Consultations</h2>")
        for c in cons:
            parts.append(
                f"<h3>{e(c['at'].isoformat(timespec='minutes'))} — triage {e(c['level'])}</h3><ul><li>Advice: {e(c['advice'])}</li>"
                + (f"<li>Leading conditions: {e(', '.join(c['top']))}</li>" if c["top"] else "")
                + (f"<li>Plan: {e(c['plan'])}</li>" if c["plan"] else "")
                + "</ul>"
            )
    fups = hh.followups(member=m.id, status=None)
    if fups:
        parts.append("<h2>Follow-ups</h2><ul>" + "".join(f"<li>{e(f.due_at.isoformat(timespec='minutes'))}: {e(f.status)} — {e(str(f.plan.get('text', '')))}</li>" for f in fups) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
