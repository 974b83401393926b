"""The family health record: household members, their diary of symptoms and vital signs, and follow-ups.

Everything lives in the consultation store (same database, same transactions, the same optional
encryption). A consultation for a member starts from what the record knows: age from the birth date,
sex, and history items, which are read with the pack's own reader and asked back for confirmation
rather than entered silently. Each finished consultation stores its care plan as a follow-up due at
the plan's re-check time; a follow-up consultation starts from the previous answers, asks which
symptoms are still there, and applies the pack's course rules (how long a symptom has lasted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

from diagnostician.consult.plot import Series
from diagnostician.consult.session import Consultation
from diagnostician.consult.store import (
    ConsultationStore,
    MemberNotFoundError,
    StoredConsultation,
    StoredDiaryEntry,
    StoredFollowup,
)
from diagnostician.dialogue.mentions import PRESENT, Mention
from diagnostician.dialogue.nlu import reader_for
from diagnostician.engine.posterior import MAX_AGE, check_age, normalise_sex
from diagnostician.errors import InputError, SessionError
from diagnostician.knowledge.schema import BINARY, Pack
from diagnostician.knowledge.vitals import Reading, format_reading, is_outside_normal, load_vitals, parse_reading

MEMBER_FORMAT = "diagnostician-member/1"
HISTORY_KINDS = ("condition", "medication", "allergy", "antecedent")
MAX_NAME = 80
MAX_TEXT = 200
MAX_HISTORY = 100


class FollowupClosedError(SessionError):
    """A follow-up that is already done or cancelled."""


def now_utc() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(timezone.utc)


def parse_when(text: str | None, default: datetime | None = None) -> datetime:
    """A time from ISO 8601 text ('2026-11-24', '2026-11-24T21:30', with or without offset; naive = UTC), or now."""
    if text is None or not str(text).strip():
        return default or now_utc()
    try:
        when = datetime.fromisoformat(str(text).strip())
    except ValueError as exc:
        raise InputError(f"cannot read the time {text!r}: write it as ISO 8601, e.g. 2026-11-24 or 2026-11-24T21:30") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if when > now_utc() + timedelta(minutes=5):
        raise InputError(f"the time {text!r} is in the future")
    return when


def parse_birth_date(text: str | date | None) -> date | None:
    """A birth date from ISO text (YYYY-MM-DD), checked: not in the future, not over 120 years ago."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, date):
        born = text
    else:
        try:
            born = date.fromisoformat(str(text).strip())
        except ValueError as exc:
            raise InputError(f"cannot read the birth date {text!r}: write it as YYYY-MM-DD, e.g. 2019-03-14") from exc
    today = now_utc().date()
    if born > today:
        raise InputError(f"the birth date {born.isoformat()} is in the future")
    if (today - born).days / 365.25 > MAX_AGE:
        raise InputError(f"the birth date {born.isoformat()} is more than {MAX_AGE:.0f} years ago")
    return born


@dataclass(frozen=True)
class HistoryItem:
    """One thing the record knows about a member: a chronic condition, a medication, an allergy or an antecedent."""

    kind: str
    text: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"kind": self.kind, "text": self.text}


def history_item(kind: str, text: str) -> HistoryItem:
    """A validated history item."""
    kind = (kind or "").strip().lower()
    if kind not in HISTORY_KINDS:
        raise InputError(f"a history item is one of {', '.join(HISTORY_KINDS)}, not {kind!r}")
    text = " ".join(str(text or "").split())
    if not text:
        raise InputError(f"an empty {kind} cannot be recorded")
    if len(text) > MAX_TEXT:
        raise InputError(f"a {kind} is at most {MAX_TEXT} characters")
    return HistoryItem(kind, text)


