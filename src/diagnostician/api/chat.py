"""OpenAI-compatible chat: `POST /v1/chat/completions` (model `diagnostician`) conducts a consultation over chat turns.

Design: the consultation is *replayed* from the chat history on every request, and nothing is stored.
The OpenAI API is stateless (the client resends the whole history each turn), and so is this
endpoint: the user's messages are read in order, each as the reply to what the assistant asked at
that point, through the same pure engine the rest of the service uses. The engine is deterministic,
so replaying the same messages rebuilds the same consultation and asks the same next question; a
whole consultation replays in milliseconds. Compared with a server-side consultation keyed by an id
embedded in the assistant's first message, replay needs no storage, cannot lose or leak sessions,
and follows what chat UIs do to a history: "regenerate" resends the same messages and gets the
same reply; editing an earlier message simply continues from the edited answer.

The assistant's messages are not needed to rebuild the consultation; they only serve as a check.
After each user message the replay knows which question it asked next; the next assistant message
in the history must contain that question's text. If it does not (an assistant message was edited,
or the server's knowledge pack changed since the chat began, so the answers would now belong to
other questions), the reply says so and asks for a new chat instead of guessing.

The conversation: the first reply introduces the service with the decision-support notice and asks
for age (a first message that is an age is taken as the answer), then sex, then the main complaint
from a numbered menu of common complaints or by a word searched in the question texts (until
free-text intake exists). Then each question comes with its allowed answers as numbered choices; a
reply is read with `dialogue.answers.parse_menu_answer` (yes/no/?, numbers, labels, menu numbers,
comma lists). `undo`/`back` takes back the last answer (also during intake), `why` explains the
pending question, `stop` ends with the assessment so far, `help` lists the commands. A reply that
cannot be read is re-asked with the reason, never answered with an error status. A danger sign
shows its advice in the very reply to the answer that raised it. When the inquiry ends the reply
holds the assessment: differential with probabilities, triage and advice, explanations and the notice.

Protocol: `stream` true gives server-sent events (`data: {chunk}` lines, then `data: [DONE]`) whose
content concatenates to exactly the non-streaming text; `n` must be absent or 1; sampling
parameters are ignored; `usage` is all zeros because no language model runs, so there are no
tokens to count. Bad requests are 4xx problem+json like the rest of the API.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Iterator, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from diagnostician.api.models import ChatCompletion, ChatCompletionRequest, ModelList, ModelOut, Problem
from diagnostician.api.problems import PROBLEM_JSON, problem
from diagnostician.consult.session import Consultation
from diagnostician.dialogue.answers import parse_menu_answer
from diagnostician.dialogue.intake import COMPLAINT_PROMPT, common_complaints, parse_age, parse_sex, pick_complaint
from diagnostician.dialogue.render import answer_hint, answer_menu, reason
from diagnostician.engine import NOTICE, InquiryPolicy, Question
from diagnostician.engine.explain import answer_text
from diagnostician.errors import InputError
from diagnostician.knowledge.schema import Pack, RedFlag

PATH = "/v1/chat/completions"
MODEL_ID = "diagnostician"
MODEL_CREATED = 1767225600  # fixed (2026-01-01), so every server lists the same model
OWNER = "diagnostician"
INLINE_MENU = 20  # longer menus (body locations: 166 choices) go on one line, so they do not fill the screen

UNDO = {"undo", "back", "u"}
WHY = {"why", "why?", "w"}
STOP = {"stop", "quit", "q", "exit", "end", "finish"}
HELP = {"help", "h", "commands", "help?"}

COMMANDS = "You can type **why** to learn why a question is asked, **undo** (or back) to take back your last answer, and **stop** to end and see the assessment so far."
INTRO = (
    "Hello. I am **diagnostician**, an evidence-based symptom checker. I ask about your symptoms one question at a "
    "time, then tell you which conditions fit your answers and how urgently to seek care."
)
MISMATCH = (
    "This conversation no longer matches the questions I would ask at this point: an earlier message was changed, "
    "or my knowledge pack was updated since the chat began. So that every answer stays tied to the right question, "
    "please **start a new chat**."
)
LEVEL_WORDS = {"emergency": "EMERGENCY", "urgent_24h": "URGENT (within 24 hours)", "see_doctor": "SEE A DOCTOR", "self_care": "SELF-CARE"}
WHY_INTAKE = {
    "age": "Age changes how likely each condition is: some occur mostly in children, others mostly in older adults.",
    "sex": "Some conditions occur mostly or only in one sex, so the knowledge pack weighs them by sex.",
    "complaint": "The main complaint decides where the questions start; the next ones are chosen by how much each answer would tell.",
}


def _words(text: str) -> str:
    return " ".join(text.split())


def _italic(text: str) -> str:
    return f"_{text}_"


class ChatConsultation:
    """A consultation rebuilt from a chat: feed the user's messages in order with `reply`; each returns the assistant's text."""

    def __init__(self, pack: Pack, policy: InquiryPolicy | None = None) -> None:
        """A chat that has not begun."""
        self.pack = pack
        self.policy = policy or InquiryPolicy()
        self.age: float | None = None
        self.sex: str | None = None
        self.menu: list[str] = common_complaints(pack)
        self.searched = False  # the menu holds search results rather than the common complaints
        self.c: Consultation | None = None
        self.stopped = False  # the person typed stop: the assessment so far stands until undo
        self.turns = 0

    # ------------------------------------------------------------ state

    @property
    def stage(self) -> str:
        """age, sex, complaint, inquiry (a question is pending) or ended (the assessment was given)."""
        if self.age is None:
            return "age"
        if self.sex is None:
            return "sex"
        if self.c is None:
            return "complaint"
        if self.stopped or self.c.next_question() is None:
            return "ended"
        return "inquiry"

    def expected_question(self) -> str | None:
        """The text of the question the last reply asked, when it was an inquiry question."""
        if self.stage != "inquiry":
            return None
        q = self.c.next_question()  # type: ignore[union-attr]
        return None if q is None else self.pack.finding(q.code).question

    # ------------------------------------------------------------ one turn

    def reply(self, text: str) -> str:
        """Take one user message and return the assistant's reply."""
        self.turns += 1
        if self.turns == 1:
            return self._join(self._first(text))
        word = text.strip().lower().rstrip(".!")
        if not word:
            parts = ["I did not get an answer.", *self._prompt()]
        elif word in HELP:
            parts = [COMMANDS, *self._prompt()]
        elif word in UNDO:
            parts = self._undo()
        elif word in WHY:
            parts = self._why()
        elif word in STOP:
            parts = self._stop()
        else:
            parts = self._answer(text)
        return self._join(parts)

    @staticmethod
    def _join(parts: list[str]) -> str:
        return "\n\n".join(p for p in parts if p)

    def _first(self, text: str) -> list[str]:
        parts = [INTRO, _italic(NOTICE)]
        try:
            self.age = parse_age(text)  # someone who opens with their age is not asked for it again
        except InputError:
            return parts + self._prompt() + [COMMANDS]
        return parts + self._prompt()

    def _answer(self, text: str) -> list[str]:
        stage = self.stage
        if stage == "age":
            try:
                self.age = parse_age(text)
            except InputError as exc:
                return [f"I could not read that as an age: {exc}.", *self._prompt()]
            return self._prompt()
        if stage == "sex":
            try:
                self.sex = parse_sex(text)
            except InputError as exc:
                return [f"I could not read that: {exc}.", *self._prompt()]
            return self._prompt()
        if stage == "complaint":
            return self._complaint(text)
        if stage == "ended":
            return ["This consultation has ended: the assessment stands.", *self._assessment()]
        c = self.c
        q = c.next_question()  # type: ignore[union-attr]
        f = self.pack.finding(q.code)  # type: ignore[union-attr]
        try:
            turn = c.answer(f.code, parse_menu_answer(f, text))  # type: ignore[union-attr]
        except InputError as exc:
            return [f"I could not use that answer: {exc}", *self._question(q)]  # type: ignore[arg-type]
        noted = _italic(f"Noted: {answer_text(self.pack, turn.answer).split(': ', 1)[-1]}.")
        return [noted, *self._danger(turn.new_red_flags), *self._next()]

    def _complaint(self, text: str) -> list[str]:
        try:
            pick = pick_complaint(self.pack, self.menu, text)
        except InputError as exc:
            return [str(exc), *self._prompt()]
        if pick.code is None:
            self.menu, self.searched = list(pick.matches), True
            return self._prompt()
        self.c = Consultation.begin(self.age, self.sex, {pick.code: True}, pack=self.pack, policy=self.policy)  # type: ignore[arg-type]
        noted = _italic(f"Noted: {self.pack.finding(pick.code).question.rstrip('?:. ')} — yes.")
        return [noted, *self._danger(self.c.red_flags), *self._next()]

    def _undo(self) -> list[str]:
        stage = self.stage
        c = self.c
        if c is not None and self.stopped:
            self.stopped = False
            return ["Taking back **stop**: the questions continue.", *self._next()]
        if c is not None and c.questions_asked > 0:
            undone = c.undo()
            return [_italic(f"Took back: {answer_text(self.pack, undone)}."), *self._next()]
        if c is not None:
            self.c, self.menu, self.searched = None, common_complaints(self.pack), False
            return [_italic("Took back the main complaint."), *self._prompt()]
        if stage == "complaint" and self.searched:
            self.menu, self.searched = common_complaints(self.pack), False
            return ["Back to the common complaints.", *self._prompt()]
        if stage == "complaint":
            self.sex = None
            return [_italic("Took back your sex."), *self._prompt()]
        if stage == "sex":
            self.age = None
            return [_italic("Took back your age."), *self._prompt()]
        return ["There is nothing to undo yet.", *self._prompt()]

    def _why(self) -> list[str]:
        stage = self.stage
        if stage in WHY_INTAKE:
            return [WHY_INTAKE[stage], *self._prompt()]
        if stage == "ended":
            return ["No question is pending: the inquiry has ended.", *self._assessment()]
        q = self.c.next_question()  # type: ignore[union-attr]
        return [f"Why I ask this: {reason(self.pack, q)}", *self._question(q)]  # type: ignore[arg-type]

    def _stop(self) -> list[str]:
        if self.c is None:
            return ["There is nothing to assess yet: I need your age, sex and main complaint first.", *self._prompt()]
        if self.stage == "inquiry":
            self.stopped = True
        return self._assessment()

    # ------------------------------------------------------------ rendering

    def _prompt(self) -> list[str]:
        """What to ask now, at any stage."""
        stage = self.stage
        if stage == "age":
            return ["**How old are you?** Reply with your age in years (for a baby, for example: 6 months)."]
        if stage == "sex":
            return ["**What is your sex?** Some conditions depend on it.\n\n1. female\n2. male"]
        if stage == "complaint":
            menu = "\n".join(f"{i}. {self.pack.finding(code).question}" for i, code in enumerate(self.menu, 1))
            if self.searched:
                return [f"**Matching questions** — pick a number, type another word, or **back** for the common list:\n\n{menu}"]
            return [f"**{COMPLAINT_PROMPT}** Pick a number, or type a word to search (for example: throat).\n\n{menu}"]
        return self._next()

    def _next(self) -> list[str]:
        q = self.c.next_question()  # type: ignore[union-attr]
        return self._assessment() if q is None or self.stopped else self._question(q)

    def _question(self, q: Question) -> list[str]:
        f = self.pack.finding(q.code)
        n = self.c.questions_asked + 1  # type: ignore[union-attr]
        parts = [f"**Question {n}.** {f.question}"]
        menu = answer_menu(f)
        if len(menu) > INLINE_MENU:
            parts.append("Choices: " + " · ".join(f"{i}. {label}" for i, label, _ in menu))
        elif menu:
            parts.append("\n".join(f"{i}. {label}" for i, label, _ in menu))
        how = answer_hint(f) if not menu else f"the number of your answer, or {answer_hint(f)}"
        parts.append(_italic(f"Reply with {how}. Or type why, undo or stop."))
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
        if self.stopped:
            parts.append(_italic(f"You stopped after {a.questions_asked} questions, so this assessment is provisional."))
        else:
            parts.append(_italic(f"The inquiry ended after {a.questions_asked} questions: {a.stop_reason}."))
        parts.append(_italic(a.notice))
        undo = "continue the questions" if self.stopped else "change your last answer"
        parts.append(f"Type **undo** to {undo}, or start a new chat for a new consultation.")
        return parts


