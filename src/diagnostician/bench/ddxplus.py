"""Interactive DDXPlus benchmark: a simulated patient answers, the engine inquires, metrics are reported."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from diagnostician.bench.metrics import REF_THRESHOLD, summarize
from diagnostician.bench.simulator import DDXPlusPatient
from diagnostician.consult import Consultation
from diagnostician.engine import InquiryPolicy, posterior
from diagnostician.engine.inquiry import dangerous
from diagnostician.knowledge.build_ddxplus import in_fit_fold
from diagnostician.knowledge.ddxplus import DDXPlusRelease, PatientRecord
from diagnostician.knowledge.schema import Pack, load_pack

CHUNK = 64


@dataclass(frozen=True)
class BenchConfig:
    """What to run: pack, question budget, whether to compute the all-evidence ceiling."""

    pack: str = "ddxplus"
    max_questions: int = 30
    ceiling: bool = True
    confidence: float = InquiryPolicy.confidence
    review: bool = True

    def policy(self) -> InquiryPolicy:
        """The inquiry policy this run uses."""
        return InquiryPolicy(max_questions=self.max_questions, confidence=self.confidence, review=self.review)


def read_cases(pack: Pack, path: str | Path, limit: int | None = None) -> Iterator[PatientRecord]:
    """DDXPlus patient records from an English- or French-coded CSV, in the pack's codes."""
    return DDXPlusRelease.from_pack(pack).read_patients(path, limit=limit)


def _listed(assessment: Any) -> list[str]:
    return [e.code for e in assessment.differential if e.probability >= REF_THRESHOLD]


@dataclass
class Simulated:
    """A consultation played to its end by a simulated patient, with per-turn timings."""

    consultation: Consultation
    latencies_ms: list[float]  # per turn: update with the previous answer + choice of the next question
    positives: int  # questions answered 'present'


def simulate(pack: Pack, record: PatientRecord, policy: InquiryPolicy) -> Simulated:
    """Let the engine inquire until it stops, the DDXPlus patient answering every question."""
    patient = DDXPlusPatient(pack, record)
    c = Consultation.begin(record.age, record.sex, patient.opening(), pack=pack, policy=policy)
    latencies = []
    positives = 0
    t0 = time.perf_counter()
    while (q := c.next_question()) is not None:
        turn = c.answer(q.code, patient.answer(q.code))
        t1 = time.perf_counter()
        latencies.append((t1 - t0) * 1000.0)
        t0 = t1
        positives += turn.answer.is_positive(pack)
    return Simulated(c, latencies, positives)


def run_case(pack: Pack, record: PatientRecord, config: BenchConfig) -> dict[str, Any]:
    """Simulate one consultation and return what the metrics need."""
    policy = config.policy()
    sim = simulate(pack, record, policy)
    c, latencies, positives = sim.consultation, sim.latencies_ms, sim.positives
    a = c.assessment(explain_top=0)
    true = pack.condition(record.pathology)
    post = posterior(c.state)
    rival = post * dangerous(pack, policy)
    rival[int(np.argmax(post))] = 0.0
    result: dict[str, Any] = {
        "row": record.row,
        "age": record.age,
        "pathology": record.pathology,
        "rank": a.ranking.index(record.pathology),
        "top5": list(a.ranking[:5]),
        "il": c.questions_asked,
        "positives": positives,
        "listed": _listed(a),
        "reference": [n for n, p in record.differential if p >= REF_THRESHOLD],
        "triage": a.triage.level,
        "red_flags": [r.id for r in a.triage.red_flags],
        "true_triage": true.triage,
        "true_severity": true.severity,
        "latencies_ms": latencies,
        "stop_reason": c.stop_reason,
        "danger_left": float(rival.sum()),  # posterior of dangerous conditions other than the top, at the end
    }
    if config.ceiling:
        full = Consultation.begin(record.age, record.sex, DDXPlusPatient(pack, record).everything(), pack=pack)
        fa = full.assessment(explain_top=0)
        result["ceiling_rank"] = fa.ranking.index(record.pathology)
        result["ceiling_listed"] = _listed(fa)
    return result


_FOLD_PACKS: dict[tuple[str, str], list[Pack] | None] = {}


def fold_packs(pack: Pack, case_file: str) -> list[Pack] | None:
    """Pack variants whose differential model never saw a given row of case_file (None if the file was not trained on).

    The differential model is trained on the English dev file; scoring those rows with it would be
    in-sample. Its fold models (differential_folds.json) were each trained without one fold.
    """
    key = (str(pack.root), Path(case_file).name)
    if key not in _FOLD_PACKS:
        path = pack.root / "differential_folds.json" if pack.root else None
        variants = None
        if path is not None and path.exists():
            spec = json.loads(path.read_text(encoding="utf-8"))
            if spec.get("file") == Path(case_file).name:
                head = {k: v for k, v in spec.items() if k not in ("models", "file")}
                variants = [replace(pack, differential_model=dict(head, conditions=m)) for m in spec["models"]]
        _FOLD_PACKS[key] = variants
    return _FOLD_PACKS[key]


def _run_chunk(args: tuple[BenchConfig, str, list[PatientRecord]]) -> list[dict[str, Any]]:
    config, case_file, records = args
    pack = load_pack(config.pack)
    variants = fold_packs(pack, case_file)
    if variants is None:
        return [run_case(pack, r, config) for r in records]
    return [run_case(variants[r.row % len(variants)], r, config) for r in records]


