"""The consultation as MCP tools: start, next question, answer, undo, differential, explain, search.

Every tool is a thin call into `ConsultationService`, the layer the HTTP API uses, over the same
store: a consultation started here can be read or continued over HTTP and the other way round,
and the server holds no consultation between calls. Library errors come back as MCP tool errors
(`isError: true` with a one-line message the agent can act on); nothing a caller sends stops the
server.
"""

from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager
from typing import Annotated, Any, Iterator, Literal, Optional, Union

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from pydantic import Field, StrictBool, StrictFloat, StrictInt, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from diagnostician import __version__
from diagnostician.consult.service import (
    MAX_QUESTIONS_LIMIT,
    AnswerConflictError,
    ConsultationService,
    NotPendingError,
    search_conditions,
    search_findings,
)
from diagnostician.consult.store import ConsultationNotFoundError, StoreError
from diagnostician.engine import NOTICE
from diagnostician.errors import DiagnosticianError, InputError, InvalidAnswerError, PackError, SessionError, UnknownFindingError

# Same field limits as the HTTP API: generous for real use, small enough that no call makes the server work hard.
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(strict=True, max_length=500)]
ConsultationId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    Field(description="The consultation id returned by start_consultation."),
]

VALUE_HELP = (
    "Value by question type: binary (yes/no) -> true or false; "
    "categorical -> one `value` from the question's `answers`, a string code such as 'V_10'; "
    "scale (scale=true, e.g. pain 0-10) -> the number, e.g. '7' or 7; "
    "multi (several places or kinds) -> a list of `value` codes, e.g. ['V_29', 'V_101'] ([] for none); "
    "null -> don't know (whenever the person is unsure or does not say; never guess for them). "
    "Plain text as a person types it ('yes', 'no', 'lower chest, upper chest', '?') is accepted too."
)

AnswerValue = Annotated[
    Union[StrictBool, StrictInt, StrictFloat, Text, Annotated[list[Text], Field(max_length=100)], None],
    Field(description=VALUE_HELP),
]

INSTRUCTIONS = f"""\
diagnostician runs an evidence-based clinical inquiry for one person: it chooses the next most
useful question, keeps a ranked differential with probabilities, flags danger signs and triages.

Decision support, not a diagnosis. Present results as possibilities to discuss with a clinician,
always with the triage advice and this notice: {NOTICE}

How to run a consultation:
1. start_consultation with age, sex and the findings the person came with (find finding codes with
   search_knowledge, kind='findings'; e.g. {{"E_53": true}} for pain).
2. next_question; ask the person exactly that one question, in plain words, offering its answers.
3. answer with the question's `id` as question_id and the person's answer as value; null means
   "don't know". Never answer for the person.
4. Repeat 2-3, one question at a time, until next_question returns done=true.
5. differential for the result (triage, conditions, notice); explain for the reasons.
If an answer returns new_red_flags, tell the person their advice at once.
"""

logger = logging.getLogger("diagnostician.mcp")


