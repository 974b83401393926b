"""Consultations kept in a store: the operations an interface (HTTP API, later chat and MCP) shares.

Every operation loads the consultation from the store, acts on a `Consultation`, and writes it back
before it returns, so the process holds no consultation between requests. Results are plain
JSON-ready dicts; the HTTP layer only validates and documents them.

Question ids are `CODE@REVISION`: the finding asked and the stored revision it was asked at. Every
answer and undo raises the revision, so a retried answer is recognised (same id) and a stale one
(asked before an undo, or before another client answered) is refused instead of applied twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from diagnostician.consult.session import Consultation, TurnResult
from diagnostician.consult.store import (
    AuditEntry,
    ConsultationNotFoundError,
    ConsultationStore,
    DuplicateAnswerError,
    LoggedAnswer,
    StaleRevisionError,
    StoredConsultation,
)
from diagnostician.dialogue.answers import as_answer
from diagnostician.dialogue.render import answer_hint, is_scale, reason
from diagnostician.engine import NOTICE, InquiryPolicy, Question, TriageResult, posterior, triage
from diagnostician.engine.explain import answer_text
from diagnostician.engine.posterior import Answer, validate_answer
from diagnostician.errors import InputError, SessionError
from diagnostician.knowledge.schema import BINARY, Finding, Pack, RedFlag

NATS_PER_BIT = 0.6931471805599453
MAX_QUESTIONS_LIMIT = 223  # as many as the DDXPlus pack has findings; the CLI allows the same range


class NotPendingError(SessionError):
    """An answer to a question that is not the one pending (stale, unknown, or the inquiry is over)."""


class AnswerConflictError(SessionError):
    """A question id that was already answered with another value, or whose answer was undone."""


@dataclass
class Loaded:
    """A stored consultation and the live Consultation restored from it."""

    stored: StoredConsultation
    consultation: Consultation

    @property
    def id(self) -> str:
        """The consultation id."""
        return self.stored.id


def question_id(code: str, revision: int) -> str:
    """The id of the question about `code` asked at stored revision `revision`."""
    return f"{code}@{revision}"


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def red_flag_view(r: RedFlag) -> dict[str, Any]:
    """A danger sign as JSON."""
    return {"id": r.id, "level": r.level, "advice": r.advice, "basis": r.basis}


def triage_view(t: TriageResult) -> dict[str, Any]:
    """A triage result as JSON, with the decision-support notice."""
    return {
        "level": t.level,
        "advice": t.advice,
        "red_flags": [red_flag_view(r) for r in t.red_flags],
        "reasons": list(t.reasons),
        "notice": NOTICE,
    }


def allowed_answers(f: Finding) -> list[dict[str, Any]]:
    """The structured values a finding's question accepts, with labels; null (don't know) is always allowed."""
    if f.kind == BINARY:
        choices: list[dict[str, Any]] = [{"value": True, "label": "yes"}, {"value": False, "label": "no"}]
    else:
        choices = [{"value": v, "label": lab} for v, lab in zip(f.values, f.labels)]
    return choices + [{"value": None, "label": "don't know"}]


def finding_view(f: Finding) -> dict[str, Any]:
    """A finding of the pack as JSON: its question, type and allowed answers."""
    return {
        "code": f.code,
        "type": f.kind,
        "scale": is_scale(f),
        "text": f.question,
        "answers": allowed_answers(f),
        "default": f.default,
        "antecedent": f.antecedent,
        "parent": f.parent,
    }


def question_view(pack: Pack, q: Question, qid: str) -> dict[str, Any]:
    """The pending question as JSON: what to ask, how to answer, and why it is asked."""
    f = pack.finding(q.code)
    return {
        "id": qid,
        "finding": f.code,
        "text": f.question,
        "type": f.kind,
        "scale": is_scale(f),
        "answers": allowed_answers(f),
        "hint": answer_hint(f),
        "phase": q.phase,
        "reason": reason(pack, q),
        "expected_gain_bits": q.expected_gain / NATS_PER_BIT,
        "safety_gain_bits": q.safety_gain / NATS_PER_BIT,
        "p_present": q.p_present,
        "separates": [{"condition": name, "p_present": p} for name, p in q.separates],
    }


def search_conditions(pack: Pack, text: str = "") -> list[dict[str, Any]]:
    """Conditions of the pack whose code, name or ICD-10 code contains `text` (case-insensitive)."""
    t = text.strip().lower()
    hits = [c for c in pack.conditions if not t or t in c.code.lower() or t in c.name.lower() or t in c.icd10.lower()]
    return [{"code": c.code, "name": c.name, "icd10": c.icd10, "severity": c.severity, "triage": c.triage} for c in hits]


def search_findings(pack: Pack, text: str = "") -> list[dict[str, Any]]:
    """Findings of the pack whose code, question or value labels contain `text` (case-insensitive)."""
    t = text.strip().lower()
    hits = [
        f
        for f in pack.findings
        if not t or t == f.code.lower() or t in f.question.lower() or any(t in lab.lower() for lab in f.labels)
    ]
    return [finding_view(f) for f in hits]


class ConsultationService:
    """Create, question, answer, undo, assess and delete consultations kept in a store."""

    def __init__(self, store: ConsultationStore, pack: Pack, retries: int = 3) -> None:
        """Serve consultations of one pack from one store."""
        self.store = store
        self.pack = pack
        self.retries = retries

    # ------------------------------------------------------------ loading

    def policy(self, max_questions: int | None = None) -> InquiryPolicy:
        """The inquiry policy with a checked question budget."""
        if max_questions is None:
            return InquiryPolicy()
        if not 1 <= max_questions <= MAX_QUESTIONS_LIMIT:
            raise InputError(f"max_questions must lie between 1 and {MAX_QUESTIONS_LIMIT}")
        return InquiryPolicy(max_questions=max_questions)

    def create(
        self,
        age: float | None,
        sex: str | None,
        findings: Mapping[str, object] | None = None,
        max_questions: int | None = None,
        owner: str | None = None,
        member_id: str | None = None,
    ) -> Loaded:
        """Begin and store a consultation (reachable only with the API key `owner`, when one made it).

        For a member of the family record, age and sex default to the record's, and the record's history
        items are the first questions, asked to confirm them.
        """
        confirm: tuple[str, ...] = ()
        if member_id is not None:
            from diagnostician.consult.household import Household

            hh = Household(self.store)
            member = hh.member_by_id(member_id)
            age = member.age_at() if age is None else age
            sex = member.sex if sex is None else sex
            confirm = tuple(m.code for m in hh.record_mentions(member, self.pack) if m.code not in (findings or {}))
        if age is None or sex is None:
            raise InputError("age and sex are required (or a text that says them, or a member of the family record)")
        c = Consultation.begin(age, sex, dict(findings or {}), pack=self.pack, policy=self.policy(max_questions))
        c.confirm = confirm
        return Loaded(self.store.create(c.to_dict(), owner, member_id=member_id), c)

    def adopt(self, c: Consultation, owner: str | None = None, member_id: str | None = None) -> Loaded:
        """Store a consultation begun elsewhere (a follow-up) as a new one."""
        return Loaded(self.store.create(c.to_dict(), owner, member_id=member_id), c)

    def parse(self, text: str) -> dict[str, Any]:
        """What the free-text intake reads in `text` (ReadingOut shape)."""
        from diagnostician.dialogue.nlu import read_text

        return read_text(self.pack, text).to_dict()

    def create_from(
        self,
        age: float | None,
        sex: str | None,
        findings: Mapping[str, object] | None,
        text: str | None,
        max_questions: int | None = None,
        owner: str | None = None,
        member_id: str | None = None,
    ) -> tuple[Loaded, dict[str, Any] | None]:
        """Begin a consultation from codes and/or the patient's own words; also what was read from the words."""
        if text is None:
            return self.create(age, sex, findings, max_questions, owner, member_id), None
        reading, read = self.read_findings(text)
        age = age if age is not None else reading.age
        sex = sex if sex is not None else reading.sex
        if (age is None or sex is None) and member_id is None:
            missing = " and ".join(w for w, v in (("age", age), ("sex", sex)) if v is None)
            raise InputError(f"the text does not say the patient's {missing}; send it as a field")
        merged = {**read, **(findings or {})}  # codes sent explicitly win over what was read
        intake = reading.to_dict()
        for item in intake["findings"]:
            item["entered"] = item["code"] in read and item["code"] not in (findings or {})
        return self.create(age, sex, merged, max_questions, owner, member_id), intake

    def read_findings(self, text: str) -> tuple[Any, dict[str, object]]:
        """What the intake reads in `text`, and the findings read with confidence (doubtful ones are left for the questions)."""
        from diagnostician.dialogue.mentions import engine_value
        from diagnostician.dialogue.nlu import CONFIRM_BELOW, read_text

        reading = read_text(self.pack, text)
        found: dict[str, object] = {}
        for m in reading.mentions:
            if m.confidence >= CONFIRM_BELOW and m.polarity != "uncertain":
                value = engine_value(self.pack.finding(m.code), m)
                if value is not None:
                    found[m.code] = value
        return reading, found

    def _get(self, consultation_id: str, key_name: str | None) -> StoredConsultation:
        """The stored consultation if this caller may reach it; another key's consultation is as good as absent (404)."""
        stored = self.store.get(consultation_id)
        if stored.owner is not None and stored.owner != key_name:
            raise ConsultationNotFoundError(f"no consultation {consultation_id!r}")
        return stored

    def load(self, consultation_id: str, key_name: str | None = None) -> Loaded:
        """The stored consultation, restored (ConsultationNotFoundError if there is none, or it belongs to another key)."""
        stored = self._get(consultation_id, key_name)
        try:
            return Loaded(stored, Consultation.from_dict(stored.data, self.pack))
        except InputError as exc:  # stored under another pack, or damaged: not the client's input
            raise SessionError(f"consultation {consultation_id} cannot be continued with this server's pack: {exc}") from exc

    def delete(self, consultation_id: str, key_name: str | None = None) -> None:
        """Delete a consultation and its answers for good."""
        self._get(consultation_id, key_name)
        self.store.delete(consultation_id)

    # ------------------------------------------------------------ views

    def consultation_view(self, loaded: Loaded) -> dict[str, Any]:
        """The consultation as JSON: demographics, answers so far, danger signs, whether the inquiry is over."""
        c = loaded.consultation
        q = c.next_question()  # also settles whether the inquiry is over
        s = loaded.stored
        return {
            "id": s.id,
            "pack": {"name": s.pack_name, "version": s.pack_version},
            "created_at": s.created_at.isoformat(),
            "updated_at": s.updated_at.isoformat(),
            "age": c.state.age,
            "sex": c.state.sex,
            "answers": [
                {
                    "finding": a.code,
                    "value": _json_value(a.value),
                    "text": answer_text(self.pack, a),
                    "initial": i < c.initial,
                }
                for i, a in enumerate(c.state.answers)
            ],
            "questions_asked": c.questions_asked,
            "max_questions": c.policy.max_questions,
            "done": q is None,
            "stop_reason": c.stop_reason or None,
            "red_flags": [red_flag_view(r) for r in c.red_flags],
            "notice": NOTICE,
            "member_id": s.member_id,
        }

    def question(self, loaded: Loaded) -> dict[str, Any]:
        """The pending question, or done with the reason the inquiry ended."""
        c = loaded.consultation
        q = c.next_question()
        return {
            "consultation_id": loaded.id,
            "done": q is None,
            "stop_reason": c.stop_reason or None,
            "questions_asked": c.questions_asked,
            "question": None if q is None else question_view(self.pack, q, question_id(q.code, loaded.stored.revision)),
        }

    def assessment(self, loaded: Loaded) -> dict[str, Any]:
        """Differential, triage, explanations and the notice."""
        c = loaded.consultation
        done = c.next_question() is None  # sets the stop reason the assessment reports
        out = c.assessment().to_dict()
        out.update(consultation_id=loaded.id, done=done, pack={"name": self.pack.name, "version": self.pack.version})
        return out

    def triage(self, loaded: Loaded) -> dict[str, Any]:
        """Triage now, with the danger signs that drive it."""
        c = loaded.consultation
        return {"consultation_id": loaded.id, **triage_view(triage(self.pack, c.state, posterior(c.state), c.triage_policy, extra=c.course))}

    # ------------------------------------------------------------ changes

    def _canonical(self, code: str, value: object) -> Any:
        """The answer value as the engine stores it (raises InvalidAnswerError for a value that does not fit)."""
        return _json_value(validate_answer(self.pack, as_answer(self.pack.finding(code), value)).value)

    def answer(self, consultation_id: str, qid: str, value: object, key_name: str | None = None) -> tuple[dict[str, Any], bool]:
        """Answer the pending question; return (result, replayed). Idempotent by question id; `key_name` goes to the audit log."""
        for _ in range(self.retries):
            loaded = self.load(consultation_id, key_name)
            logged = self.store.get_answer(consultation_id, qid)
            if logged is not None:
                return self._replay(logged, value), True
            try:
                return self._answer_pending(loaded, qid, value, key_name), False
            except (DuplicateAnswerError, StaleRevisionError):
                continue  # another request wrote first: look again (it may have been this very answer)
        raise SessionError("the consultation is changing too fast; fetch the question again")

    def _replay(self, logged: LoggedAnswer, value: object) -> dict[str, Any]:
        if self._canonical(logged.finding, value) != logged.value:
            raise AnswerConflictError(f"question {logged.question_id} was already answered with another value")
        if logged.undone:
            raise AnswerConflictError(f"the answer to question {logged.question_id} was taken back (undo); fetch the next question")
        return logged.result

    def _answer_pending(self, loaded: Loaded, qid: str, value: object, key_name: str | None = None) -> dict[str, Any]:
        c = loaded.consultation
        q = c.next_question()
        if q is None:
            raise NotPendingError(f"the inquiry is over ({c.stop_reason}); no question is pending")
        expected = question_id(q.code, loaded.stored.revision)
        if qid != expected:
            raise NotPendingError(f"question {qid!r} is not the pending one ({expected}); fetch the question again")
        turn = c.answer(q.code, value)  # InvalidAnswerError leaves nothing changed
        now = triage(self.pack, c.state, posterior(c.state), c.triage_policy)
        result = {
            "consultation_id": loaded.id,
            "question_id": qid,
            "finding": q.code,
            "value": _json_value(turn.answer.value),
            "text": answer_text(self.pack, turn.answer),
            "new_red_flags": [red_flag_view(r) for r in turn.new_red_flags],
            "triage": triage_view(now),
            "questions_asked": c.questions_asked,
            "notice": NOTICE,
        }
        log = LoggedAnswer(qid, q.code, _json_value(turn.answer.value), result)
        audit = AuditEntry("answer", q.code, now.level, self.pack.version, key_name, value=log.value)
        self.store.save_answer(loaded.id, loaded.stored.revision, c.to_dict(), log, audit)
        return result

    def add_results(
        self, consultation_id: str, text: str | None, results: Mapping[str, object] | None, key_name: str | None = None
    ) -> dict[str, Any]:
        """Enter examination and test results (coded, or in words), each saved and audited; then the assessment with them."""
        from diagnostician.dialogue.results import other_words, read_results

        loaded = self.load(consultation_id, key_name)
        c = loaded.consultation
        entries: dict[str, object] = {}
        uninterpreted: tuple[str, ...] = ()
        rest = ""
        if text:
            read = read_results(self.pack, text)
            entries.update({r.code: r.value for r in read.results})
            uninterpreted = read.uninterpreted
            rest = other_words(text, read)
        entries.update(results or {})
        for code in entries:
            if self.pack.finding(code).stage == "history":
                raise InputError(f"{code} is a question of the inquiry, not an examination or test result")
        # Findings an examination shows ("temperature 38.9", "jaundiced") that the inquiry left open.
        observed = c.observe(rest) if rest.strip() else []
        if not entries and not uninterpreted and not observed:
            raise InputError("no examination or test result was recognised; name the test and its result (e.g. 'troponin raised')")
        revision = loaded.stored.revision
        entered = []

        def turns() -> Iterator[TurnResult]:
            yield from observed  # already entered by observe
            for code, value in entries.items():
                yield c.enter_result(code, value)  # InvalidAnswerError leaves the stored consultation as it was

        for turn in turns():
            code = turn.answer.code
            now = triage(self.pack, c.state, posterior(c.state), c.triage_policy, extra=c.course)
            item = {"finding": code, "value": _json_value(turn.answer.value), "text": answer_text(self.pack, turn.answer),
                    "new_red_flags": [red_flag_view(r) for r in turn.new_red_flags]}  # fmt: skip
            log = LoggedAnswer(question_id(code, revision), code, item["value"], item)
            audit = AuditEntry("answer", code, now.level, self.pack.version, key_name, value=log.value)
            self.store.save_answer(loaded.id, revision, c.to_dict(), log, audit)
            revision += 1
            entered.append(item)
        if uninterpreted:
            for what in uninterpreted:
                c.note_uninterpreted(what)
            # Kept with the consultation (the report lists them) and in the answer log, never weighed.
            note = LoggedAnswer(f"uninterpreted@{revision}", "uninterpreted", list(uninterpreted), {"uninterpreted": list(uninterpreted)})
            self.store.save_answer(loaded.id, revision, c.to_dict(), note)
        out = self.assessment(Loaded(self.store.get(loaded.id), c))
        out["results"] = {"entered": entered, "uninterpreted": list(c.uninterpreted)}
        return out

    def undo(self, consultation_id: str, key_name: str | None = None) -> dict[str, Any]:
        """Take back the last answer given during the inquiry; `key_name` goes to the audit log."""
        loaded = self.load(consultation_id, key_name)
        c = loaded.consultation
        undone: Answer = c.undo()  # SessionError when there is nothing to undo
        level = triage(self.pack, c.state, posterior(c.state), c.triage_policy).level
        audit = AuditEntry("undo", undone.code, level, self.pack.version, key_name)
        try:
            self.store.save_undo(loaded.id, loaded.stored.revision, c.to_dict(), undone.code, audit)
        except StaleRevisionError as exc:
            # Retrying would take back a different answer than the client saw; let it look again.
            raise SessionError("the consultation changed meanwhile; nothing was undone, fetch it again") from exc
        return {
            "consultation_id": loaded.id,
            "undone": {"finding": undone.code, "value": _json_value(undone.value), "text": answer_text(self.pack, undone)},
            "questions_asked": c.questions_asked,
        }

    def audit(self, consultation_id: str, key_name: str | None = None) -> dict[str, Any]:
        """The audit log of a consultation: each answer (question code and coded answer) and undo, with the triage after it."""
        self._get(consultation_id, key_name)
        entries = self.store.audit_log(consultation_id)
        return {
            "consultation_id": consultation_id,
            "entries": [
                {
                    "time": e.created_at.isoformat() if e.created_at else None,
                    "action": e.action,
                    "finding": e.finding,
                    "triage_level": e.triage_level,
                    "pack_version": e.pack_version,
                    "key_name": e.key_name,
                    "value": e.value,
                }
                for e in entries
            ],
        }
