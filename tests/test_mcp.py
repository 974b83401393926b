"""The MCP server through real `diagnostician mcp` processes, driven by the MCP SDK's own clients.

Over stdio the SDK's `stdio_client` spawns the server; over streamable HTTP a server process listens
on a free loopback port. Both share their SQLite store with the HTTP API's ConsultationService.
"""

from __future__ import annotations

import json
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import anyio
import httpx
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from diagnostician.api.settings import Settings
from diagnostician.cli.main import CASES_DIR, main
from diagnostician.consult import Consultation
from diagnostician.consult.cases import load_case
from diagnostician.consult.service import ConsultationService
from diagnostician.consult.store import open_store
from diagnostician.engine import NOTICE
from servers import ServerProcess

TOOLS = {"start_consultation", "next_question", "answer", "undo", "differential", "explain", "search_knowledge"}
TIMEOUT_S = 25  # per test: a hung server fails the test instead of the run


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _service(data_dir: Path, pack: Any) -> ConsultationService:
    """The HTTP API's service over the same data folder as the MCP server."""
    return ConsultationService(open_store(Settings(data_dir=data_dir).store_url), pack)


@asynccontextmanager
async def _stdio(data_dir: Path, errlog: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "diagnostician.cli.main", "mcp", "--transport", "stdio", "--data-dir", str(data_dir)],
        env={"PYTHONUNBUFFERED": "1"},
    )
    with open(errlog, "w", encoding="utf-8") as err:
        async with stdio_client(params, errlog=err) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def _call(session: ClientSession, tool: str, **args: Any) -> dict[str, Any]:
    r = await session.call_tool(tool, args)
    assert not r.is_error, r.content
    assert r.structured_content is not None and json.loads(r.content[0].text) == r.structured_content
    return r.structured_content


async def _error(session: ClientSession, tool: str, **args: Any) -> str:
    r = await session.call_tool(tool, args)
    assert r.is_error, r.structured_content
    text = r.content[0].text
    assert "\n" not in text.strip() or "validation error" in text  # our own errors are one line
    return text


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------- stdio


@pytest.mark.anyio
async def test_tools_schemas_and_descriptions(tmp_path) -> None:
    with anyio.fail_after(TIMEOUT_S):
        async with _stdio(tmp_path / "data", tmp_path / "server.log") as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    for name in TOOLS - {"undo"}:  # every tool that returns findings or conclusions says what they are
        assert "not a diagnosis" in tools[name].description, name
    assert "one question at a time" in tools["next_question"].description
    assert "question_id" in tools["next_question"].description and "`id`" in tools["next_question"].description
    answer = tools["answer"]
    for words in ("question_id", "true or false", "binary", "categorical", "scale", "multi", "a list of", "null -> don't know"):
        assert words in answer.description, words
    schema = answer.input_schema
    assert schema["required"] == ["consultation_id", "question_id", "value"]
    kinds = {alt.get("type") for alt in schema["properties"]["value"]["anyOf"]}
    assert {"boolean", "integer", "number", "string", "array", "null"} <= kinds
    assert "null -> don't know" in schema["properties"]["value"]["description"]
    assert answer.annotations.idempotent_hint is True
    start = tools["start_consultation"].input_schema
    assert start["required"] == ["age", "sex"]
    assert start["properties"]["age"]["minimum"] == 0 and start["properties"]["age"]["maximum"] == 120
    assert start["properties"]["findings"]["type"] == "object"
    search = tools["search_knowledge"].input_schema["properties"]
    assert search["kind"]["enum"] == ["findings", "conditions"] and search["kind"]["default"] == "findings"
    for name in ("next_question", "differential", "explain", "search_knowledge"):
        assert tools[name].annotations.read_only_hint is True, name
    for name in TOOLS - {"search_knowledge"}:
        assert "consultation_id" in tools[name].input_schema["properties"] or name == "start_consultation"


