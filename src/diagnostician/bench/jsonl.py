"""JSON Lines files of the benchmarks (utterance sets, vignettes): read with one clear error per bad line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from diagnostician.errors import CaseFileError


def read_jsonl(path: str | Path, what: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) of each non-empty line; CaseFileError naming `what`, the file and the line otherwise."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"cannot read {what} {path}: {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except ValueError as exc:
            raise CaseFileError(f"{path}:{n}: not {what}: {exc}") from exc