@dataclass(frozen=True)
class Member:
    """A household member's profile."""

    id: str
    name: str
    sex: str  # "F" or "M"
    birth_date: date | None = None
    age: float | None = None  # age in years on `age_on_date`, when the birth date is not known
    age_on_date: date | None = None
    pregnant: bool = False
    history: tuple[HistoryItem, ...] = ()
    created_at: datetime | None = None

    def age_at(self, when: datetime | None = None) -> float:
        """Age in years at a time (from the birth date, or the recorded age moved on by the time since)."""
        day = (when or now_utc()).date()
        if self.birth_date is not None:
            years = (day - self.birth_date).days / 365.25
        else:
            years = (self.age or 0.0) + (day - (self.age_on_date or day)).days / 365.25
        return round(max(0.0, min(years, MAX_AGE)), 3)

    def to_dict(self) -> dict[str, Any]:
        """The stored form (no id: the store keeps it)."""
        return {
            "format": MEMBER_FORMAT,
            "name": self.name,
            "sex": self.sex,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None,
            "age": self.age,
            "age_on_date": self.age_on_date.isoformat() if self.age_on_date else None,
            "pregnant": self.pregnant,
            "history": [h.to_dict() for h in self.history],
        }

    def view(self, when: datetime | None = None) -> dict[str, Any]:
        """JSON-ready form for interfaces: the profile with its id and current age."""
        return {"id": self.id, **{k: v for k, v in self.to_dict().items() if k != "format"}, "age_now": self.age_at(when)}

    @classmethod
    def from_stored(cls, member_id: str, data: Mapping[str, Any], created_at: datetime | None = None) -> "Member":
        """Restore a member from its stored form."""
        if data.get("format") != MEMBER_FORMAT:
            raise InputError(f"household member {member_id} is not in the {MEMBER_FORMAT} format")
        return cls(
            member_id,
            data["name"],
            data["sex"],
            date.fromisoformat(data["birth_date"]) if data.get("birth_date") else None,
            data.get("age"),
            date.fromisoformat(data["age_on_date"]) if data.get("age_on_date") else None,
            bool(data.get("pregnant")),
            tuple(HistoryItem(h["kind"], h["text"]) for h in data.get("history") or ()),
            created_at,
        )


