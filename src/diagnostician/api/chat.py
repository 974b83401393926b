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

The conversation is `consult.conversation.Conversation`, the same one `diagnostician chat` runs in a
terminal: the first message describes the problem in plain words (every clue in it is read, including
what is denied, the age, the sex and whether a parent writes); doubtful clues are confirmed; missing
age and sex are asked; then the engine's questions follow one at a time in words addressed to whoever
answers, each answer read in plain words too ("yeah a bit", "the left side of my chest"), list
questions also taking the numbers of their choices. `undo`/`back`, `why`, `stop` and `help` work at
every stage. A danger sign shows its advice in the very reply to the message that raised it. When
the inquiry ends the reply holds the assessment: differential with probabilities, triage and advice,
explanations and the notice. Replies are template text (no language model), so replay is exact.

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
from diagnostician.consult.conversation import Conversation
from diagnostician.engine import NOTICE, InquiryPolicy
from diagnostician.knowledge.schema import Pack

PATH = "/v1/chat/completions"
MODEL_ID = "diagnostician"
MODEL_CREATED = 1767225600  # fixed (2026-01-01), so every server lists the same model
OWNER = "diagnostician"
INLINE_MENU = 20  # longer menus (body locations: 166 choices) go on one line, so they do not fill the screen

MISMATCH = (
    "This conversation no longer matches the questions I would ask at this point: an earlier message was changed, "
    "or my knowledge pack was updated since the chat began. So that every answer stays tied to the right question, "
    "please **start a new chat**."
)


def _words(text: str) -> str:
    return " ".join(text.split())


def _italic(text: str) -> str:
    return f"_{text}_"


def chat_reply(pack: Pack, messages: Sequence[tuple[str, str]], policy: InquiryPolicy | None = None) -> str:
    """The assistant's reply to a chat history of (role, text), oldest first, ending with a user message."""
    chat = Conversation(pack, policy or InquiryPolicy())
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