@contextmanager
def _tool_errors() -> Iterator[None]:
    """Turn library errors into MCP tool errors whose message says what to do next.

    Order matters: the specific kinds are subclasses of InputError, SessionError or StoreError. Anything
    else is a bug: it is logged without its message and reported as an internal error, never a crash.
    """
    try:
        yield
    except ConsultationNotFoundError as exc:
        raise ToolError(f"unknown consultation: {exc}; start one with start_consultation or check the id") from exc
    except NotPendingError as exc:
        raise ToolError(f"wrong question id: {exc}. Call next_question: answer the question it returns, or call differential if it says done") from exc
    except AnswerConflictError as exc:
        raise ToolError(f"answer conflict: {exc}") from exc
    except UnknownFindingError as exc:
        raise ToolError(f"unknown code: {exc}; look codes up with search_knowledge") from exc
    except InvalidAnswerError as exc:
        raise ToolError(f"bad value: {exc}. Send one of the question's `answers` values as its `hint` says (null = don't know)") from exc
    except InputError as exc:
        raise ToolError(f"invalid input: {exc}") from exc
    except SessionError as exc:
        raise ToolError(f"not possible now: {exc}") from exc
    except StoreError as exc:
        # Not the caller's fault; logged without the message, which may quote the consultation.
        logger.error("consultation store error: %s", type(exc).__name__)
        raise ToolError(f"consultation storage unavailable: {exc}") from exc
    except PackError as exc:
        logger.error("knowledge pack error: %s", type(exc).__name__)
        raise ToolError(f"knowledge pack error: {exc}") from exc
    except DiagnosticianError as exc:
        raise ToolError(f"error: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the last line of defence, as in the HTTP API
        # The traceback's frames, not its message: messages may quote what the patient answered.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        logger.error("unexpected %s in an MCP tool\n%s", type(exc).__name__, frames)
        raise ToolError("internal error: an unexpected error occurred; it has been logged") from None


def _pending_reason(view: dict[str, Any] | None) -> dict[str, Any] | None:
    """The pending question without its list of answers: what is asked and why."""
    if view is None:
        return None
    keep = ("id", "finding", "text", "type", "phase", "reason", "expected_gain_bits", "safety_gain_bits", "p_present", "separates")
    return {k: view[k] for k in keep}


def _explanation(service: ConsultationService, consultation_id: str) -> dict[str, Any]:
    """The explanations of the assessment joined with their differential entries, and why the pending question is asked."""
    loaded = service.load(consultation_id)
    assessment = service.assessment(loaded)
    pending = service.question(loaded)
    entries = {e["name"]: e for e in assessment["differential"]}  # explanations name their condition
    leading = []
    for x in assessment["explanations"]:
        e = entries.get(x["condition"], {})
        leading.append(
            {
                "condition": x["condition"],
                "code": e.get("code"),
                "probability": e.get("probability"),
                "role": e.get("role"),
                "for": x["supporting"],
                "against": x["opposing"],
                "text": x["text"],
            }
        )
    return {
        "consultation_id": loaded.id,
        "leading": leading,
        "pending_question": _pending_reason(pending["question"]),
        "done": pending["done"],
        "stop_reason": pending["stop_reason"],
        "questions_asked": pending["questions_asked"],
        "notice": NOTICE,
    }


def create_server(service: ConsultationService) -> MCPServer:
    """An MCP server whose tools run consultations through `service` (its store and pack)."""
    # WARNING, not INFO: the SDK logs a failed tool's message at INFO, and messages about answers quote them.
    mcp = MCPServer(
        name="diagnostician",
        title="diagnostician clinical inquiry (decision support, not a diagnosis)",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )
    pack = service.pack

    @mcp.tool(
        title="Start a consultation",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
        description=(
            "Start and store a consultation for one person. age: years (0-120); sex: F or M; findings: what the "
            "person came with, as {finding code: value}, e.g. {\"E_53\": true} for pain (look codes up with "
            "search_knowledge, kind='findings'; values as for answer). Returns the consultation `id` (pass it to "
            "every other tool), the answers on record, danger signs already present (red_flags: tell the person "
            "their advice at once) and the notice. Then call next_question and ask one question at a time. "
            "Decision support, not a diagnosis."
        ),
    )
    def start_consultation(
        age: Annotated[float, Field(ge=0, le=120, strict=True, description="Age in years (0-120).")],
        sex: Annotated[str, StringConstraints(min_length=1, max_length=16), Field(description="F or M ('female', 'male' are accepted too).")],
        findings: Annotated[
            dict[Code, AnswerValue],
            Field(max_length=300, description="Initial findings as {finding code: value}, e.g. the main complaint {\"E_53\": true}."),
        ] = {},  # noqa: B006 - pydantic copies defaults; never mutated here
        max_questions: Annotated[
            Optional[int], Field(ge=1, le=MAX_QUESTIONS_LIMIT, description="Question budget (default 30).")
        ] = None,
        text: Annotated[
            Optional[str],
            StringConstraints(max_length=5000),
            Field(description="The patient's own words: findings read from them with confidence are entered too (codes in `findings` win)."),
        ] = None,
    ) -> dict[str, Any]:
        """Begin and store a consultation; return its view (with `intake`, what was read, when `text` was given)."""
        with _tool_errors():
            loaded, intake = service.create_from(age, sex, findings, text, max_questions)
            view = service.consultation_view(loaded)
            if intake is not None:
                view["intake"] = intake
            return view

    @mcp.tool(
        title="Get the next question",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        description=(
            "The one question to ask now, or done=true with the reason the inquiry ended. Ask the person exactly "
            "this question (in plain words, offering the labels in `answers`), one question at a time: never batch "
            "questions or answer for the person. Then call answer with question_id = this question's `id` "
            "(e.g. 'E_55@3'). `type` is binary, categorical or multi; `scale` marks numeric scales; `hint` says how "
            "to answer; `reason` says why it is asked. The question stays the same until it is answered. When done "
            "is true, call differential. Decision support, not a diagnosis."
        ),
    )
    def next_question(consultation_id: ConsultationId) -> dict[str, Any]:
        """The pending question, or done with the reason the inquiry ended."""
        with _tool_errors():
            return service.question(service.load(consultation_id))

    @mcp.tool(
        title="Answer the pending question",
        # Idempotent by question id: a retry with the same value replays the first result.
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
        description=(
            "Record the person's answer to the pending question. question_id: the `id` that next_question returned "
            "(e.g. 'E_55@3'); only the question pending now is accepted, so after an undo or an error call "
            "next_question again. " + VALUE_HELP + " A retry with the same question_id and value returns the same "
            "result (replayed=true); another value for an answered id is refused. Returns the stored value, "
            "new_red_flags (danger signs this answer raised: tell the person their advice at once), the triage now "
            "and the notice. Then call next_question. Decision support, not a diagnosis."
        ),
    )
    def answer(
        consultation_id: ConsultationId,
        question_id: Annotated[
            str,
            StringConstraints(min_length=1, max_length=100),
            Field(description="The `id` of the question being answered, as next_question returned it (e.g. 'E_55@3')."),
        ],
        value: AnswerValue,
    ) -> dict[str, Any]:
        """Answer the pending question (idempotent by question id)."""
        with _tool_errors():
            result, replayed = service.answer(consultation_id, question_id, value)
            return {**result, "replayed": replayed}

    @mcp.tool(
        title="Take back the last answer",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False),
        description=(
            "Take back the last answer given during the inquiry (the findings given at the start stay). Use it when "
            "the person corrects their previous answer; then call next_question (a question asked again gets a new "
            "question id). Fails when there is nothing to undo."
        ),
    )
    def undo(consultation_id: ConsultationId) -> dict[str, Any]:
        """Take back the last answer."""
        with _tool_errors():
            return service.undo(consultation_id)

    @mcp.tool(
        title="Get the assessment",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        description=(
            "The assessment now: the differential (conditions, most likely first, with probability, ICD-10 code, "
            "role 'likely' or 'consider' = worth ruling out, and the urgency if it were that condition), the triage "
            "(level emergency, urgent_24h, see_doctor or self_care, its advice, and the danger signs and reasons "
            "behind it), short explanations, and the notice. Callable at any time; final once next_question says "
            "done. Decision support, not a diagnosis: present it as possibilities to discuss with a clinician, "
            "always with the triage advice and the notice, never as a diagnosis."
        ),
    )
    def differential(consultation_id: ConsultationId) -> dict[str, Any]:
        """Differential, triage, explanations and the notice."""
        with _tool_errors():
            return service.assessment(service.load(consultation_id))

    @mcp.tool(
        title="Explain the reasoning",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        description=(
            "Why: for each leading condition, the answers that most support it (`for`) and most oppose it "
            "(`against`), each with its likelihood ratio, and a sentence; and for the pending question, why it is "
            "asked (the leading conditions it separates, with how often the finding is present in each, and the "
            "expected information gain). Use it to explain the reasoning to the person or a clinician. Decision "
            "support, not a diagnosis."
        ),
    )
    def explain(consultation_id: ConsultationId) -> dict[str, Any]:
        """Explanations of the leading conditions and the reason for the pending question."""
        with _tool_errors():
            return _explanation(service, consultation_id)

    @mcp.tool(
        title="Search the knowledge pack",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        description=(
            "Search the loaded knowledge pack (case-insensitive; an empty query lists everything). "
            "kind='findings': symptoms and antecedents whose code, question or answer labels contain the query, "
            "with their question, type and allowed answers; use their codes in start_consultation's findings. "
            "kind='conditions': conditions whose code, name or ICD-10 code contains the query, with severity and "
            "triage level. `total` is the number of matches; at most `limit` are returned. The pack describes "
            "conditions for decision support, not a diagnosis."
        ),
    )
    def search_knowledge(
        query: Annotated[str, StringConstraints(max_length=100), Field(description="Text to look for, e.g. 'chest' or 'E_53'.")] = "",
        kind: Annotated[Literal["findings", "conditions"], Field(description="What to search: findings (default) or conditions.")] = "findings",
        limit: Annotated[int, Field(ge=1, le=200, description="At most this many items (default 20).")] = 20,
    ) -> dict[str, Any]:
        """Conditions or findings of the loaded pack that match the query."""
        with _tool_errors():
            hits = search_conditions(pack, query) if kind == "conditions" else search_findings(pack, query)
            return {"pack": {"name": pack.name, "version": pack.version}, "kind": kind, "total": len(hits), "items": hits[:limit]}

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        """Liveness for the HTTP transport: version and pack served."""
        return JSONResponse({"status": "ok", "version": __version__, "pack": {"name": pack.name, "version": pack.version}})

    return mcp


def run_stdio(server: MCPServer) -> None:
    """Serve over stdin/stdout until the client closes the connection."""
    server.run("stdio")


def _allowed(host: str) -> tuple[list[str], list[str]]:
    """Host and Origin header values accepted on a loopback listener (DNS-rebinding protection)."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    h = host.strip()
    bare = h.strip("[]")
    own = f"[{bare}]" if ":" in bare else bare
    if own not in names:
        names.append(own)
    return [f"{n}:*" for n in names], [f"http://{n}:*" for n in names]


def run_http(server: MCPServer, host: str, port: int, max_body_bytes: int = 64 * 1024) -> None:
    """Serve streamable HTTP at http://HOST:PORT/mcp (stateless: any process can answer any request)."""
    import uvicorn

    hosts, origins = _allowed(host)
    security = TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
    # Stateless: consultations live in the store, so no MCP session state needs to survive between requests.
    app = server.streamable_http_app(stateless_http=True, transport_security=security, max_request_body_size=max_body_bytes, host=host)
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
