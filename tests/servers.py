"""A `diagnostician` server subprocess on a free loopback port, for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx


class ServerProcess:
    """Runs `python -m diagnostician.cli.main <args> --port N --data-dir DIR` and waits for its health URL.

    With `data_dir` None there is no --data-dir, so `env` (added to the environment) may name the database.
    """

    def __init__(
        self,
        args: list[str],
        health_path: str,
        data_dir: Path | None,
        log: Path,
        timeout_s: float = 30.0,
        env: dict[str, str] | None = None,
        command: Callable[[int], list[str]] | None = None,
    ) -> None:
        """Start it; `command` (port → argv) runs another program than `diagnostician` the same way."""
        self.data_dir, self.log = data_dir, log
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        extra = env or {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIAGNOSTICIAN_")}
        env.update(extra, PYTHONUNBUFFERED="1")
        cmd = command(self.port) if command else [sys.executable, "-m", "diagnostician.cli.main", *args, "--port", str(self.port)]
        if data_dir is not None:
            cmd += ["--data-dir", str(data_dir)]
        self.log_file = open(log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, env=env)
        self._wait_ready(health_path, timeout_s)

    def _wait_ready(self, health_path: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text(errors='replace')}")
            try:
                if httpx.get(self.url + health_path, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout_s} s:\n{self.log.read_text(errors='replace')}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL to simulate a crash) and close its log."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log_file.close()


class ApiServer(ServerProcess):
    """A `diagnostician serve` process on a free loopback port."""

    def __init__(self, data_dir: Path, log: Path, args: tuple[str, ...] = ()) -> None:
        super().__init__(["serve", *args], "/v1/health", data_dir, log)