def chat_reply(pack: Pack, messages: Sequence[tuple[str, str]], policy: InquiryPolicy | None = None) -> str:
    """The assistant's reply to a chat history of (role, text), oldest first, ending with a user message."""
    chat = ChatConsultation(pack, policy)
    reply = ""
    for role, text in messages:
        if role == "user":
            reply = chat.reply(text)
        elif role == "assistant":
            expected = chat.expected_question()
            # Whitespace-insensitive: some clients trim or reflow the text they keep.
            if expected is not None and _words(expected) not in _words(text):
                return "\n\n".join([MISMATCH, _italic(NOTICE)])
    return reply


# ---------------------------------------------------------------- HTTP

_STATUS_TEXT = {
    400: "Malformed JSON, or an unsupported parameter (n other than 1)",
    404: "No such model (only `diagnostician`)",
    413: "Request body too large",
    415: "The body is not sent as application/json",
    422: "Invalid request: no messages, a role other than system/developer/user/assistant, content that is not text, "
    "or a last message that is not from the user",
}


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": Problem, "description": _STATUS_TEXT[c], "content": {PROBLEM_JSON: {}}} for c in codes}


def _model() -> dict[str, Any]:
    return {"id": MODEL_ID, "object": "model", "created": MODEL_CREATED, "owned_by": OWNER}


