"""The HTTP API: a FastAPI app over the consultation service, one store and one knowledge pack.

The app holds no consultation between requests (each request loads it from the store and writes
it back before replying), so several worker processes can serve the same database.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from starlette.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from diagnostician import __version__
from diagnostician.api import chat
from diagnostician.api import household as household_api
from diagnostician.api.auth import SCOPE_KEY, ApiKeyMiddleware
from diagnostician.api.models import (
    AnswerIn,
    AnswerOut,
    AssessmentOut,
    AssessmentWithResultsOut,
    AuditOut,
    ConditionList,
    ConsultationOut,
    CreateConsultation,
    FindingList,
    Health,
    NextQuestionOut,
    ParseIn,
    ResultsIn,
    Problem,
    ReadingOut,
    TriageOut,
    UndoOut,
)
from diagnostician.api.problems import PROBLEM_JSON, BodyLimitMiddleware, ErrorGuardMiddleware, install_error_handlers
from diagnostician.api.settings import Settings
from diagnostician.consult import Consultation
from diagnostician.consult.export import clinician_report_html, clinician_report_markdown, fhir_bundle
from diagnostician.consult.household import Household
from diagnostician.consult.service import ConsultationService, search_conditions, search_findings
from diagnostician.consult.store import open_store
from diagnostician.knowledge.schema import load_pack
from diagnostician.web import mount as mount_web

DESCRIPTION = """\
An evidence-based clinical inquiry engine over HTTP. Create a consultation with age, sex and the
findings the patient comes with; ask for the next question (chosen by expected information gain,
with the reason it is asked); post each answer; read the differential, triage and explanations.

**Decision support, not a diagnosis.** Triage levels and red flags are *not yet clinically
reviewed*; every result that carries an assessment includes a notice that says when to seek care.

Answers are idempotent by question id: posting the same answer to the same question id again
returns the same result; another value gets 409. Errors are `application/problem+json`.

The family health record (`/v1/household`: members, their diary of readings and symptoms with plots,
and follow-ups) is one household per server, shared by every API key of the server.
"""

_STATUS_TEXT = {
    400: "Malformed JSON or request",
    404: "No such consultation (never created, or deleted)",
    409: "Conflicts with the consultation's state: not the pending question, already answered otherwise, nothing to undo",
    413: "Request body too large",
    415: "The body is not sent as application/json",
    422: "Invalid input: validation error, unknown finding code, or an answer that does not fit the question",
}


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": Problem, "description": _STATUS_TEXT[c], "content": {PROBLEM_JSON: {}}} for c in codes}


class _RedactQuery(logging.Filter):
    """Drop query strings from access-log lines: a search text may be what a patient typed."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite uvicorn's (client, method, path, version, status) arguments."""
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0] + "?…", args[3], args[4])
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactQuery) for f in access.filters):
        access.addFilter(_RedactQuery())


def _service(request: Request) -> ConsultationService:
    return request.app.state.service


Service = Annotated[ConsultationService, Depends(_service)]


def _key_name(request: Request) -> str | None:
    """The name of the API key that made the request (set by ApiKeyMiddleware), for the audit log."""
    return request.scope.get(SCOPE_KEY)


KeyName = Annotated[str | None, Depends(_key_name)]


