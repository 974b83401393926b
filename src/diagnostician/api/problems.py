"""Errors as application/problem+json, the request-size limit, and the last-resort error guard.

Nothing here logs request bodies or error messages: messages about answers quote the answers, and
patient answers must not reach the logs.
"""

from __future__ import annotations

import json
import logging
import traceback
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from diagnostician.consult.service import AnswerConflictError, NotPendingError
from diagnostician.consult.crypto import RecordLockedError
from diagnostician.consult.household import FollowupClosedError
from diagnostician.consult.store import (
    ConsultationNotFoundError,
    DuplicateAnswerError,
    FollowupNotFoundError,
    MemberNotFoundError,
    StaleRevisionError,
    StoreError,
)
from diagnostician.errors import InputError, InvalidAnswerError, PackError, SessionError, UnknownFindingError

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger("diagnostician.api")


def problem_type(slug: str) -> str:
    """The type URI of a kind of problem."""
    return f"urn:diagnostician:problem:{slug}"


def problem_body(status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """A problem document (RFC 9457)."""
    body: dict[str, Any] = {"type": problem_type(slug) if slug else "about:blank", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem(status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    return JSONResponse(problem_body(status, slug, title, detail, **extra), status_code=status, media_type=PROBLEM_JSON, headers=headers)


# Library errors → (status, slug, title), most specific first.
_LIBRARY_ERRORS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (ConsultationNotFoundError, 404, "consultation-not-found", "No such consultation"),
    (MemberNotFoundError, 404, "member-not-found", "No such household member"),
    (FollowupNotFoundError, 404, "followup-not-found", "No such follow-up"),
    (FollowupClosedError, 409, "followup-closed", "Follow-up already closed"),
    (RecordLockedError, 503, "record-locked", "Record locked"),
    (NotPendingError, 409, "question-not-pending", "Not the pending question"),
    (AnswerConflictError, 409, "answer-conflict", "Question already answered"),
    (UnknownFindingError, 422, "unknown-finding", "Unknown finding code"),
    (InvalidAnswerError, 422, "invalid-answer", "Answer does not fit the question"),
    (InputError, 422, "invalid-input", "Invalid input"),
    (SessionError, 409, "consultation-conflict", "Not possible in the consultation's current state"),
    (StaleRevisionError, 409, "consultation-conflict", "Consultation changed meanwhile"),
    (DuplicateAnswerError, 409, "answer-conflict", "Question already answered"),
    (StoreError, 503, "store-unavailable", "Consultation storage unavailable"),
    (PackError, 500, "pack-error", "Knowledge pack error"),
)


def _library_error(request: Request, exc: Exception) -> JSONResponse:
    for cls, status, slug, title in _LIBRARY_ERRORS:
        if isinstance(exc, cls):
            if status >= 500:
                logger.error("%s on %s %s", type(exc).__name__, request.method, request.url.path)
            return problem(status, slug, title, str(exc))
    raise exc  # not ours: the error guard answers 500


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if broken is not None:
        reason = (broken.get("ctx") or {}).get("error", "invalid JSON")
        return problem(400, "malformed-json", "Malformed JSON", f"the request body is not valid JSON: {reason} at character {broken['loc'][-1]}")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if any(e.get("loc", ())[:1] == ("body",) for e in errors) and not (content_type == "application/json" or content_type.endswith("+json")):
        return problem(415, "unsupported-media-type", "Unsupported Media Type", "send the request body as JSON with Content-Type: application/json")
    # Only where and what: pydantic's `input` would echo the patient's values back into logs and proxies.
    issues = [{"loc": [str(x) if not isinstance(x, int) else x for x in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors]
    first = issues[0] if issues else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(x) for x in first["loc"])
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return problem(422, "validation-error", "Request validation failed", f"{where}: {first['msg']}{more}", errors=issues)


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    try:
        title = HTTPStatus(exc.status_code).phrase
    except ValueError:
        title = "Error"
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem(exc.status_code, "", title, detail, headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every expected error with problem+json."""
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    for cls, *_ in _LIBRARY_ERRORS:
        app.add_exception_handler(cls, _library_error)


async def _send_problem(send: Send, status: int, slug: str, title: str, detail: str, close: bool = False) -> None:
    body = json.dumps(problem_body(status, slug, title, detail)).encode()
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse request bodies over a size limit with 413, before any of the app sees them.

    The body is read here (at most the limit), then replayed to the app, so a client that lies
    in Content-Length or streams chunks is held to the same limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None) -> None:
        """Wrap an ASGI app; `path_limits` gives other limits for exact paths."""
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.path_limits.get(scope.get("path", ""), self.max_bytes)
        too_big = f"the request body exceeds the limit of {max_bytes} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_problem(send, 400, "bad-request", "Bad Request", "invalid Content-Length header", close=True)
                    return
                if declared > max_bytes:
                    await _send_problem(send, 413, "body-too-large", "Request body too large", too_big, close=True)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            body = message.get("body", b"")
            size += len(body)
            if size > max_bytes:
                await _send_problem(send, 413, "body-too-large", "Request body too large", too_big, close=True)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ErrorGuardMiddleware:
    """Turn any unexpected exception into a 500 problem, logging where it happened but not its message."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap an ASGI app."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            # The traceback's frames, not its message: messages may quote what the patient answered.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            logger.error("unhandled %s on %s %s\n%s", type(exc).__name__, scope.get("method"), scope.get("path"), frames)
            if not started:
                await _send_problem(send, 500, "internal-error", "Internal Server Error", "an unexpected error occurred; it has been logged")
            # Not re-raised: the server would log the message itself.