def _chunks(text: str) -> list[str]:
    """The text in line-sized pieces that concatenate back to exactly the text."""
    return re.findall(r"[^\n]*\n|[^\n]+", text)


def _sse(completion_id: str, created: int, fingerprint: str, text: str, include_usage: bool) -> Iterator[str]:
    """The reply as server-sent events in the OpenAI chunk format, ending with [DONE]."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID, "system_fingerprint": fingerprint}

    def event(delta: dict[str, Any], finish: str | None = None) -> str:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    for piece in _chunks(text):
        yield event({"content": piece})
    yield event({}, "stop")
    if include_usage:
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': _usage()})}\n\n"
    yield "data: [DONE]\n\n"


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def router() -> APIRouter:
    """The OpenAI-compatible routes: /v1/models and /v1/chat/completions."""
    r = APIRouter(tags=["chat (OpenAI-compatible)"])

    @r.get("/v1/models", response_model=ModelList, summary="List models")
    def list_models() -> dict[str, Any]:
        """The models in the OpenAI format: only `diagnostician`."""
        return {"object": "list", "data": [_model()]}

    @r.get("/v1/models/{model_id}", response_model=ModelOut, summary="Get a model", responses=_problems(404))
    def get_model(model_id: str) -> Any:
        """One model in the OpenAI format (404 for any id but `diagnostician`)."""
        if model_id != MODEL_ID:
            return problem(404, "model-not-found", "No such model", f"no model {model_id!r}; this server offers only {MODEL_ID!r}")
        return _model()

    @r.post(
        PATH,
        response_model=ChatCompletion,
        summary="Chat completion (consultation over chat turns)",
        responses={
            200: {"description": "The reply; with `stream: true`, server-sent events.", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
            **_problems(400, 404, 413, 415, 422),
        },
    )
    def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        """Conduct a consultation in the OpenAI chat format: send the whole history each turn, read the next question,
        the danger signs, and at the end the assessment. Stateless: the consultation is replayed from the history.
        `usage` counts are always 0 (no language model runs)."""
        if body.n is not None and body.n != 1:
            return problem(400, "unsupported-parameter", "Unsupported parameter", "n must be 1 (or absent): the consultation has one reply per turn")
        if body.model != MODEL_ID:
            return problem(404, "model-not-found", "No such model", f"no model {body.model!r}; this server offers only {MODEL_ID!r}")
        pack: Pack = request.app.state.service.pack
        text = chat_reply(pack, [(m.role, m.text) for m in body.messages])
        completion_id, created, fingerprint = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), f"{pack.name}-{pack.version}"
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _sse(completion_id, created, fingerprint, text, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": MODEL_ID,
            "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None}, "finish_reason": "stop", "logprobs": None}],
            "usage": _usage(),
        }

    return r
