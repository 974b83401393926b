"""Follow-up knowledge: when to re-check after an assessment, and which symptoms matter by how long they last.

Both are data (`sources/followup.json`), each entry with its basis. A course rule names the finding it
is about once per pack (the packs code the same symptom differently) and fires in a follow-up when
that finding is still present after the stated number of days.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from diagnostician.errors import PackError
from diagnostician.knowledge.schema import TRIAGE_LEVELS, Pack, read_table

FOLLOWUP_FILE = Path(__file__).parent / "sources" / "followup.json"
FORMAT = "diagnostician-followup/1"


@dataclass(frozen=True)
class Recheck:
    """When to check again after an assessment at one triage level."""

    level: str
    hours: int | None  # None: act now, no home re-check
    text: str
    basis: str


@dataclass(frozen=True)
class CourseRule:
    """A symptom that needs care once it has lasted `days` (optionally only within an age range)."""

    id: str
    findings: dict[str, str]  # pack name → finding code
    days: float
    level: str
    advice: str
    basis: str
    min_age: float | None = None
    max_age: float | None = None
    implies: dict[str, str] | None = None  # pack name → a duration finding the rule makes present

    def applies(self, age: float) -> bool:
        """Whether the rule is for a patient of this age."""
        return (self.min_age is None or age >= self.min_age) and (self.max_age is None or age < self.max_age)


@dataclass(frozen=True)
class FollowupKnowledge:
    """The re-check table and the course rules."""

    recheck: dict[str, Recheck]
    course: tuple[CourseRule, ...]

    def rules_for(self, pack: Pack) -> tuple[CourseRule, ...]:
        """The course rules that name a finding of this pack (a composed pack uses its parts' codes)."""
        return tuple(r for r in self.course if self.code_in(r, pack) is not None)

    @staticmethod
    def code_in(rule: CourseRule, pack: Pack, table: dict[str, str] | None = None) -> str | None:
        """The finding code a rule names for this pack, if the pack has it."""
        table = rule.findings if table is None else table
        for n in (pack.name, *pack.name.split("+")):
            code = table.get(n)
            if code is not None and code in pack.finding_index:
                return code
        return None


def _need(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise PackError(f"{where}: missing {key!r}")
    return entry[key]


def parse_followup(data: Any, where: str = "followup knowledge") -> FollowupKnowledge:
    """Validate the follow-up table's JSON form."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PackError(f"{where}: not a {FORMAT} file")
    recheck: dict[str, Recheck] = {}
    for i, e in enumerate(data.get("recheck") or []):
        at = f"{where}: recheck[{i}]"
        level = _need(e, "level", at)
        if level not in TRIAGE_LEVELS:
            raise PackError(f"{at}: unknown level {level!r}")
        hours = _need(e, "hours", at)
        if hours is not None and (not isinstance(hours, int) or isinstance(hours, bool) or hours <= 0):
            raise PackError(f"{at}: hours must be a positive whole number or null")
        recheck[level] = Recheck(level, hours, str(_need(e, "text", at)), str(_need(e, "basis", at)))
    missing = [lvl for lvl in TRIAGE_LEVELS if lvl not in recheck]
    if missing:
        raise PackError(f"{where}: no re-check entry for {', '.join(missing)}")
    rules = []
    seen: set[str] = set()
    for i, e in enumerate(data.get("course") or []):
        at = f"{where}: course[{i}]"
        rid = str(_need(e, "id", at))
        if rid in seen:
            raise PackError(f"{at}: duplicate id {rid!r}")
        seen.add(rid)
        level = _need(e, "level", at)
        if level not in TRIAGE_LEVELS:
            raise PackError(f"{at} ({rid}): unknown level {level!r}")
        days = _need(e, "days", at)
        if not isinstance(days, (int, float)) or isinstance(days, bool) or days <= 0:
            raise PackError(f"{at} ({rid}): days must be a positive number")
        findings = _need(e, "findings", at)
        if not isinstance(findings, dict) or not findings:
            raise PackError(f"{at} ({rid}): findings must map pack names to finding codes")
        basis = str(_need(e, "basis", at)).strip()
        if not basis:
            raise PackError(f"{at} ({rid}): empty basis")
        rules.append(
            CourseRule(rid, dict(findings), float(days), level, str(_need(e, "advice", at)), basis, e.get("min_age"), e.get("max_age"), e.get("implies"))
        )
    return FollowupKnowledge(recheck, tuple(rules))


@lru_cache(maxsize=1)
def _shipped() -> FollowupKnowledge:
    return parse_followup(read_table(FOLLOWUP_FILE), str(FOLLOWUP_FILE.name))


def load_followup(path: Path | None = None) -> FollowupKnowledge:
    """The follow-up knowledge (the shipped file by default), validated."""
    return _shipped() if path is None else parse_followup(read_table(Path(path)), str(path))