@dataclass(frozen=True)
class DiaryEntry:
    """A diary entry: a vital-sign reading or a symptom with its severity (0–10)."""

    id: str
    member_id: str
    at: datetime
    kind: str  # "vital" | "symptom"
    code: str  # vital code, or the symptom's name as written
    value: float | tuple[float, float] | None = None  # canonical units (vital); severity (symptom)
    unit: str = ""
    note: str = ""

    @classmethod
    def from_stored(cls, row: StoredDiaryEntry) -> "DiaryEntry":
        """Restore an entry from the store."""
        d = row.data
        value = d.get("value")
        return cls(row.id, row.member_id, row.at, d["kind"], d["code"], tuple(value) if isinstance(value, list) else value, d.get("unit", ""), d.get("note", ""))

    def text(self) -> str:
        """The entry as people write it."""
        if self.kind == "vital":
            return format_reading(Reading(self.code, self.value, self.unit))  # type: ignore[arg-type]
        return f"{self.code}: severity {self.value:g}/10" if self.value is not None else self.code

    def view(self) -> dict[str, Any]:
        """JSON-ready form for interfaces."""
        out: dict[str, Any] = {"id": self.id, "at": self.at.isoformat(), "kind": self.kind, "code": self.code, "text": self.text()}
        out["value"] = list(self.value) if isinstance(self.value, tuple) else self.value
        if self.unit:
            out["unit"] = self.unit
        if self.kind == "vital":
            out["outside_normal"] = is_outside_normal(Reading(self.code, self.value, self.unit))  # type: ignore[arg-type]
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Followup:
    """A planned re-check of a consultation."""

    id: str
    consultation_id: str
    member_id: str | None
    due_at: datetime
    status: str
    plan: dict[str, Any]
    next_consultation_id: str | None = None

    @classmethod
    def from_stored(cls, row: StoredFollowup) -> "Followup":
        """Restore a follow-up from the store."""
        return cls(row.id, row.consultation_id, row.member_id, row.due_at, row.status, dict(row.data.get("plan") or {}), row.data.get("next_consultation_id"))

    def view(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON-ready form for interfaces."""
        t = now or now_utc()
        return {
            "id": self.id,
            "consultation_id": self.consultation_id,
            "member_id": self.member_id,
            "due_at": self.due_at.isoformat(),
            "due": self.status == "open" and self.due_at <= t,
            "status": self.status,
            "plan": self.plan,
            "next_consultation_id": self.next_consultation_id,
        }


@dataclass
class FollowupStart:
    """What a follow-up consultation begins from."""

    followup: Followup
    previous: StoredConsultation
    member: Member | None
    age: float
    sex: str
    answers: list[tuple[str, object]]  # the previous consultation's answers, carried forward
    ongoing: list[str]  # present symptoms to ask about again ("is it still there?")
    days: dict[str, float] = field(default_factory=dict)  # how long each carried symptom has lasted by now
    first_seen: dict[str, str] = field(default_factory=dict)  # when each symptom was first reported (ISO), for the next follow-up


class Household:
    """The family health record over a consultation store."""

    def __init__(self, store: ConsultationStore) -> None:
        """Use this store (its database holds the record)."""
        self.store: Any = store

    # ------------------------------------------------------------ members

    def members(self) -> list[Member]:
        """Every member, oldest record first."""
        return [Member.from_stored(m.id, m.data, m.created_at) for m in self.store.list_members()]

    def member_by_id(self, member_id: str) -> Member:
        """A member by id only (interfaces that log paths pass ids, never names)."""
        m = self.store.get_member(member_id)
        return Member.from_stored(m.id, m.data, m.created_at)

    def member(self, ref: str) -> Member:
        """A member by id or by name (case-insensitive)."""
        ref = (ref or "").strip()
        if not ref:
            raise InputError("name a household member")
        try:
            m = self.store.get_member(ref)
            return Member.from_stored(m.id, m.data, m.created_at)
        except MemberNotFoundError:
            pass
        found = [m for m in self.members() if m.name.casefold() == ref.casefold()]
        if not found:
            raise MemberNotFoundError(f"no household member {ref!r} (see `diagnostician family list`)")
        return found[0]

    def add_member(
        self,
        name: str,
        sex: str,
        birth_date: str | date | None = None,
        age: float | str | None = None,
        pregnant: bool = False,
        history: Sequence[HistoryItem] = (),
    ) -> Member:
        """Add a member (a birth date or an age is required), checked before anything is stored."""
        if birth_date not in (None, "") and age not in (None, ""):
            raise InputError("give a birth date or an age, not both")
        member = self._checked(Member("", name, sex, parse_birth_date(birth_date), None, None, pregnant, tuple(history)), age)
        if any(m.name.casefold() == member.name.casefold() for m in self.members()):
            raise InputError(f"a household member named {member.name!r} already exists")
        stored = self.store.create_member(member.to_dict())
        return Member.from_stored(stored.id, stored.data, stored.created_at)

    def _checked(self, m: Member, age: float | str | None) -> Member:
        name = " ".join((m.name or "").split())
        if not name:
            raise InputError("a household member needs a name")
        if len(name) > MAX_NAME:
            raise InputError(f"a name is at most {MAX_NAME} characters")
        sex = normalise_sex(m.sex or "")
        years, on = m.age, m.age_on_date
        if age is not None:
            from diagnostician.dialogue.intake import parse_age

            years = check_age(parse_age(str(age))) if isinstance(age, str) else check_age(float(age))
            on = now_utc().date()
        if m.birth_date is None and years is None:
            raise InputError(f"give {name}'s birth date (YYYY-MM-DD) or age")
        if m.birth_date is not None:
            years, on = None, None
        out = Member(m.id, name, sex, m.birth_date, years, on, bool(m.pregnant), tuple(m.history), m.created_at)
        if out.pregnant and (sex != "F" or not 10 <= out.age_at() <= 60):
            raise InputError("pregnancy can be recorded only for a female member aged 10 to 60")
        if len(out.history) > MAX_HISTORY:
            raise InputError(f"at most {MAX_HISTORY} history items per member")
        return out

    def update_member(self, ref: str, **changes: Any) -> Member:
        """Change profile fields (name, sex, birth_date, age, pregnant) and keep the rest."""
        m = self.member(ref)
        age = changes.pop("age", None)
        if age is not None and changes.get("birth_date") not in (None, ""):
            raise InputError("give a birth date or an age, not both")
        if "birth_date" in changes:
            changes["birth_date"] = parse_birth_date(changes["birth_date"])
        unknown = set(changes) - {"name", "sex", "birth_date", "pregnant"}
        if unknown:
            raise InputError(f"cannot change {', '.join(sorted(unknown))} of a member")
        merged = Member(m.id, changes.get("name", m.name), changes.get("sex", m.sex), changes.get("birth_date", m.birth_date), m.age, m.age_on_date,
                        changes.get("pregnant", m.pregnant), m.history, m.created_at)  # fmt: skip
        if age is not None:
            merged = Member(merged.id, merged.name, merged.sex, None, None, None, merged.pregnant, merged.history, merged.created_at)
        new = self._checked(merged, age)
        if new.name.casefold() != m.name.casefold() and any(o.name.casefold() == new.name.casefold() for o in self.members()):
            raise InputError(f"a household member named {new.name!r} already exists")
        stored = self.store.update_member(m.id, new.to_dict())
        return Member.from_stored(stored.id, stored.data, stored.created_at)

    def add_history(self, ref: str, kind: str, text: str) -> Member:
        """Add a chronic condition, medication, allergy or antecedent to a member's record."""
        m = self.member(ref)
        item = history_item(kind, text)
        if item in m.history:
            return m
        new = Member(m.id, m.name, m.sex, m.birth_date, m.age, m.age_on_date, m.pregnant, m.history + (item,), m.created_at)
        return Member.from_stored(m.id, self.store.update_member(m.id, self._checked(new, None).to_dict()).data, m.created_at)

    def remove_history(self, ref: str, kind: str, text: str) -> Member:
        """Take a history item off a member's record."""
        m = self.member(ref)
        item = history_item(kind, text)
        if item not in m.history:
            raise InputError(f"{m.name}'s record has no {item.kind} {item.text!r}")
        new = Member(m.id, m.name, m.sex, m.birth_date, m.age, m.age_on_date, m.pregnant, tuple(h for h in m.history if h != item), m.created_at)
        return Member.from_stored(m.id, self.store.update_member(m.id, new.to_dict()).data, m.created_at)

    def delete_member(self, ref: str) -> Member:
        """Delete a member and all their data (consultations, diary, follow-ups) for good."""
        m = self.member(ref)
        self.store.delete_member(m.id)
        return m

    # ------------------------------------------------------------ diary

    def record_vital(self, ref: str, code: str, value: str | float, unit: str | None = None, at: datetime | None = None, note: str = "") -> DiaryEntry:
        """Record a vital-sign reading (converted to the canonical unit and range-checked first)."""
        m = self.member(ref)
        reading = parse_reading(code, value, unit)
        data = {"kind": "vital", "code": reading.code, "value": list(reading.value) if isinstance(reading.value, tuple) else reading.value, "unit": reading.unit}
        if note:
            data["note"] = _note(note)
        return DiaryEntry.from_stored(self.store.add_diary(m.id, at or now_utc(), data))

    def record_symptom(self, ref: str, name: str, severity: int | str | None = None, at: datetime | None = None, note: str = "") -> DiaryEntry:
        """Record a symptom with its severity on a 0–10 scale (None: noted without a score)."""
        m = self.member(ref)
        label = " ".join(str(name or "").split()).lower()
        if not label:
            raise InputError("name the symptom, e.g. 'cough'")
        if len(label) > MAX_NAME:
            raise InputError(f"a symptom name is at most {MAX_NAME} characters")
        score: int | None = None
        if severity is not None and str(severity).strip():
            try:
                score = int(str(severity).strip())
            except ValueError as exc:
                raise InputError(f"severity is a whole number from 0 to 10, not {severity!r}") from exc
            if not 0 <= score <= 10:
                raise InputError(f"severity is a whole number from 0 to 10, not {score}")
        data: dict[str, Any] = {"kind": "symptom", "code": label, "value": score}
        if note:
            data["note"] = _note(note)
        return DiaryEntry.from_stored(self.store.add_diary(m.id, at or now_utc(), data))

    def diary(self, ref: str) -> list[DiaryEntry]:
        """A member's diary, oldest first."""
        m = self.member(ref)
        return [DiaryEntry.from_stored(r) for r in self.store.diary(m.id)]

    def series(self, ref: str) -> list[Series]:
        """One plottable series per vital sign (blood pressure as two) and per scored symptom in the diary."""
        vitals = load_vitals()
        by_key: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
        meta: dict[tuple[str, str], tuple[str, str, tuple[float, float] | None]] = {}
        for e in self.diary(ref):
            if e.kind == "vital":
                v = vitals.get(e.code)
                if v is None:  # a reading of a vital sign the shipped table no longer defines: kept in the diary, not plotted
                    continue
                if v.components and isinstance(e.value, tuple):
                    for comp, x in zip(v.components, e.value):
                        key = ("vital", f"{e.code}.{comp.code}")
                        by_key.setdefault(key, []).append((e.at, float(x)))
                        meta[key] = (comp.label, v.unit, comp.normal)
                elif isinstance(e.value, (int, float)) and math.isfinite(e.value):
                    key = ("vital", e.code)
                    by_key.setdefault(key, []).append((e.at, float(e.value)))
                    meta[key] = (v.label, v.unit, v.normal)
            elif e.value is not None:
                key = ("symptom", e.code)
                by_key.setdefault(key, []).append((e.at, float(e.value)))  # type: ignore[arg-type]
                meta[key] = (f"{e.code.capitalize()} (severity)", "/10", None)
        return [Series(meta[k][0], meta[k][1], tuple(pts), meta[k][2]) for k, pts in by_key.items()]

    # ------------------------------------------------------------ consultations

    def record_mentions(self, member: Member, pack: Pack) -> list[Mention]:
        """The member's history items as findings of this pack, to be confirmed with the patient (never entered silently)."""
        reader = reader_for(pack)
        # (what the reader reads, what the patient is shown): history items, a fever measured at home in the
        # last two days, pregnancy. At most 0.5 confidence: the record is confirmed, never entered silently.
        sources = [(h.text, h.text) for h in member.history] + [(s, s) for s in self.recent_vitals_text(member)]
        if member.pregnant:
            sources.append(("I am pregnant", "pregnant"))
        out: dict[str, Mention] = {}
        for text, shown in sources:
            for m in reader.read(text).mentions:
                if m.polarity == PRESENT and pack.finding(m.code).kind == BINARY and m.code not in out:
                    out[m.code] = Mention(m.code, PRESENT, True, min(m.confidence, 0.5), (0, len(shown)), shown, "record")
        return list(out.values())

    def recent_vitals_text(self, member: Member, hours: float = 48, now: datetime | None = None) -> list[str]:
        """Recent abnormal temperatures as sentences the reader understands (a measured fever), newest first."""
        t = now or now_utc()
        out = []
        for e in reversed(self.diary(member.id)):
            if e.kind != "vital" or (t - e.at).total_seconds() > hours * 3600:
                continue
            if e.code == "temperature" and is_outside_normal(Reading(e.code, e.value, e.unit)):  # type: ignore[arg-type]
                out.append(f"I had a temperature of {e.value} °C (diary, {e.at.date().isoformat()})")
        return out

    def save(self, consultation: Consultation, member: Member | None = None, now: datetime | None = None,
             first_seen: Mapping[str, str] | None = None) -> tuple[StoredConsultation, Followup | None]:  # fmt: skip
        """Store a finished consultation (for a member, if given) and its care plan as a follow-up (none for an emergency)."""
        stored = self.store.create(consultation.to_dict(), member_id=member.id if member else None)
        return stored, self.plan(stored.id, consultation, now, first_seen)

    def plan(self, consultation_id: str, consultation: Consultation | None = None, now: datetime | None = None,
             first_seen: Mapping[str, str] | None = None) -> Followup | None:  # fmt: skip
        """Store a stored consultation's care plan as a follow-up due at its re-check time (None for an emergency: act now)."""
        t = now or now_utc()
        stored = self.store.get(consultation_id)
        if consultation is None:
            from diagnostician.knowledge.schema import load_pack

            consultation = Consultation.from_dict(stored.data, load_pack(stored.pack_name))
        plan = consultation.assessment(explain_top=0).plan
        if plan is None or plan.recheck_hours is None:
            return None
        if first_seen is None:  # a follow-up consultation keeps the first reports of the one it follows
            done = [f for f in self.store.list_followups(status="done") if f.data.get("next_consultation_id") == consultation_id]
            first_seen = done[0].data.get("first_seen") if done else None
        pack = consultation.pack
        seen = dict(first_seen or {})
        for a in consultation.state.answers:
            if a.is_positive(pack) and not pack.finding(a.code).antecedent:
                seen.setdefault(a.code, t.isoformat())
        data = {"plan": plan.to_dict(), "pack": pack.name, "first_seen": seen}
        row = self.store.create_followup(stored.id, t + timedelta(hours=plan.recheck_hours), data, stored.member_id)
        return Followup.from_stored(row)

    def followups(self, due_only: bool = False, member: str | None = None, now: datetime | None = None, status: str | None = "open") -> list[Followup]:
        """Follow-ups (open by default; only those due now with due_only; of one member if named), soonest first."""
        mid = self.member(member).id if member else None
        rows = self.store.list_followups(status=status, due_before=(now or now_utc()) if due_only else None, member_id=mid)
        return [Followup.from_stored(r) for r in rows]

    def followup(self, followup_id: str) -> Followup:
        """One follow-up by id."""
        return Followup.from_stored(self.store.get_followup((followup_id or "").strip()))

    def begin_followup(self, followup_id: str, pack: Pack, now: datetime | None = None) -> FollowupStart:
        """What a follow-up consultation starts from: the previous answers, the symptoms to ask about again, and how long they have lasted."""
        t = now or now_utc()
        row = self.store.get_followup((followup_id or "").strip())
        fu = Followup.from_stored(row)
        if fu.status != "open":
            raise FollowupClosedError(f"follow-up {fu.id} is already {fu.status}")
        previous = self.store.get(fu.consultation_id)
        prev = Consultation.from_dict(previous.data, pack)
        member = self.member(fu.member_id) if fu.member_id else None
        age = member.age_at(t) if member else prev.state.age
        seen = {k: v for k, v in (row.data.get("first_seen") or {}).items() if isinstance(v, str)}
        answers = [(a.code, list(a.value) if isinstance(a.value, tuple) else a.value) for a in prev.state.answers]
        ongoing = [a.code for a in prev.state.answers if a.is_positive(pack) and pack.finding(a.code).kind == BINARY
                   and not pack.finding(a.code).antecedent and pack.finding(a.code).age_range is None]  # fmt: skip
        days = {}
        for code in ongoing:
            since = datetime.fromisoformat(seen.get(code, previous.created_at.isoformat()))
            days[code] = max(0.0, (t - since).total_seconds() / 86400)
        return FollowupStart(fu, previous, member, age, prev.state.sex, answers, ongoing, days, seen)

    def followup_consultation(self, start: FollowupStart, pack: Pack, still: Mapping[str, object], news: Mapping[str, object],
                              policy: Any = None) -> Consultation:  # fmt: skip
        """The follow-up consultation: previous answers, what is new (overriding them), course rules for what is still there."""
        unknown = set(still) - set(start.ongoing)
        if unknown:
            raise InputError(f"not a symptom of the previous consultation: {', '.join(sorted(unknown))} (ask about {', '.join(start.ongoing)})")
        for code in news:
            pack.finding(code)  # an unknown code is an error here, not later
        found = {**dict(start.answers), **dict(news)}
        return Consultation.follow_up(start.age, start.sex, found, still, start.days, pack=pack, policy=policy)

    def close_done(self, start: FollowupStart, next_consultation_id: str) -> Followup:
        """Mark the follow-up done, naming the consultation that followed it up."""
        row = self.store.get_followup(start.followup.id)
        return Followup.from_stored(self.store.close_followup(row.id, "done", {**row.data, "next_consultation_id": next_consultation_id}))

    def finish_followup(self, start: FollowupStart, consultation: Consultation, now: datetime | None = None) -> tuple[StoredConsultation, Followup | None]:
        """Store the follow-up consultation, close the follow-up, and plan the next re-check from the new assessment."""
        stored = self.store.create(consultation.to_dict(), member_id=start.member.id if start.member else None)
        self.close_done(start, stored.id)
        return stored, self.plan(stored.id, consultation, now, first_seen=start.first_seen)

    def cancel_followup(self, followup_id: str) -> Followup:
        """Close a follow-up without a consultation (e.g. the illness is over)."""
        row = self.store.get_followup((followup_id or "").strip())
        if row.status == "cancelled":
            return Followup.from_stored(row)
        if row.status != "open":
            raise FollowupClosedError(f"follow-up {row.id} is already {row.status}")
        return Followup.from_stored(self.store.close_followup(row.id, "cancelled", row.data))


def _note(text: str) -> str:
    note = " ".join(str(text).split())
    if len(note) > MAX_TEXT:
        raise InputError(f"a note is at most {MAX_TEXT} characters")
    return note