def _router() -> APIRouter:
    r = APIRouter(prefix="/v1")
    consultations = ["consultations"]

    @r.post(
        "/consultations",
        status_code=201,
        response_model=ConsultationOut,
        tags=consultations,
        summary="Create a consultation",
        responses=_problems(400, 413, 415, 422),
    )
    def create_consultation(body: CreateConsultation, response: Response, service: Service, key_name: KeyName) -> dict[str, Any]:
        """Begin a consultation from age, sex and initial findings ({code: value}) or the patient's own words (`text`).

        Danger signs among the findings are returned at once.
        """
        loaded, intake = service.create_from(body.age, body.sex, body.findings, body.text, body.max_questions, key_name, body.member_id)
        response.headers["Location"] = f"/v1/consultations/{loaded.id}"
        view = service.consultation_view(loaded)
        if intake is not None:
            view["intake"] = intake
        return view

    @r.post("/parse", response_model=ReadingOut, tags=["knowledge"], summary="Read free text", responses=_problems(400, 413, 415, 422))
    def parse_text(body: ParseIn, service: Service) -> dict[str, Any]:
        """What the free-text intake understands in a text: demographics and each finding with polarity, value, confidence and span."""
        return service.parse(body.text)

    @r.get("/consultations/{consultation_id}", response_model=ConsultationOut, tags=consultations, summary="Get a consultation", responses=_problems(404))
    def get_consultation(consultation_id: str, service: Service, key_name: KeyName) -> dict[str, Any]:
        """Demographics, answers so far, danger signs present, and whether the inquiry is over."""
        return service.consultation_view(service.load(consultation_id, key_name))

    @r.get(
        "/consultations/{consultation_id}/question",
        response_model=NextQuestionOut,
        tags=consultations,
        summary="Get the next question",
        responses=_problems(404),
    )
    def get_question(consultation_id: str, service: Service, key_name: KeyName) -> dict[str, Any]:
        """The question to ask now (the same one until it is answered), or done=true with the reason the inquiry ended."""
        return service.question(service.load(consultation_id, key_name))

    @r.post(
        "/consultations/{consultation_id}/answers",
        response_model=AnswerOut,
        tags=consultations,
        summary="Answer the pending question",
        responses=_problems(400, 404, 409, 413, 415, 422),
    )
    def post_answer(consultation_id: str, body: AnswerIn, response: Response, service: Service, key_name: KeyName) -> dict[str, Any]:
        """Record the answer to the pending question. Idempotent by question id: a retry with the same value
        returns the same result (header `Idempotent-Replayed: true`); another value gets 409."""
        result, replayed = service.answer(consultation_id, body.question_id, body.value, key_name)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return result

    @r.post(
        "/consultations/{consultation_id}/undo",
        response_model=UndoOut,
        tags=consultations,
        summary="Take back the last answer",
        responses=_problems(404, 409, 413),
    )
    def post_undo(consultation_id: str, service: Service, key_name: KeyName) -> dict[str, Any]:
        """Take back the last answer given during the inquiry (initial findings stay); 409 when there is none."""
        return service.undo(consultation_id, key_name)

    @r.get(
        "/consultations/{consultation_id}/audit",
        response_model=AuditOut,
        tags=consultations,
        summary="Get the audit log",
        responses=_problems(404),
    )
    def get_audit(consultation_id: str, service: Service, key_name: KeyName) -> dict[str, Any]:
        """Each answer and undo: time, finding code, the coded answer (never free text), triage level after it, pack version, API key name."""
        return service.audit(consultation_id, key_name)

    @r.post(
        "/consultations/{consultation_id}/results",
        response_model=AssessmentWithResultsOut,
        tags=consultations,
        summary="Enter examination and test results",
        responses=_problems(400, 404, 409, 413, 415, 422),
    )
    def post_results(consultation_id: str, body: ResultsIn, service: Service, key_name: KeyName) -> dict[str, Any]:
        """Enter results known after the inquiry (in words or coded) and get the assessment with them.

        Results with a published sensitivity and specificity move the differential; a test the knowledge holds no
        accuracy for is recorded as uninterpreted, never weighed."""
        return service.add_results(consultation_id, body.text, body.results, key_name)

    @r.get(
        "/consultations/{consultation_id}/assessment",
        response_model=AssessmentOut,
        tags=consultations,
        summary="Get the assessment",
        responses=_problems(404),
    )
    def get_assessment(consultation_id: str, service: Service, key_name: KeyName) -> dict[str, Any]:
        """Differential with probabilities and roles, triage with red flags, explanations, and the notice."""
        return service.assessment(service.load(consultation_id, key_name))

    @r.get(
        "/consultations/{consultation_id}/triage",
        response_model=TriageOut,
        tags=consultations,
        summary="Get the triage level",
        responses=_problems(404),
    )
    def get_triage(consultation_id: str, service: Service, key_name: KeyName) -> dict[str, Any]:
        """Triage now: level, advice, danger signs and reasons, with the notice."""
        return service.triage(service.load(consultation_id, key_name))

    @r.delete(
        "/consultations/{consultation_id}",
        status_code=204,
        response_class=Response,
        tags=consultations,
        summary="Delete a consultation",
        responses=_problems(404),
    )
    def delete_consultation(consultation_id: str, service: Service, key_name: KeyName) -> Response:
        """Delete the consultation and its answers for good."""
        service.delete(consultation_id, key_name)
        return Response(status_code=204)

    @r.get(
        "/consultations/{consultation_id}/report",
        tags=consultations,
        summary="Clinician report (SOAP)",
        responses={**_problems(404, 422), 200: {"content": {"text/markdown": {}, "text/html": {}}}},
        response_class=Response,
    )
    def get_report(
        consultation_id: str,
        service: Service,
        key_name: KeyName,
        format: str = Query("markdown", pattern="^(markdown|html)$", description="markdown or html"),  # noqa: A002
    ) -> Response:
        """A SOAP-style report a clinician can check: findings, pertinent negatives, differential with reasons, triage."""
        c = service.load(consultation_id, key_name).consultation
        if format == "html":
            return Response(clinician_report_html(c), media_type="text/html; charset=utf-8")
        return Response(clinician_report_markdown(c), media_type="text/markdown; charset=utf-8")

    @r.get(
        "/consultations/{consultation_id}/fhir",
        tags=consultations,
        summary="FHIR R4 Bundle",
        responses={**_problems(404), 200: {"content": {"application/fhir+json": {}}}},
        response_class=Response,
    )
    def get_fhir(consultation_id: str, service: Service, key_name: KeyName) -> Response:
        """The consultation as a validated FHIR R4 (R4B models) collection Bundle, without patient identity."""
        bundle = fhir_bundle(service.load(consultation_id, key_name).consultation)
        return Response(json.dumps(bundle), media_type="application/fhir+json")

    search_text = Query("", max_length=100, description="Text to look for (case-insensitive); empty lists everything.")
    limit = Query(50, ge=1, le=500, description="At most this many items.")

    @r.get("/knowledge/conditions", response_model=ConditionList, tags=["knowledge"], summary="Search conditions", responses=_problems(422))
    def get_conditions(service: Service, q: str = search_text, limit: int = limit) -> dict[str, Any]:
        """Conditions of the loaded pack whose code, name or ICD-10 code contains `q`."""
        hits = search_conditions(service.pack, q)
        return {"pack": {"name": service.pack.name, "version": service.pack.version}, "total": len(hits), "items": hits[:limit]}

    @r.get("/knowledge/findings", response_model=FindingList, tags=["knowledge"], summary="Search findings", responses=_problems(422))
    def get_findings(service: Service, q: str = search_text, limit: int = limit) -> dict[str, Any]:
        """Findings of the loaded pack whose code, question or answer labels contain `q`."""
        hits = search_findings(service.pack, q)
        return {"pack": {"name": service.pack.name, "version": service.pack.version}, "total": len(hits), "items": hits[:limit]}

    @r.get("/health", response_model=Health, tags=["service"], summary="Health check")
    def get_health(service: Service) -> dict[str, Any]:
        """The service is up; which version and pack it serves."""
        return {"status": "ok", "version": __version__, "pack": {"name": service.pack.name, "version": service.pack.version}}

    return r


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with errors documented as problem+json only."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                for status, resp in op.get("responses", {}).items():
                    content = resp.get("content", {})
                    if status == "422" and PROBLEM_JSON not in content:  # FastAPI's default, which this app never sends
                        resp["description"] = _STATUS_TEXT[422]
                        content.clear()
                        content[PROBLEM_JSON] = {"schema": {"$ref": "#/components/schemas/Problem"}}
                    elif status[:1] in "45" and PROBLEM_JSON in content and "application/json" in content:
                        content[PROBLEM_JSON] = content.pop("application/json")
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(unused, None)
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app for these settings: opens the store and loads the pack now, so errors show at start."""
    settings = settings or Settings.from_env()
    pack = load_pack(settings.pack)
    store = open_store(settings.store_url)
    # Warm the engine's per-pack caches so the first patient does not wait for them.
    warm = Consultation.begin(40, "F", pack=pack)
    warm.next_question()
    warm.assessment()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(title="diagnostician", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.service = ConsultationService(store, pack)
    install_error_handlers(app)
    app.include_router(_router())
    app.include_router(chat.router())
    household_api.install(app, Household(store))  # /v1/household: one family record per server, shared by its keys
    mount_web(app)  # the consultation page at / (static files, no network fetch)
    # Added last = outermost: the size limit acts before anything reads the body.
    app.add_middleware(ErrorGuardMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, path_limits={chat.PATH: settings.chat_max_body_bytes})
    # Outside the size limit: a request without a valid key is refused before its body is read.
    app.add_middleware(ApiKeyMiddleware, store=store, required=settings.require_keys, default_rate_limit=settings.rate_limit)
    if settings.cors_origins:  # closed by default: no CORS headers unless origins are configured
        # Outermost, so preflight requests (which carry no key) are answered before the key check.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["Location", "Retry-After", "Idempotent-Replayed"],
        )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _redact_access_log()
    return app


def create_app_from_env() -> FastAPI:
    """App factory for uvicorn (`--factory`): settings from DIAGNOSTICIAN_* environment variables."""
    return create_app(Settings.from_env())