def _chunks(records: list[PatientRecord], size: int) -> Iterator[list[PatientRecord]]:
    for i in range(0, len(records), size):
        yield records[i : i + size]


PEDIATRIC_AGE = 18  # years: the paediatric slice is every patient younger


def run_file(
    path: str | Path,
    config: BenchConfig = BenchConfig(),
    limit: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the benchmark on one patient file; return summary, held-out summary, config and per-case results."""
    pack = load_pack(config.pack)
    records = list(read_cases(pack, path, limit))
    workers = workers or min(os.cpu_count() or 1, 8)
    chunks = list(_chunks(records, CHUNK))
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    progress_bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress_bar = Progress(TextColumn(Path(path).name), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
        progress_bar.start()
        task = progress_bar.add_task("cases", total=len(records))
    try:
        if workers > 1 and len(chunks) > 1:
            with get_context("fork").Pool(workers) as pool:
                for part in pool.imap(_run_chunk, [(config, str(path), ch) for ch in chunks]):
                    results.extend(part)
                    if progress_bar:
                        progress_bar.advance(task, len(part))
        else:
            for ch in chunks:
                part = _run_chunk((config, str(path), ch))
                results.extend(part)
                if progress_bar:
                    progress_bar.advance(task, len(part))
    finally:
        if progress_bar:
            progress_bar.stop()
    wall = time.perf_counter() - t0
    summary = summarize(results)
    summary.update(wall_seconds=wall, cases_per_second=len(results) / wall if wall else None, workers=workers)
    name = Path(path).name
    held = [r for r in results if not in_fit_fold(name, r["row"])]
    return {
        "file": str(path),
        "summary": summary,
        "held_out": summarize(held) if held else {"cases": 0},
        # The paediatric slice (patients under 18), the same metrics reported separately.
        "pediatric": summarize(kids) if (kids := [r for r in results if r.get("age", 99) < PEDIATRIC_AGE]) else {"cases": 0},
        "fit_fold_rows": len(results) - len(held),
        "config": {
            "pack": f"{pack.name} {pack.version}",
            "max_questions": config.max_questions,
            "confidence": config.confidence,
            "review": config.review,
            "limit": limit,
            "ceiling": config.ceiling,
            "differential_model": "cross-fitted fold models (this file trained the model)" if fold_packs(pack, str(path)) else "shipped model",
        },
        "cases": results,
    }


ROWS = [
    ("cases", "cases", "{:d}"),
    ("il", "IL", "{:.2f}"),
    ("gtpa@1", "GTPA@1", "{:.4f}"),
    ("gtpa@3", "GTPA@3", "{:.4f}"),
    ("gtpa@5", "GTPA@5", "{:.4f}"),
    ("per", "PER", "{:.3f}"),
    ("ddr", "DDR", "{:.4f}"),
    ("ddp", "DDP", "{:.4f}"),
    ("ddf1", "DDF1", "{:.4f}"),
    ("emergency_recall", "emergency recall", "{:.4f}"),
    ("under_triage", "under-triage", "{:.4f}"),
    ("over_triage", "over-triage", "{:.4f}"),
    ("ended_with_danger_plausible", "ended with a dangerous rival ≥ 1 %", "{:.4f}"),
    ("ceiling_gtpa@1", "ceiling GTPA@1 (all evidence)", "{:.4f}"),
    ("ceiling_ddf1", "ceiling DDF1 (all evidence)", "{:.4f}"),
    ("turn_latency_ms_p50", "turn latency p50 (ms)", "{:.3f}"),
    ("turn_latency_ms_p99", "turn latency p99 (ms)", "{:.3f}"),
    ("cases_per_second", "cases / s", "{:.1f}"),
]


def markdown(report: dict[str, Any]) -> str:
    """A Markdown table of one file's report: all cases and held-out cases side by side."""
    s, h, k = report["summary"], report["held_out"], report.get("pediatric") or {"cases": 0}
    lines = [
        f"### {Path(report['file']).name}",
        "",
        f"pack {report['config']['pack']}, at most {report['config']['max_questions']} questions; "
        f"held-out = rows outside the pack's fit fold ({report['fit_fold_rows']} fit-fold rows); "
        f"differential model: {report['config']['differential_model']}.",
        "",
        "| metric | all cases | held-out cases | patients under 18 |",
        "|---|---|---|---|",
    ]
    for key, label, fmt in ROWS:
        a, b, c = s.get(key), h.get(key), k.get(key)
        if a is None and b is None:
            continue
        cell = lambda v: "—" if v is None else fmt.format(v)  # noqa: E731
        lines.append(f"| {label} | {cell(a)} | {cell(b)} | {cell(c)} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write <stem>.json (summary, held-out, config), <stem>.cases.jsonl and <stem>.md into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "ddxplus_" + Path(report["file"]).stem
    body = {k: v for k, v in report.items() if k != "cases"}
    js = out / f"{stem}.json"
    js.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    with (out / f"{stem}.cases.jsonl").open("w", encoding="utf-8") as fh:
        for c in report["cases"]:
            fh.write(json.dumps({k: v for k, v in c.items() if k != "latencies_ms"}) + "\n")
    md = out / f"{stem}.md"
    md.write_text(markdown(report), encoding="utf-8")
    return js, md

