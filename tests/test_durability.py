"""Durability: a real server under concurrent clients is killed with SIGKILL mid-run and restarted.

Every answer the server acknowledged (a 2xx reply) must still be there after the restart, and every
consultation must run to its end: a client whose reply was lost retries the same question id, which
is safe because answers are idempotent by question id (nothing is applied twice).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from diagnostician.cli.main import CASES_DIR
from diagnostician.consult.cases import Case, load_case
from servers import ServerProcess

CLIENTS = 8
PATIENTS_PER_CLIENT = 3  # the demo cases take about 18 questions each: ~430 answers in all
KILL_AFTER_ACKS = 200  # "some hundreds" of acknowledged answers before the kill, well short of all
WAIT_S = 30.0  # generous bound on every wait, so a broken server fails the test instead of hanging it


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass
class Run:
    """What the clients share: the server's current URL, whether it is up, and what it acknowledged."""

    url: str
    up: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # consultation id -> answer results, in order
    ack_count: int = 0
    enough: threading.Event = field(default_factory=threading.Event)
    transport_errors: int = 0
    replays: int = 0
    errors: list[str] = field(default_factory=list)

    def request(self, client: dict[str, httpx.Client], method: str, path: str, **kw: Any) -> httpx.Response:
        """Send until a reply comes; a transport error (server killed) waits for the restart and sends again.

        `client` holds this thread's connection to the current URL (one per thread: creating an httpx
        client per request is slow)."""
        for _ in range(50):
            if not self.up.wait(WAIT_S):
                raise TimeoutError("the server did not come back")
            url = self.url
            if url not in client:
                for old in client.values():
                    old.close()
                client.clear()
                client[url] = httpx.Client(base_url=url, timeout=WAIT_S)
            try:
                return client[url].request(method, path, **kw)
            except httpx.TransportError:
                with self.lock:
                    self.transport_errors += 1
                self.up.wait(WAIT_S)  # the main thread clears `up` before the kill and sets it after the restart
                time.sleep(0.05)
        raise RuntimeError(f"{method} {path}: no reply after 50 tries")


def _patient(run: Run, client: dict[str, httpx.Client], case: Case, pack: Any) -> None:
    """One consultation to its end, recording every acknowledged answer."""
    findings = {k: _json(v) for k, v in case.complaints.items()}
    r = run.request(client, "POST", "/v1/consultations", json={"age": case.age, "sex": case.sex, "findings": findings})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    with run.lock:
        run.acked[cid] = []
    for _ in range(100):
        r = run.request(client, "GET", f"/v1/consultations/{cid}/question")
        assert r.status_code == 200, r.text
        step = r.json()
        if step["done"]:
            return
        q = step["question"]
        value = _json(case.answer(pack, q["finding"]))
        r = run.request(client, "POST", f"/v1/consultations/{cid}/answers", json={"question_id": q["id"], "value": value})
        assert r.status_code == 200, (q["id"], r.status_code, r.text)
        result = r.json()
        assert result["question_id"] == q["id"] and result["finding"] == q["finding"]
        with run.lock:
            run.acked[cid].append(result)
            run.ack_count += 1
            run.replays += r.headers.get("idempotent-replayed") == "true"
            if run.ack_count >= KILL_AFTER_ACKS:
                run.enough.set()
    raise AssertionError(f"consultation {cid} did not end within 100 questions")


def _client(run: Run, cases: list[Case], pack: Any) -> None:
    client: dict[str, httpx.Client] = {}
    try:
        for case in cases:
            _patient(run, client, case, pack)
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        with run.lock:
            run.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        for c in client.values():
            c.close()


def _stored(url: str, cid: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The inquiry answers (not the initial findings) the server has for a consultation, and the whole view."""
    r = httpx.get(f"{url}/v1/consultations/{cid}", timeout=WAIT_S)
    assert r.status_code == 200, r.text
    view = r.json()
    return [a for a in view["answers"] if not a["initial"]], view


def test_acknowledged_answers_survive_sigkill_and_consultations_continue(tmp_path: Path, pack) -> None:
    demo = [load_case(p, pack) for p in sorted(CASES_DIR.glob("*.json"))]
    assert demo
    data = tmp_path / "data"
    server = ServerProcess(["serve"], "/v1/health", data, tmp_path / "server.log")
    run = Run(server.url)
    run.up.set()
    threads = [
        threading.Thread(target=_client, args=(run, [demo[(i + k) % len(demo)] for k in range(PATIENTS_PER_CLIENT)], pack), daemon=True)
        for i in range(CLIENTS)
    ]
    try:
        for t in threads:
            t.start()
        assert run.enough.wait(WAIT_S), f"only {run.ack_count} answers acknowledged; errors: {run.errors}"

        # Crash: no shutdown, no flush; whatever was acknowledged must already be on disk.
        run.up.clear()
        server.stop(signal.SIGKILL)
        assert server.proc.returncode == -signal.SIGKILL
        # No reply can come from a dead process: this is what was acknowledged before the kill, but for at
        # most one reply per client that arrived and is not yet recorded (covered by the "+1" below).
        with run.lock:
            before = {cid: list(results) for cid, results in run.acked.items()}
            acked_before = run.ack_count

        server = ServerProcess(["serve"], "/v1/health", data, tmp_path / "server.log")
        # Before any client resumes: every acknowledged answer is there, in order, and at most one more per
        # consultation (an answer committed whose reply the kill swallowed).
        unfinished = 0
        for cid, results in before.items():
            stored, view = _stored(server.url, cid)
            assert [(a["finding"], a["value"]) for a in stored[: len(results)]] == [(r["finding"], r["value"]) for r in results], cid
            assert len(stored) - len(results) in (0, 1), (cid, len(stored), len(results))
            unfinished += not view["done"]
        assert unfinished, "the kill came after every consultation had ended; it was meant to come mid-run"

        run.url = server.url
        run.up.set()
        for t in threads:
            t.join(WAIT_S)
        assert not any(t.is_alive() for t in threads), "a client did not finish"
        assert not run.errors, run.errors
        assert run.ack_count > acked_before
        print(f"acknowledged {acked_before} answers before the kill, {run.ack_count} in all; {unfinished} consultations "
              f"unfinished at the kill; {run.transport_errors} transport errors, {run.replays} idempotent replays")

        # Every consultation ran to its end; the server holds exactly the answers acknowledged, each once.
        assert len(run.acked) >= CLIENTS * PATIENTS_PER_CLIENT
        for cid, results in run.acked.items():
            stored, view = _stored(server.url, cid)
            assert view["done"] and view["stop_reason"], cid
            assert [(a["finding"], a["value"]) for a in stored] == [(r["finding"], r["value"]) for r in results], cid
            assert view["questions_asked"] == len(results) == len({r["question_id"] for r in results})
            assert [r["questions_asked"] for r in results] == list(range(1, len(results) + 1)), cid
            audit = httpx.get(f"{server.url}/v1/consultations/{cid}/audit", timeout=WAIT_S).json()["entries"]
            assert [e["finding"] for e in audit if e["action"] == "answer"] == [r["finding"] for r in results], cid
            assert httpx.get(f"{server.url}/v1/consultations/{cid}/assessment", timeout=WAIT_S).status_code == 200
    finally:
        run.up.set()  # never leave a client waiting
        server.stop()
