"""JSON Lines files of the benchmarks: inputs read with one clear error per bad line, case logs that resume."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from diagnostician.errors import CaseFileError

T = TypeVar("T")


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


def run_logged(
    items: Iterable[T],
    key: Callable[[T], str],
    run_one: Callable[[T], dict[str, Any]],
    out_dir: str | Path | None = None,
    redo: Callable[[dict[str, Any]], bool] = lambda row: False,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> tuple[list[dict[str, Any]], int]:
    """Run each item, or take its row from out_dir/cases.jsonl when a previous run finished it; (rows, how many were new).

    Each new row is appended and flushed as soon as it is done, so an interruption loses at most the
    cases in progress; a cut last line, and rows that `redo` says failed (a server was down), are run
    again. With workers > 1, that many cases run at once in threads (for agents behind a server; rows
    come back in the items' order).
    """
    out = Path(out_dir) if out_dir is not None else None
    done: dict[str, dict[str, Any]] = {}
    if out is not None and (out / "cases.jsonl").exists():
        for line in (out / "cases.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                if not redo(row):
                    done[row["id"]] = row
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    rows: list[dict[str, Any]] = []
    new = 0
    sink = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        sink = (out / "cases.jsonl").open("a", encoding="utf-8")
    items = list(items)
    lock = threading.Lock()
    finished = 0

    def one(item: T) -> dict[str, Any]:
        nonlocal new, finished
        row = done.get(key(item))
        fresh = row is None
        if row is None:
            row = run_one(item)
        with lock:  # one writer at a time, and the progress count in step
            if fresh:
                new += 1
                if sink is not None:
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
            finished += 1
            if progress is not None:
                progress(finished)
        return row

    try:
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                rows = list(pool.map(one, items))
        else:
            rows = [one(item) for item in items]
    finally:
        if sink is not None:
            sink.close()
    return rows, new
