"""A free-text consultation as a conversation: the terminal chat and the OpenAI-compatible endpoint both run this.

Each user message is read in plain words. The first describes the problem: every clue in it (what is
present and what is denied, age, sex, who is writing) is taken at once; clues read with low
confidence are confirmed with the patient before they count. Then the engine's questions follow, one
at a time, in words addressed to whoever answers (the patient or a parent), with the reason on
request ("why do you ask?"). An answer may carry more clues ("no, but she has been vomiting"): they
are entered too. A danger sign gives its advice in the very reply that raised it. Commands: why,
undo (or back), stop, help. Deterministic: the same messages always give the same replies, which
lets the stateless chat endpoint rebuild a conversation from its history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from diagnostician.consult.session import Consultation
from diagnostician.dialogue.intake import parse_age, parse_sex, rank_by_words
from diagnostician.dialogue.mentions import UNCERTAIN, Mention, Reading, engine_value
from diagnostician.dialogue.nlu import CONFIRM_BELOW, MAX_CHARS, reader_for
from diagnostician.dialogue.plain import is_why, understand_answer
from diagnostician.dialogue.render import Audience, answer_menu, is_scale, patient_question, plain_reason, reason
from diagnostician.engine import NOTICE, InquiryPolicy, Question
from diagnostician.engine.explain import answer_text
from diagnostician.engine.plan import CarePlan
from diagnostician.engine.workup import basis_of
from diagnostician.engine.workup import suggestion_lines
from diagnostician.engine.posterior import AnswerValue, check_age
from diagnostician.errors import InputError
from diagnostician.knowledge.schema import BINARY, Finding, Pack, RedFlag

ENDED = "This consultation has ended: the assessment stands."
UNDO = {"undo", "back", "u", "go back"}
STOP = {"stop", "quit", "q", "exit", "end", "finish"}
HELP = {"help", "h", "commands", "help?"}
NOTHING_NEW = {"nothing", "nothing new", "no", "none", "nope", "no change", "no changes", "same", "the same", "nothing else", "n"}
INLINE_MENU = 20  # longer menus (body locations: 166 choices) go on one line, so they do not fill the screen

INTRO = (
    "Hello. I am **diagnostician**, an evidence-based symptom checker. Tell me in your own words what is wrong; "
    "I will ask a few questions, one at a time, then tell you which conditions fit and how urgently to seek care."
)
COMMANDS = "You can ask **why** a question is asked, type **undo** (or back) to take back your last answer, and **stop** to end and see the assessment so far."
COMPLAINT = "**What brings you here today?** Describe it in your own words (for example: *I've had a sore throat and a fever since yesterday, no cough*). If it is about your child, say so and give their age."
LEVEL_WORDS = {"emergency": "EMERGENCY", "urgent_24h": "URGENT (within 24 hours)", "see_doctor": "SEE A DOCTOR", "self_care": "SELF-CARE"}
WHY_INTAKE = {
    "age": "Age changes how likely each condition is: some occur mostly in children, others mostly in older adults.",
    "sex": "Some conditions occur mostly or only in one sex, so the knowledge pack weighs them by sex.",
    "opening": "Your own description tells me where to start; then I choose each question by how much the answer would tell.",
    "confirm": "I was not sure I understood this part of what you wrote, and I only use what you confirm.",
}


def _italic(text: str) -> str:
    return f"_{text}_"


def plan_text(plan: CarePlan) -> str:
    """The care plan in Markdown: when to check again, danger signs to watch for, what would change the advice."""
    lines = [f"**Plan:** {plan.text}"]
    if plan.watch_for:
        lines.append("Seek care at once if a danger sign appears:")
        lines += [f"- {w}" for w in plan.watch_for]
    if plan.change:
        lines.append("What would change this advice:")
        lines += [f"- {w}" for w in plan.change]
    return "\n".join(lines)


@dataclass
class Conversation:
    """One free-text consultation: feed the user's messages in order with `reply`; each returns the assistant's text."""

    pack: Pack
    policy: InquiryPolicy = field(default_factory=InquiryPolicy)
    threshold: float = CONFIRM_BELOW
    max_chars: int = MAX_CHARS
    phrase: Callable[[str, Audience], str] | None = None  # optional rewording of question text (an LLM); None = templates
    age: float | None = None
    sex: str | None = None
    audience: Audience = field(default_factory=Audience)
    found: dict[str, AnswerValue] = field(default_factory=dict)  # findings taken from the text before the inquiry
    to_confirm: list[Mention] = field(default_factory=list)
    menu: list[str] = field(default_factory=list)  # search results offered when the description matched nothing
    c: Consultation | None = None
    stopped: bool = False
    turns: int = 0
    history: list[tuple[str, object]] = field(default_factory=list)  # intake steps, for undo before the inquiry
    # A consultation for a member of the family record: history items to confirm before the inquiry begins.
    record: list[Mention] = field(default_factory=list)
    record_queued: bool = False
    # A follow-up: the previous answers are carried (found), present symptoms are asked about again, and
    # the course rules see how long the ones still there have lasted.
    intro: str = ""  # opening words of a follow-up
    ongoing: list[str] = field(default_factory=list)
    still: dict[str, AnswerValue] = field(default_factory=dict)
    days: dict[str, float] = field(default_factory=dict)
    news_pending: bool = False
    with_results: bool = False  # examination or test results were entered after the inquiry

    # ------------------------------------------------------------ state

    @property
    def stage(self) -> str:
        """opening, confirm, age, sex, inquiry (a question is pending) or ended."""
        if self.c is not None:
            return "ended" if self.stopped or self.c.next_question() is None else "inquiry"
        if len(self.still) < len(self.ongoing):
            return "course"
        if self.news_pending:
            return "news"
        if self.to_confirm:
            return "confirm"
        if not any(v not in (False, None) for v in self.found.values()):
            return "opening"
        if self.age is None:
            return "age"
        if self.sex is None:
            return "sex"
        return "opening"  # unreachable: the consultation begins as soon as all is known

    def expected_question(self) -> str | None:
        """The text of the question the last reply asked, when it was an inquiry question."""
        if self.stage != "inquiry":
            return None
        q = self.c.next_question()  # type: ignore[union-attr]
        return None if q is None else self.question_text(self.pack.finding(q.code))

    def question_text(self, f: Finding) -> str:
        """The question of `f` as this conversation asks it (addressed to a parent when one answers)."""
        return patient_question(f, self.audience)

    # ------------------------------------------------------------ one turn

    def reply(self, text: str) -> str:
        """Take one user message and return the assistant's reply."""
        self.turns += 1
        try:
            if self.turns == 1:
                parts = [INTRO if not self.intro else "", _italic(NOTICE), *self._first(text)]
            else:
                parts = self._turn(text)
        except InputError as exc:
            parts = [f"I could not use that: {exc}.", *self._prompt()]
        return "\n\n".join(p for p in parts if p)

    def _turn(self, text: str) -> list[str]:
        word = " ".join(text.strip().lower().rstrip(".!").split())
        if not word:
            return ["I did not get an answer.", *self._prompt()]
        if word in HELP:
            return [COMMANDS, *self._prompt()]
        if word in UNDO:
            return self._undo()
        if is_why(text):
            return self._why()
        if word in STOP:
            return self._stop()
        stage = self.stage
        if stage == "opening":
            return self._describe(text)
        if stage == "course":
            code = self.ongoing[len(self.still)]
            self.still[code] = understand_answer(self.pack, self.pack.finding(code), text)
            self.history.append(("course", code))
            return self._advance()
        if stage == "news":
            self.news_pending = False
            self.history.append(("news", None))
            if word.rstrip(".!") in NOTHING_NEW:
                return self._advance()
            return self._describe(text, overriding=True)
        if stage == "confirm":
            return self._confirm(text)
        if stage == "age":
            self.age = self._age(text)
            self.history.append(("age", None))
            return self._advance()
        if stage == "sex":
            self.sex = parse_sex(text)
            self.history.append(("sex", None))
            return self._advance()
        if stage == "ended":
            got = self._results(text)
            if got:
                return got
            return [ENDED + " You can add examination or test results (for example: *troponin raised*, *rapid strep test positive*).", *self._assessment()]
        return self._answer(text)

    def _results(self, text: str) -> list[str]:
        """Examination or test results in the text, entered; their words and the new assessment (nothing read: [])."""
        c = self.c
        if c is None:
            return []
        taken = c.take_results(text, self.max_chars)
        if not taken:
            return []
        noted = [answer_text(self.pack, t.answer) for t in taken.observed]
        flags: list[RedFlag] = [r for t in taken.observed for r in t.new_red_flags]
        for r, turn in taken.entered:
            flags += list(turn.new_red_flags)
            noted.append(f"{r.text} → {'positive / abnormal' if r.value else 'negative / normal'}")
        parts = [_italic("Results noted: " + "; ".join(noted) + ".")] if noted else []
        for what in taken.uninterpreted:
            parts.append(f"I have recorded the {what} result, but I cannot interpret it: the knowledge pack has no likelihoods for it.")
        self.stopped = True  # a result does not reopen the questions here; the assessment is redone with it
        self.with_results = True
        return [*parts, *self._danger(flags), *self._assessment()]

    def _first(self, text: str) -> list[str]:
        if self.intro:  # a follow-up opens with what it follows up
            return [self.intro, *(self._prompt() if not text.strip() else self._turn(text)), COMMANDS]
        if not text.strip():
            return [COMPLAINT, COMMANDS]
        reading = reader_for(self.pack).read(text, self.max_chars)
        if not reading.mentions and reading.age is None and reading.sex is None:
            try:
                self.age = parse_age(text)  # someone who opens with just their age is asked for the rest
                self.history.append(("age", None))
                return [COMPLAINT]
            except InputError:
                return [COMPLAINT, COMMANDS]  # a greeting, or nothing the pack knows yet
        return self._describe(text, first=True)

    def _age(self, text: str) -> float:
        reading = reader_for(self.pack).read(text, self.max_chars)
        if reading.age is not None:
            return check_age(reading.age)
        return parse_age(text)

    def _describe(self, text: str, first: bool = False, overriding: bool = False) -> list[str]:
        """Read a description of the problem: demographics and every finding, sure ones kept, doubtful ones queued."""
        if self.menu and text.strip().isdigit():
            n = int(text.strip())
            if 1 <= n <= len(self.menu):
                code = self.menu[n - 1]
                self.found[code] = True
                self.menu = []
                self.history.append(("found", code))
                return [_italic(f"Noted: {self.pack.finding(code).question.rstrip('?:. ')} — yes."), *self._advance()]
        reading: Reading = reader_for(self.pack).read(text, self.max_chars)
        said = []
        if reading.age is not None and self.age is None:
            self.age = check_age(reading.age)
            said.append("age")
        if reading.sex is not None and self.sex is None:
            self.sex = reading.sex
            said.append("sex")
        for kind in said:
            self.history.append((kind, None))
        if reading.proxy or (self.age is not None and self.age < 16 and not self.audience.proxy):
            adult = self.age is not None and self.age >= 16
            self.audience = Audience(True, reading.relation if reading.proxy else None, reading.sex, adult)
        noted, queued = [], []
        for m in reading.mentions:
            f = self.pack.finding(m.code)
            if m.code in self.found and not overriding:  # a follow-up's news may change what was said last time
                continue
            if m.confidence >= self.threshold and m.polarity != UNCERTAIN:
                value = engine_value(f, m)
                if value is not None:
                    self.found[m.code] = value
                    noted.append(m.code)
            elif f.kind == BINARY:
                queued.append(m)  # a doubtful yes/no is asked back; a doubtful site is left for the engine's own question
        self.to_confirm += queued
        self.history.append(("describe", (noted, len(queued))))
        parts = []
        if noted:
            parts.append(_italic("I noted: " + "; ".join(self._finding_words(code) for code in noted) + "."))
        if not noted and not queued:
            if not said and self.age is None:
                try:
                    self.age = parse_age(text)  # just an age: keep it, and ask for the description again
                    self.history.append(("age", None))
                    return [COMPLAINT]
                except InputError:
                    pass
            if self.stage == "opening":
                # Nothing read with confidence: offer the questions that share the most words with the text.
                self.menu = rank_by_words(self.pack, text)
                if self.menu:
                    menu = "\n".join(f"{i}. {self.pack.finding(c).question}" for i, c in enumerate(self.menu, 1))
                    return ["I could not match that to the symptoms I know. Is it one of these? Reply with a number, or describe it in other words.", menu]
                if said:
                    return [COMPLAINT]
                return ["I could not match that to the symptoms I know. Please describe it in other words (for example: *cough, fever, sore throat, chest pain*).", *([COMMANDS] if first else [])]
        return parts + self._advance()

    def _finding_words(self, code: str) -> str:
        f = self.pack.finding(code)
        value = self.found[code]
        q = f.question.rstrip("?:. ")
        if f.kind == BINARY:
            return f"{q} — {'yes' if value else 'no'}"
        vals = value if isinstance(value, tuple) else (value,)
        return f"{q} — {', '.join(f.label_of(v) for v in vals)}"  # type: ignore[arg-type]

    def _confirm(self, text: str) -> list[str]:
        m = self.to_confirm[0]
        f = self.pack.finding(m.code)
        value = understand_answer(self.pack, f, text)
        self.to_confirm.pop(0)
        if value is not None:
            self.found[m.code] = value
        self.history.append(("confirm", m))
        return self._advance()

    def _advance(self) -> list[str]:
        """Begin the inquiry once everything needed is known; otherwise ask for what is missing."""
        if self.c is None and self.record and not self.record_queued and any(v not in (False, None) for v in self.found.values()):
            self.record_queued = True  # the family record's history is confirmed once the problem is known
            self.to_confirm += [m for m in self.record if m.code not in self.found]
        ready = self.age is not None and self.sex is not None and not self.to_confirm and self.stage not in ("course", "news")
        if self.c is None and ready and any(v not in (False, None) for v in self.found.values()):
            self.c = self._begin()
            return [*self._danger(self.c.red_flags), *self._next()]
        return self._prompt()

    def _begin(self) -> Consultation:
        """The consultation from everything gathered; at a follow-up, with the course rules that hold."""
        if self.ongoing:
            return Consultation.follow_up(self.age, self.sex, self.found, self.still, self.days, pack=self.pack, policy=self.policy)  # type: ignore[arg-type]
        return Consultation.begin(self.age, self.sex, list(self.found.items()), pack=self.pack, policy=self.policy)  # type: ignore[arg-type]

    def _answer(self, text: str) -> list[str]:
        c = self.c
        q = c.next_question()  # type: ignore[union-attr]
        f = self.pack.finding(q.code)  # type: ignore[union-attr]
        try:
            value = understand_answer(self.pack, f, text)
        except InputError as exc:
            return [f"I could not use that answer: {exc}", *self._question(q)]  # type: ignore[arg-type]
        turn = c.answer(f.code, value)  # type: ignore[union-attr]
        flags = list(turn.new_red_flags)
        noted = [answer_text(self.pack, turn.answer).split(": ", 1)[-1]]
        # More clues in the same answer ("no, but she has been vomiting") are entered as volunteered findings.
        if len(text.split()) > 2:
            answered = {a.code for a in c.state.answers}  # type: ignore[union-attr]
            for m in reader_for(self.pack).read(text, self.max_chars).mentions:
                extra = self.pack.finding(m.code)
                if m.code in answered or m.confidence < self.threshold:
                    continue
                v = engine_value(extra, m)
                if v is None:
                    continue
                extra_turn = c.volunteer(m.code, v)  # type: ignore[union-attr]
                answered.add(m.code)
                flags += list(extra_turn.new_red_flags)
                noted.append(answer_text(self.pack, extra_turn.answer).replace("?: ", " — "))
        also = f" Also noted: {'; '.join(noted[1:])}." if noted[1:] else ""
        return [_italic(f"Noted: {noted[0]}.{also}"), *self._danger(flags), *self._next()]

    def _undo(self) -> list[str]:
        c = self.c
        if c is not None and self.stopped:
            self.stopped = False
            return ["Taking back **stop**: the questions continue.", *self._next()]
        if c is not None and c.questions_asked > 0:
            undone = c.undo()
            return [_italic(f"Took back: {answer_text(self.pack, undone)}."), *self._next()]
        if c is not None:
            self.c = None  # back to the intake: the last intake step is taken back below
        if not self.history:
            return ["There is nothing to undo yet.", *self._prompt()]
        kind, data = self.history.pop()
        if kind == "age":
            self.age = None
        elif kind == "sex":
            self.sex = None
        elif kind == "found":
            self.found.pop(data, None)  # type: ignore[arg-type]
        elif kind == "confirm":
            self.found.pop(data.code, None)  # type: ignore[union-attr]
            self.to_confirm.insert(0, data)  # type: ignore[arg-type]
        elif kind == "course":
            self.still.pop(data, None)  # type: ignore[call-overload]
        elif kind == "news":
            self.news_pending = True
        elif kind == "describe":
            noted, n_queued = data  # type: ignore[misc]
            for code in noted:
                self.found.pop(code, None)
            del self.to_confirm[len(self.to_confirm) - n_queued :]
        return [_italic("Took that back."), *self._prompt()]

    def _why(self) -> list[str]:
        stage = self.stage
        if stage in WHY_INTAKE:
            return [WHY_INTAKE[stage], *self._prompt()]
        if stage == "ended":
            return ["No question is pending: the inquiry has ended.", *self._assessment()]
        q = self.c.next_question()  # type: ignore[union-attr]
        return [f"Why I ask this: {plain_reason(self.pack, q)}", _italic(f"Details: {reason(self.pack, q)}"), *self._question(q)]  # type: ignore[arg-type]

    def _stop(self) -> list[str]:
        if self.c is None:
            return ["There is nothing to assess yet: I need a description of the problem, the age and the sex first.", *self._prompt()]
        if self.stage == "inquiry":
            self.stopped = True
        return self._assessment()

    # ------------------------------------------------------------ rendering

    def _prompt(self) -> list[str]:
        """What to ask now, at any stage."""
        stage = self.stage
        child = self.audience.proxy
        if stage == "opening":
            return [COMPLAINT]
        if stage == "course":
            code = self.ongoing[len(self.still)]
            f = self.pack.finding(code)
            ago = self.days.get(code)
            since = f" (first reported {ago:.0f} days ago)" if ago is not None and ago >= 1 else ""
            return [f"Last time this was a yes{since}. **Is it still the case?** {self.question_text(f)}", _italic("Reply yes, no or don't know.")]
        if stage == "news":
            return ["**Has anything new appeared, or got worse, since last time?** Describe it in your own words, or reply *nothing new*."]
        if stage == "confirm":
            m = self.to_confirm[0]
            f = self.pack.finding(m.code)
            if m.method == "record":
                return [f"Your family record says “{m.text}” — is that still right? **{self.question_text(f)}**", _italic("Reply yes, no or don't know.")]
            lead = f"You said “{m.text}”" if m.polarity != UNCERTAIN else f"You were not sure about “{m.text}”"
            return [f"{lead} — to be sure I understood: **{self.question_text(f)}**", _italic("Reply yes, no or don't know.")]
        if stage == "age":
            if child:
                return [f"**How old is {self.audience.who}?** (for a baby, for example: 6 months)"]
            return ["**How old are you?** (for a baby, for example: 6 months)"]
        if stage == "sex":
            who = f"Is {self.audience.who} a boy or a girl" if child else "What is your sex"
            return [f"**{who}?** Some conditions depend on it. (female / male)"]
        return self._next()

    def _next(self) -> list[str]:
        q = self.c.next_question()  # type: ignore[union-attr]
        return self._assessment() if q is None or self.stopped else self._question(q)

    def _question(self, q: Question) -> list[str]:
        f = self.pack.finding(q.code)
        n = self.c.questions_asked + 1  # type: ignore[union-attr]
        text = self.question_text(f)
        if self.phrase is not None:
            text = self.phrase(text, self.audience)
        parts = [f"**Question {n}.** {text}"]
        menu = answer_menu(f)
        if f.kind != BINARY and menu:
            if len(menu) > INLINE_MENU:
                parts.append("Choices: " + " · ".join(f"{i}. {label}" for i, label, _ in menu))
            else:
                parts.append("\n".join(f"{i}. {label}" for i, label, _ in menu))
        hint = "yes, no or don't know" if f.kind == BINARY else ("a number " + f"{f.values[0]}–{f.values[-1]}" if is_scale(f) else "your answer in words or the numbers of the choices")
        parts.append(_italic(f"Reply with {hint}. You can also ask why, undo or stop."))
        return parts

    def _danger(self, flags: Sequence[RedFlag]) -> list[str]:
        if not flags:
            return []
        blocks = [f"🚨 **DANGER SIGN: {r.advice}**\n{_italic(r.basis)} The questions continue, but this advice stands." for r in flags]
        return [*blocks, _italic(NOTICE)]

    def _assessment(self) -> list[str]:
        c = self.c
        a = c.assessment()  # type: ignore[union-attr]
        t = a.triage
        parts = ["**Assessment** — decision support, not a diagnosis."]
        head = f"**Triage: {LEVEL_WORDS.get(t.level, t.level)}.** {t.advice}"
        parts.append("\n".join([head, *(f"- because: {r}" for r in t.reasons)]))
        rows = []
        for i, e in enumerate(a.differential[:5], 1):
            prob = f"{e.posterior:.1%}" if e.posterior >= 0.001 else "<0.1%"
            role = "likely" if e.role == "likely" else "consider / rule out"
            rows.append(f"{i}. {e.name} (ICD-10 {e.icd10}): {prob} — {role}")
        if rows:
            parts.append("**Conditions that fit your answers**, most likely first (probability):\n" + "\n".join(rows))
        if a.explanations:
            parts.append("**Why**\n" + "\n".join(f"- {e.sentence()}" for e in a.explanations[:3]))
        if a.tests:
            parts.append("**Tests a doctor may consider**\n" + "\n".join(f"- {x}" for x in suggestion_lines(a.tests)[:4]) + "\n" + _italic(basis_of(a.tests)))
        if a.plan is not None:
            parts.append(plan_text(a.plan))
        if self.with_results:
            parts.append(_italic("This assessment includes the examination and test results entered after the questions."))
        elif self.stopped:
            parts.append(_italic(f"You stopped after {a.questions_asked} questions, so this assessment is provisional."))
        else:
            parts.append(_italic(f"The inquiry ended after {a.questions_asked} questions: {a.stop_reason}."))
        parts.append(_italic(a.notice))
        undo = "continue the questions" if self.stopped else "change your last answer"
        parts.append(f"Type **undo** to {undo}, or start a new conversation for a new consultation.")
        return parts
