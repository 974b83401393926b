"""Load benchmark of the HTTP API: N concurrent simulated patients through `diagnostician serve`.

Not a test: it prints figures (throughput, p50/p99 latency per endpoint) and never fails on time.

    python benchmarks/load.py --patients 200 --concurrency 16
    python benchmarks/load.py --cases ../shared/data/ddxplus/patients_test_en_dev.csv --patients 500 --json out.json
    python benchmarks/load.py --url http://127.0.0.1:8000          # a server you started yourself

Unless --url is given it starts its own `diagnostician serve` on a free loopback port, with a
fresh SQLite database in a temporary folder (or the store named by --database-url, passed to the
server as DIAGNOSTICIAN_DATABASE_URL). Only loopback URLs are accepted. Each simulated patient
creates a consultation with its opening findings, answers every question until the inquiry is
done, then fetches the assessment. Patients come from a DDXPlus CSV (--cases) or cycle through
the demo cases shipped in the package. The run is bounded by --patients and --max-seconds; the
clients run in this process (threads), so on a small machine they share the cores with the server.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from diagnostician.api.settings import is_loopback  # the server's own rule for "this machine"

ENDPOINTS = ("create", "question", "answer", "assessment")


class Patient:
    """Opening findings and an answer to each question, as the API takes them (lists, not tuples)."""

    def __init__(self, age: float, sex: str, opening: dict[str, Any], answer: Callable[[str], Any]) -> None:
        self.age, self.sex, self.opening, self._answer = age, sex, {k: _json(v) for k, v in opening.items()}, answer

    def answer(self, code: str) -> Any:
        return _json(self._answer(code))


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def patients(cases: str | None, count: int, pack_name: str) -> list[Patient]:
    """`count` patients: rows of a DDXPlus CSV, or the shipped demo cases over and over."""
    from diagnostician.knowledge.schema import load_pack

    pack = load_pack(pack_name)
    if cases:
        from diagnostician.bench.ddxplus import read_cases
        from diagnostician.bench.simulator import DDXPlusPatient

        out = []
        for record in read_cases(pack, cases, limit=count):
            sim = DDXPlusPatient(pack, record)
            out.append(Patient(record.age, record.sex, sim.opening(), sim.answer))
        if not out:
            raise SystemExit(f"error: no patients in {cases}")
        return out
    from diagnostician.cli.main import CASES_DIR
    from diagnostician.consult.cases import load_case

    demo = [load_case(p, pack) for p in sorted(CASES_DIR.glob("*.json"))]
    return [
        Patient(c.age, c.sex, c.complaints, lambda code, c=c: c.answer(pack, code))
        for c in itertools.islice(itertools.cycle(demo), count)
    ]


class Server:
    """`diagnostician serve` on a free loopback port, with its own temporary data folder."""

    def __init__(self, database_url: str | None, workers: int, timeout_s: float = 60.0) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="diagnostician-load-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIAGNOSTICIAN_")}
        env["DIAGNOSTICIAN_DATA_DIR"] = self.tmp.name
        if database_url:
            env["DIAGNOSTICIAN_DATABASE_URL"] = database_url  # no --data-dir: it would override the URL
        cmd = [sys.executable, "-m", "diagnostician.cli.main", "serve", "--port", str(port), "--workers", str(workers)]
        self.log = open(Path(self.tmp.name) / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                self.log.close()
                raise SystemExit("error: the server exited at start:\n" + (Path(self.tmp.name) / "server.log").read_text(errors="replace"))
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"error: the server was not ready after {timeout_s:.0f} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.log.close()
        self.tmp.cleanup()


class Recorder:
    """Latencies per endpoint and errors, shared by the client threads."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {e: [] for e in ENDPOINTS}
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()

    def call(self, client: httpx.Client, endpoint: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            r = client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self._error(f"{endpoint}: {type(exc).__name__}")
            return None
        ms = (time.perf_counter() - t0) * 1000
        with self.lock:
            self.latency[endpoint].append(ms)
        if not r.is_success:
            self._error(f"{endpoint}: HTTP {r.status_code}")
            return None
        return r

    def _error(self, what: str) -> None:
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1


def run_patient(client: httpx.Client, rec: Recorder, p: Patient, max_turns: int = 250) -> bool:
    """One consultation from start to assessment; False if a request failed."""
    r = rec.call(client, "create", "POST", "/v1/consultations", json={"age": p.age, "sex": p.sex, "findings": p.opening})
    if r is None:
        return False
    cid = r.json()["id"]
    for _ in range(max_turns):
        r = rec.call(client, "question", "GET", f"/v1/consultations/{cid}/question")
        if r is None:
            return False
        step = r.json()
        if step["done"]:
            break
        q = step["question"]
        body = {"question_id": q["id"], "value": p.answer(q["finding"])}
        if rec.call(client, "answer", "POST", f"/v1/consultations/{cid}/answers", json=body) is None:
            return False
    else:
        return False
    return rec.call(client, "assessment", "GET", f"/v1/consultations/{cid}/assessment") is not None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))]


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    todo = patients(args.cases, args.patients, args.pack)
    server = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        server = Server(args.database_url, args.workers)
        url = server.url
    rec = Recorder()
    work: queue.Queue[Patient] = queue.Queue()
    for p in todo:
        work.put(p)
    done = [0, 0]  # finished, failed
    lock = threading.Lock()
    t0 = time.perf_counter()
    deadline = t0 + args.max_seconds

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=args.timeout) as client:
            while time.perf_counter() < deadline:
                try:
                    p = work.get_nowait()
                except queue.Empty:
                    return
                ok = run_patient(client, rec, p)
                with lock:
                    done[0 if ok else 1] += 1

    try:
        threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        if server is not None:
            server.stop()
    requests = sum(len(v) for v in rec.latency.values())
    return {
        "url": "own server" if server is not None else url,
        "store": ("DIAGNOSTICIAN_DATABASE_URL" if args.database_url else "SQLite (temporary data folder)") if server is not None else "as configured",
        "server_workers": args.workers if server is not None else None,
        "patients_source": args.cases or "shipped demo cases",
        "patients_planned": len(todo),
        "concurrency": args.concurrency,
        "consultations_completed": done[0],
        "consultations_failed": done[1],
        "stopped_by_time_limit": work.qsize() > 0,
        "wall_seconds": round(wall, 3),
        "consultations_per_s": round(done[0] / wall, 2) if wall else None,
        "requests": requests,
        "requests_per_s": round(requests / wall, 1) if wall else None,
        "errors": rec.errors,
        "latency_ms": {
            e: {
                "count": len(v),
                "p50": round(percentile(v, 50), 2),
                "p99": round(percentile(v, 99), 2),
                "max": round(max(v), 2),
            }
            for e, v in rec.latency.items()
            if v
        },
        "machine": machine(),
    }


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Load: {r['consultations_completed']} consultations ({r['consultations_failed']} failed) from {r['patients_source']}, "
        f"{r['concurrency']} concurrent clients, server: {r['url']}, store: {r['store']}"
        + (f", {r['server_workers']} worker(s)" if r["server_workers"] else ""),
        f"Throughput: {r['consultations_per_s']} consultations/s, {r['requests_per_s']} requests/s "
        f"({r['requests']} requests in {r['wall_seconds']} s{', stopped by --max-seconds' if r['stopped_by_time_limit'] else ''})",
        "",
        "| endpoint | requests | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for e, s in r["latency_ms"].items():
        lines.append(f"| {e} | {s['count']} | {s['p50']:.1f} | {s['p99']:.1f} | {s['max']:.1f} |")
    if r["errors"]:
        lines += ["", "Errors: " + ", ".join(f"{k} × {v}" for k, v in sorted(r["errors"].items()))]
    lines += ["", f"Machine: {m['cores']} cores ({m['cpu']}), Python {m['python']}, {m['platform']}"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=200, help="simulated patients (consultations), default 200")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent clients, default 16")
    ap.add_argument("--url", help="a running server on loopback (default: start one on a free port)")
    ap.add_argument("--cases", help="DDXPlus CSV to draw patients from (default: the shipped demo cases)")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="stop starting new patients after this long, default 300")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds, default 30")
    ap.add_argument("--workers", type=int, default=1, help="worker processes of the server this script starts, default 1")
    ap.add_argument("--database-url", help="store for the server this script starts (passed as DIAGNOSTICIAN_DATABASE_URL)")
    ap.add_argument("--pack", default="ddxplus", help="knowledge pack the patients are read with, default ddxplus")
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON to this file")
    args = ap.parse_args(argv)
    if args.patients < 1 or args.concurrency < 1 or args.workers < 1 or args.max_seconds <= 0:
        ap.error("--patients, --concurrency and --workers must be at least 1, --max-seconds positive")
    if args.url:
        parts = urlsplit(args.url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not is_loopback(parts.hostname):
            ap.error(f"--url must be an http(s) URL on loopback (127.0.0.1, ::1, localhost), got {args.url!r}")
        if args.database_url:
            ap.error("--database-url only applies to the server this script starts (not with --url)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if report["consultations_completed"] else 1


if __name__ == "__main__":
    sys.exit(main())
