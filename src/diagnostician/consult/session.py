"""A consultation: one patient's inquiry from first complaint to assessment, with undo and a JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from diagnostician.dialogue.answers import as_answer
from diagnostician.engine import (
    Answer,
    Assessment,
    InquiryPolicy,
    Question,
    TriagePolicy,
    assess,
    fired_red_flags,
    next_question,
    should_stop,
    start,
    update,
)
from diagnostician.engine.posterior import rebuild
from diagnostician.dialogue.mentions import PRESENT, UNCERTAIN
from diagnostician.dialogue.nlu import read_text
from diagnostician.dialogue.results import ResultReading, other_words, read_results, read_vital_signs
from diagnostician.errors import DiagnosticianError, InputError, SessionError
from diagnostician.knowledge.schema import BINARY, TRIAGE_LEVELS, Pack, RedFlag, load_pack

SESSION_FORMAT = "diagnostician-consultation/1"


def _flag_dict(r: RedFlag) -> dict[str, Any]:
    return {"id": r.id, "finding": r.when[0][0], "level": r.level, "advice": r.advice, "basis": r.basis}


def _flag_of(d: Mapping[str, Any], pack: Pack) -> RedFlag:
    pack.finding(d["finding"])  # an unknown code is an InputError, not a silent flag
    if d["level"] not in TRIAGE_LEVELS:
        raise ValueError(f"unknown triage level {d['level']!r}")
    return RedFlag(str(d["id"]), ((d["finding"], ()),), d["level"], str(d["advice"]), str(d["basis"]))


@dataclass
class TurnResult:
    """What one answer changed: danger signs that fired with it."""

    answer: Answer
    new_red_flags: tuple[RedFlag, ...] = ()


@dataclass(frozen=True)
class ResultsTaken:
    """What a results text changed: examination findings entered, results entered (with their words), tests recorded unweighed."""

    observed: list[TurnResult]
    entered: list[tuple[ResultReading, TurnResult]]
    uninterpreted: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.observed or self.entered or self.uninterpreted)


@dataclass
class Consultation:
    """A stateful consultation over the pure engine; the only place that holds a State."""

    pack: Pack
    state: Any
    policy: InquiryPolicy = field(default_factory=InquiryPolicy)
    triage_policy: TriagePolicy = field(default_factory=TriagePolicy)
    initial: int = 0  # how many answers were given up front (not asked)
    pending: Question | None = None
    stop_reason: str = ""
    finished: bool = False
    course: tuple[RedFlag, ...] = ()  # course rules that hold at a follow-up: danger signs from how long symptoms lasted
    confirm: tuple[str, ...] = ()  # findings the family record lists: asked first, to confirm, before the engine chooses
    uninterpreted: tuple[str, ...] = ()  # results reported for which the knowledge holds no likelihood (recorded, not weighed)

    @classmethod
    def begin(
        cls,
        age: float,
        sex: str,
        findings: Mapping[str, object] | Iterable[tuple[str, object]] = (),
        pack: Pack | str = "ddxplus",
        policy: InquiryPolicy | None = None,
        triage_policy: TriagePolicy | None = None,
    ) -> "Consultation":
        """Start a consultation from demographics and the findings the patient came with."""
        pk = load_pack(pack) if isinstance(pack, str) else pack
        items = list(findings.items()) if isinstance(findings, Mapping) else list(findings)
        answers = [as_answer(pk.finding(code), value) for code, value in items]
        state = start(pk, age, sex, answers)
        return cls(pk, state, policy or InquiryPolicy(), triage_policy or TriagePolicy(), initial=len(state.answers))

    @classmethod
    def follow_up(
        cls,
        age: float,
        sex: str,
        findings: Mapping[str, object],
        still: Mapping[str, object],
        days: Mapping[str, float],
        pack: Pack | str = "ddxplus",
        policy: InquiryPolicy | None = None,
    ) -> "Consultation":
        """A follow-up: the carried and new findings, with the course rules that hold for symptoms still there (still[code] is True) after days[code]."""
        from diagnostician.engine.plan import course_flags
        from diagnostician.knowledge.followup import load_followup

        pk = load_pack(pack) if isinstance(pack, str) else pack
        found = dict(findings)
        c = cls.begin(age, sex, found, pack=pk, policy=policy)
        lasting = {code: float(d) for code, d in days.items() if still.get(code) is True}
        flags = course_flags(pk, c.state, lasting)
        kn = load_followup()
        fired = {f.id for f in flags}
        implied = {}
        for rule in kn.rules_for(pk):
            if rule.implies and rule.id in fired:
                code = kn.code_in(rule, pk, rule.implies)
                if code is not None and code not in found:
                    implied[code] = True  # e.g. a cough still there after 3 weeks is a long-lasting cough
        if implied:
            c = cls.begin(age, sex, {**found, **implied}, pack=pk, policy=policy)
        c.course = flags
        return c

    @property
    def questions_asked(self) -> int:
        """Questions answered so far (findings given up front are not counted)."""
        return len(self.state.answers) - self.initial

    @property
    def red_flags(self) -> tuple[RedFlag, ...]:
        """Danger signs present now (course rules of a follow-up included)."""
        return fired_red_flags(self.pack, self.state) + self.course

    def next_question(self) -> Question | None:
        """The question to ask now (the same one until it is answered), or None when the inquiry is over."""
        if self.finished:
            return None
        if self.pending is None:
            answered = self.state.answered
            record = next((code for code in self.confirm if code not in answered), None)
            if record is not None:
                self.pending = Question(record, "record", 0.0, 0.0, 0.0)
                return self.pending
            budget = self.initial + self.policy.max_questions
            q = next_question(self.pack, self.state, self.policy, max_questions=budget)
            if q is None:
                self.finished = True
                if len(self.state.answers) >= budget:
                    self.stop_reason = f"question budget of {self.policy.max_questions} reached"
                else:
                    reason = should_stop(self.pack, self.state, self.policy, max_questions=budget).reason
                    self.stop_reason = reason or "no question left worth asking"
            self.pending = q
        return self.pending

    def answer(self, code: str, value: object) -> TurnResult:
        """Record the answer to the pending question (value: typed text or structured value; None = don't know)."""
        if self.pending is None:
            raise SessionError("no question is pending; ask for the next question first")
        if code != self.pending.code:
            raise SessionError(f"the pending question is {self.pending.code}, not {code}")
        return self._record(code, value)

    def volunteer(self, code: str, value: object) -> TurnResult:
        """Record a finding the patient offered without being asked."""
        if any(a.code == code for a in self.state.answers):
            raise SessionError(f"{code} is already answered; undo it first")
        return self._record(code, value)

    def _record(self, code: str, value: object) -> TurnResult:
        ans = as_answer(self.pack.finding(code), value)
        self.state = update(self.pack, self.state, ans)  # validates first: a bad answer leaves the state as it was
        self.pending = None
        self.finished = False
        self.stop_reason = ""
        # The finding was unanswered before, so a flag that involves it cannot have fired earlier.
        new = tuple(r for r in fired_red_flags(self.pack, self.state) if any(c == code for c, _ in r.when))
        return TurnResult(self.state.answers[-1], new)

    def observe(self, text: str) -> list[TurnResult]:
        """Examination findings in words ("temperature 38.9", "jaundiced") entered as the pack's findings the inquiry left open."""
        # "Abdomen: normal" from an examiner says nothing of the patient's tummy ache: a body part said
        # to be fine is read that way only in a patient's own words (the lexicon's normal states).
        seen = [(m.code, m.polarity == PRESENT) for m in read_text(self.pack, text).mentions if m.polarity != UNCERTAIN and m.method != "normal"]
        # Vital signs ("HR 128", "BP 85/50") against the pack's thresholds, for the patient's age.
        seen += [(code, value) for code, value, _ in read_vital_signs(self.pack, text, self.state.age)]
        out = []
        for code, value in seen:
            f = self.pack.finding(code)
            if code in self.state.answered or f.stage != "history" or f.kind != BINARY:
                continue
            try:
                out.append(self.volunteer(code, value))
            except DiagnosticianError:
                continue  # e.g. a finding the age or sex rules out
        return out

    def enter_result(self, code: str, value: bool | None) -> TurnResult:
        """Enter an examination or test result (a result finding of the pack); a later result replaces an earlier one."""
        f = self.pack.finding(code)
        if f.stage == "history":
            raise InputError(f"{code} is a question of the inquiry, not an examination or test result")
        if code in self.state.answered:
            kept = tuple(a for a in self.state.answers if a.code != code)
            self.state = rebuild(self.pack, self.state, kept)
        self.pending = None  # the next question may change with the result
        return self._record(code, value)

    def take_results(self, text: str, max_chars: int = 5000) -> ResultsTaken:
        """Examination and test results in words entered: results of known accuracy, open findings it shows, tests it cannot weigh."""
        read = read_results(self.pack, text, max_chars)
        # Findings an examination shows ("temperature 38.9", "jaundiced"), from the words the results did not use.
        observed = self.observe(other_words(text, read))
        entered = [(r, self.enter_result(r.code, r.value)) for r in read.results]
        for what in read.uninterpreted:
            self.note_uninterpreted(what)
        return ResultsTaken(observed, entered, read.uninterpreted)

    def note_uninterpreted(self, what: str) -> None:
        """Record a reported result the knowledge cannot weigh."""
        what = " ".join(str(what).split())[:200]
        if what and what not in self.uninterpreted:
            self.uninterpreted = self.uninterpreted + (what,)

    def undo(self) -> Answer:
        """Take back the last answer given during the inquiry."""
        if len(self.state.answers) <= self.initial:
            raise SessionError("nothing to undo")
        last = self.state.answers[-1]
        self.state = rebuild(self.pack, self.state, self.state.answers[:-1])
        self.pending = None
        self.finished = False
        self.stop_reason = ""
        return last

    def assessment(self, explain_top: int = 5) -> Assessment:
        """Differential, triage and explanation now."""
        return assess(
            self.pack,
            self.state,
            self.triage_policy,
            explain_top=explain_top,
            stop_reason=self.stop_reason,
            questions_asked=self.questions_asked,
            course=self.course,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form from which the consultation can be restored."""
        return {
            "format": SESSION_FORMAT,
            "pack": {"name": self.pack.name, "version": self.pack.version},
            "age": self.state.age,
            "sex": self.state.sex,
            "initial": self.initial,
            "answers": [{"code": a.code, "value": list(a.value) if isinstance(a.value, tuple) else a.value} for a in self.state.answers],
            "max_questions": self.policy.max_questions,
            **({"course": [_flag_dict(r) for r in self.course]} if self.course else {}),
            **({"confirm": list(self.confirm)} if self.confirm else {}),
            **({"uninterpreted": list(self.uninterpreted)} if self.uninterpreted else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], pack: Pack | str = "ddxplus") -> "Consultation":
        """Restore a consultation saved with to_dict."""
        if not isinstance(data, Mapping) or data.get("format") != SESSION_FORMAT:
            raise InputError(f"not a saved consultation (format {SESSION_FORMAT} expected)")
        pk = load_pack(pack) if isinstance(pack, str) else pack
        saved = data.get("pack") or {}
        if saved.get("name") != pk.name:
            raise InputError(f"saved consultation belongs to pack {saved.get('name')!r}, not {pk.name!r}")
        try:
            answers = [as_answer(pk.finding(a["code"]), a["value"]) for a in data["answers"]]
            state = start(pk, data["age"], data["sex"])
            state = rebuild(pk, state, tuple(answers))
            policy = InquiryPolicy(max_questions=int(data.get("max_questions", InquiryPolicy().max_questions)))
            course = tuple(_flag_of(r, pk) for r in data.get("course") or ())
            confirm = tuple(pk.finding(code).code for code in data.get("confirm") or ())
            notes = tuple(str(x) for x in data.get("uninterpreted") or ())
            return cls(pk, state, policy, initial=int(data["initial"]), course=course, confirm=confirm, uninterpreted=notes)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"saved consultation is malformed: {exc}") from exc