@pytest.mark.anyio
async def test_whole_consultation_over_stdio(tmp_path, pack) -> None:
    data = tmp_path / "data"
    case = load_case(CASES_DIR / "chest_pain.json", pack)
    local = Consultation.begin(case.age, case.sex, case.complaints, pack=pack)
    with anyio.fail_after(TIMEOUT_S):
        async with _stdio(data, tmp_path / "server.log") as session:
            assert "not a diagnosis" in session.initialize_result.instructions
            started = await _call(
                session, "start_consultation", age=case.age, sex=case.sex, findings={k: _json(v) for k, v in case.complaints.items()}
            )
            cid = started["id"]
            assert started["notice"] == NOTICE and started["questions_asked"] == 0 and not started["done"]
            asked = 0
            while True:
                step = await _call(session, "next_question", consultation_id=cid)
                expected = local.next_question()
                if step["done"]:
                    assert expected is None and step["question"] is None and step["stop_reason"]
                    break
                q = step["question"]
                assert q["finding"] == expected.code and q["id"] == f"{expected.code}@{asked}"
                assert q["text"] and q["reason"] and q["hint"] and q["answers"][-1] == {"value": None, "label": "don't know"}
                value = case.answer(pack, q["finding"])
                result = await _call(session, "answer", consultation_id=cid, question_id=q["id"], value=_json(value))
                assert result["finding"] == q["finding"] and result["notice"] == NOTICE and result["replayed"] is False
                local.answer(expected.code, value)
                asked += 1
                assert result["questions_asked"] == asked
            assert 1 <= asked <= 30
            again = await _call(session, "answer", consultation_id=cid, question_id=q["id"], value=_json(value))
            assert again["replayed"] is True and again["questions_asked"] == asked  # a retry replays, changes nothing

            a = await _call(session, "differential", consultation_id=cid)
            mine = local.assessment().to_dict()
            assert a["done"] and a["notice"] == NOTICE and a["questions_asked"] == asked
            assert [e["code"] for e in a["differential"]] == [e["code"] for e in mine["differential"]]
            assert a["triage"]["level"] == mine["triage"]["level"] and a["triage"]["advice"]
            why = await _call(session, "explain", consultation_id=cid)
            assert why["done"] and why["pending_question"] is None and why["notice"] == NOTICE
            assert why["leading"] and why["leading"][0]["text"] and why["leading"][0]["code"] == a["differential"][0]["code"]
            assert any(x["for"] for x in why["leading"])

    # The HTTP API's service reads what the MCP server stored.
    service = _service(data, pack)
    view = service.consultation_view(service.load(cid))
    assert view["done"] and view["questions_asked"] == asked and len(view["answers"]) == asked + len(case.complaints)
    assert service.assessment(service.load(cid))["differential"] == a["differential"]
    service.store.close()


@pytest.mark.anyio
async def test_errors_are_tool_errors_and_the_server_keeps_going(tmp_path, pack) -> None:
    log = tmp_path / "server.log"
    with anyio.fail_after(TIMEOUT_S):
        async with _stdio(tmp_path / "data", log) as session:
            cid = (await _call(session, "start_consultation", age=54, sex="M", findings={"E_53": True}))["id"]
            q = (await _call(session, "next_question", consultation_id=cid))["question"]
            # The patient's own words may come along: what they say is entered, what was read comes back.
            worded = await _call(session, "start_consultation", age=30, sex="F", text="bad cough, no fever")
            assert {a["finding"]: a["value"] for a in worded["answers"]} == {"E_201": True, "E_91": False}
            assert {f["code"] for f in worded["intake"]["findings"]} == {"E_201", "E_91"}

            text = await _error(session, "answer", consultation_id=cid, question_id="E_1@0", value=True)
            assert "wrong question id" in text and q["id"] in text and "next_question" in text
            text = await _error(session, "next_question", consultation_id="no-such-consultation")
            assert "unknown consultation" in text and "no-such-consultation" in text
            text = await _error(session, "answer", consultation_id="no-such-consultation", question_id=q["id"], value=None)
            assert "unknown consultation" in text
            text = await _error(session, "answer", consultation_id=cid, question_id=q["id"], value="zebra-secret-answer")
            assert "bad value" in text and "null = don't know" in text
            text = await _error(session, "answer", consultation_id=cid, question_id=q["id"], value=["V_no_such_value"])
            assert "bad value" in text
            text = await _error(session, "answer", consultation_id=cid, question_id=q["id"], value={"a": 1})
            assert "validation error" in text and "value" in text  # the SDK checks the input schema
            text = await _error(session, "start_consultation", age=54, sex="M", findings={"E_999": True})
            assert "unknown code" in text and "E_999" in text and "search_knowledge" in text
            text = await _error(session, "start_consultation", age=54, sex="X")
            assert "invalid input" in text and "sex" in text
            text = await _error(session, "start_consultation", age=300, sex="F")
            assert "age" in text
            text = await _error(session, "undo", consultation_id=cid)
            assert "not possible now" in text and "nothing to undo" in text

            # The server is still there, nothing was recorded by the refused calls, and 'null' means don't know.
            assert (await _call(session, "next_question", consultation_id=cid))["question"]["id"] == q["id"]
            result = await _call(session, "answer", consultation_id=cid, question_id=q["id"], value="null")
            assert result["value"] is None and result["text"].endswith("don't know")
            text = await _error(session, "answer", consultation_id=cid, question_id=q["id"], value=["V_29"])
            assert "answer conflict" in text  # the same id with another value
            undone = await _call(session, "undo", consultation_id=cid)
            assert undone["undone"]["finding"] == q["finding"] and undone["questions_asked"] == 0
            again = (await _call(session, "next_question", consultation_id=cid))["question"]
            assert again["finding"] == q["finding"] and again["id"] != q["id"]  # asked anew under a new id
            text = await _error(session, "answer", consultation_id=cid, question_id=q["id"], value=None)
            assert "answer conflict" in text and "undo" in text  # the old id was taken back

            found = await _call(session, "search_knowledge", query="E_53", kind="findings")
            assert found["total"] == 1 and found["items"][0]["code"] == "E_53"
            conditions = await _call(session, "search_knowledge", query="pneumonia", kind="conditions")
            assert conditions["total"] >= 1 and all("pneumonia" in c["name"].lower() for c in conditions["items"])
            assert len((await _call(session, "search_knowledge", limit=5))["items"]) == 5
    assert "zebra" not in log.read_text(encoding="utf-8", errors="replace")  # answers stay out of the server's log


@pytest.mark.anyio
async def test_an_unexpected_error_is_an_internal_tool_error_without_its_message(tmp_path, pack, caplog) -> None:
    from mcp import Client

    from diagnostician.mcp_server import create_server

    class Broken(ConsultationService):
        def load(self, consultation_id: str) -> Any:
            raise RuntimeError("patient said " + "ze" + "bra")  # split so the traceback's source line does not hold it

    service = Broken(open_store(Settings(data_dir=tmp_path).store_url), pack)
    with anyio.fail_after(TIMEOUT_S):
        async with Client(create_server(service), mode="legacy") as client:
            r = await client.call_tool("differential", {"consultation_id": "x"})
            assert r.is_error and "internal error" in r.content[0].text and "zebra" not in r.content[0].text
            assert not (await client.call_tool("search_knowledge", {"query": "cough"})).is_error  # still serving
    assert "RuntimeError" in caplog.text and "zebra" not in caplog.text
    service.store.close()


# ---------------------------------------------------------------- streamable HTTP


class HttpServer(ServerProcess):
    """A `diagnostician mcp --transport http` process on a free loopback port."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        super().__init__(["mcp", "--transport", "http"], "/health", data_dir, log, timeout_s=20)


@pytest.fixture
def http_server(tmp_path) -> Iterator[HttpServer]:
    srv = HttpServer(tmp_path / "data", tmp_path / "server.log")
    yield srv
    srv.stop()


@pytest.mark.anyio
async def test_streamable_http_shares_the_store_with_the_http_api(http_server, tmp_path, pack) -> None:
    service = _service(tmp_path / "data", pack)
    from_api = service.create(30, "F", {"E_53": True})  # as POST /v1/consultations would
    with anyio.fail_after(TIMEOUT_S):
        async with streamable_http_client(http_server.url + "/mcp") as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                assert {t.name for t in (await session.list_tools()).tools} == TOOLS
                started = await _call(session, "start_consultation", age=54, sex="M", findings={"E_53": True})
                cid = started["id"]
                q = (await _call(session, "next_question", consultation_id=cid))["question"]
                result = await _call(session, "answer", consultation_id=cid, question_id=q["id"], value=None)
                assert result["questions_asked"] == 1 and result["notice"] == NOTICE
                a = await _call(session, "differential", consultation_id=cid)
                assert a["differential"] and a["triage"]["level"] and a["notice"] == NOTICE and a["questions_asked"] == 1
                text = await _error(session, "next_question", consultation_id="no-such-consultation")
                assert "unknown consultation" in text
                # A consultation begun through the HTTP API's service continues over MCP.
                other = await _call(session, "next_question", consultation_id=from_api.id)
                assert other["question"]["id"] == service.question(service.load(from_api.id))["question"]["id"]
    # …and the one begun over MCP is there for the HTTP API.
    view = service.consultation_view(service.load(cid))
    assert view["questions_asked"] == 1 and view["answers"][-1]["finding"] == q["finding"] and view["answers"][-1]["value"] is None
    service.store.close()
    # DNS-rebinding protection: a page on another site cannot reach the loopback server through its own name.
    r = httpx.post(http_server.url + "/mcp", json={}, headers={"Host": "evil.example", "Accept": "application/json, text/event-stream"})
    assert r.status_code == 421


# ---------------------------------------------------------------- command line


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.org"])
def test_mcp_http_refuses_non_loopback(host, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["mcp", "--transport", "http", "--host", host])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "loopback" in err


def test_mcp_bad_port_and_pack_are_one_line_errors(tmp_path, capsys) -> None:
    for argv in (["mcp", "--transport", "http", "--port", "0"], ["mcp", "--pack", "no-such-pack", "--data-dir", str(tmp_path)]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ")
