"""The DDXPlus benchmark: metric definitions on hand-made cases, the simulated patient, and real-data runs.

Real-data tests check correctness (keys, ranges, consistency, issue targets), never wall-clock speed.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EN_DEV, FR_TEST, needs_shared

from diagnostician.bench.ddxplus import BenchConfig, markdown, read_cases, run_file, write_report
from diagnostician.bench.metrics import REF_THRESHOLD, set_scores, summarize
from diagnostician.bench.simulator import DDXPlusPatient
from diagnostician.consult import Consultation
from diagnostician.errors import UnknownFindingError
from diagnostician.knowledge.build_ddxplus import in_fit_fold
from diagnostician.knowledge.ddxplus import PatientRecord
from diagnostician.knowledge.schema import BINARY, CATEGORICAL, MULTI, TRIAGE_LEVELS

SUMMARY_KEYS = {
    "il",
    "gtpa@1",
    "gtpa@3",
    "gtpa@5",
    "per",
    "ddr",
    "ddp",
    "ddf1",
    "emergency_recall",
    "under_triage",
    "turn_latency_ms_p50",
    "turn_latency_ms_p99",
    "cases_per_second",
}


# ---------------------------------------------------------------- set_scores


@pytest.mark.parametrize(
    "pred,ref,want",
    [
        (["a", "b", "c"], ["a", "b"], (1.0, 2 / 3, 0.8)),  # 2 of 3 predicted are right, both reference found
        (["a"], ["a", "b", "c", "d"], (0.25, 1.0, 0.4)),
        (["a", "b"], ["b", "c"], (0.5, 0.5, 0.5)),
        (["x"], ["y"], (0.0, 0.0, 0.0)),
        (["a", "b"], ["a", "b"], (1.0, 1.0, 1.0)),
        ([], [], (1.0, 1.0, 1.0)),  # nothing expected, nothing predicted: perfect
        (["a", "a", "b"], ["a"], (1.0, 0.5, 2 / 3)),  # duplicates count once
    ],
)
def test_set_scores_by_hand(pred: list[str], ref: list[str], want: tuple[float, float, float]) -> None:
    assert set_scores(pred, ref) == pytest.approx(want)


def test_set_scores_empty_prediction_against_reference() -> None:
    r, p, f = set_scores([], ["a", "b"])
    assert r == 0.0 and f == 0.0


def test_set_scores_accepts_iterables() -> None:
    assert set_scores(iter(["a", "b"]), ("b", "c")) == pytest.approx((0.5, 0.5, 0.5))


# ---------------------------------------------------------------- summarize


def _case(rank, il, positives, listed, reference, triage, true_triage, severity, latencies, **extra) -> dict[str, Any]:
    return {
        "rank": rank,
        "il": il,
        "positives": positives,
        "listed": listed,
        "reference": reference,
        "triage": triage,
        "true_triage": true_triage,
        "true_severity": severity,
        "latencies_ms": latencies,
        **extra,
    }


@pytest.fixture
def fake_cases() -> list[dict[str, Any]]:
    """Four patients whose metrics are worked out by hand below."""
    return [
        # A: right first, severe, triaged emergency as it should be. DD: r=1, p=2/3
        _case(0, 10, 4, ["a", "b", "c"], ["a", "b"], "emergency", "emergency", 1, [1.0, 2.0], ceiling_rank=0, ceiling_listed=["a", "b"]),
        # B: third, severe, under-triaged (see_doctor for an urgent_24h condition). DD: r=1/4, p=1
        _case(2, 20, 5, ["a"], ["a", "b", "c", "d"], "see_doctor", "urgent_24h", 2, [3.0], ceiling_rank=1, ceiling_listed=["a", "b", "c", "d"]),
        # C: fifth, not severe, over-triaged (urgent_24h for a see_doctor condition). DD: r=0, p=0
        _case(4, 0, 0, ["x"], ["y"], "urgent_24h", "see_doctor", 3, []),
        # D: eighth, mild, exact triage. DD: both empty -> r=p=1
        _case(7, 30, 6, [], [], "self_care", "self_care", 5, [4.0]),
    ]


def test_summarize_by_hand(fake_cases: list[dict[str, Any]]) -> None:
    s = summarize(fake_cases)
    assert s["cases"] == 4
    assert s["il"] == pytest.approx((10 + 20 + 0 + 30) / 4)
    assert s["gtpa@1"] == pytest.approx(1 / 4)  # rank 0
    assert s["gtpa@3"] == pytest.approx(2 / 4)  # ranks 0, 2
    assert s["gtpa@5"] == pytest.approx(3 / 4)  # ranks 0, 2, 4
    assert s["per"] == pytest.approx((4 + 5 + 0 + 6) / (10 + 20 + 0 + 30))  # pooled positives / pooled questions

    ddr = (1.0 + 0.25 + 0.0 + 1.0) / 4
    ddp = (2 / 3 + 1.0 + 0.0 + 1.0) / 4
    assert s["ddr"] == pytest.approx(ddr)
    assert s["ddp"] == pytest.approx(ddp)
    assert s["ddf1"] == pytest.approx(2 * ddr * ddp / (ddr + ddp))  # harmonic mean of the averages (≈ 0.6102)
    per_patient = (0.8 + 0.4 + 0.0 + 1.0) / 4
    assert s["ddf1_per_patient"] == pytest.approx(per_patient)
    assert s["ddf1"] != pytest.approx(per_patient)  # the two definitions really differ here
    assert s["differential_size"] == pytest.approx((3 + 1 + 1 + 0) / 4)
    assert s["reference_size"] == pytest.approx((2 + 4 + 1 + 0) / 4)

    # severity 1-2: A (emergency: caught) and B (see_doctor: missed)
    assert s["severe_cases"] == 2
    assert s["emergency_recall"] == pytest.approx(0.5)
    assert s["under_triage"] == pytest.approx(1 / 4)  # B
    assert s["over_triage"] == pytest.approx(1 / 4)  # C
    assert s["triage_exact"] == pytest.approx(2 / 4)  # A, D

    pooled = [1.0, 2.0, 3.0, 4.0]
    assert s["turns"] == 4
    assert s["turn_latency_ms_p50"] == pytest.approx(2.5)
    assert s["turn_latency_ms_p99"] == pytest.approx(float(np.percentile(pooled, 99)))

    assert s["ceiling_gtpa@1"] == pytest.approx(0.5)  # only A and B carry a ceiling; A is first
    assert s["ceiling_ddf1"] == pytest.approx(1.0)


def test_summarize_urgent_triage_counts_for_emergency_recall() -> None:
    """Emergency recall accepts 'urgent_24h' as well as 'emergency' for a severity 1-2 condition."""
    cases = [
        _case(0, 5, 1, ["a"], ["a"], "urgent_24h", "emergency", 1, [1.0]),
        _case(0, 5, 1, ["a"], ["a"], "emergency", "emergency", 2, [1.0]),
        _case(0, 5, 1, ["a"], ["a"], "see_doctor", "see_doctor", 3, [1.0]),
    ]
    s = summarize(cases)
    assert s["severe_cases"] == 2
    assert s["emergency_recall"] == 1.0
    assert s["under_triage"] == pytest.approx(1 / 3)  # urgent_24h for an emergency condition is still under-triage


def test_summarize_edge_cases() -> None:
    assert summarize([]) == {"cases": 0}
    mild = [_case(1, 3, 0, ["a"], [], "self_care", "self_care", 4, [0.5])]
    s = summarize(mild)
    assert s["emergency_recall"] is None and s["severe_cases"] == 0
    assert "ddr" not in s and "ddf1" not in s  # no reference differential anywhere: DD metrics are not defined
    assert s["per"] == 0.0 and s["gtpa@1"] == 0.0 and s["gtpa@3"] == 1.0
    zero_q = [_case(0, 0, 0, ["a"], ["a"], "emergency", "emergency", 1, [])]
    s = summarize(zero_q)
    assert s["il"] == 0.0 and s["per"] == 0.0  # no division by zero
    assert "turn_latency_ms_p50" not in s


def test_summarize_is_order_independent(fake_cases: list[dict[str, Any]]) -> None:
    a, b = summarize(fake_cases), summarize(list(reversed(fake_cases)))
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k]), k


# ---------------------------------------------------------------- simulated patient


def _first(pack, kind: str, exclude: set[str] = frozenset(), antecedent: bool | None = None):
    for f in pack.findings:
        if f.kind == kind and f.code not in exclude and (antecedent is None or f.antecedent == antecedent):
            return f
    raise AssertionError(f"no {kind} finding in the pack")


@pytest.fixture
def record(pack) -> PatientRecord:
    scale = pack.finding("E_56")
    multi = pack.finding("E_55")
    assert scale.kind == CATEGORICAL and multi.kind == MULTI
    return PatientRecord(
        age=54,
        sex="M",
        pathology=pack.conditions[0].code,
        initial_evidence="E_53",
        evidences={"E_53": True, "E_91": True, "E_56": scale.values[7], "E_55": (multi.values[3], multi.values[5])},
        differential=((pack.conditions[0].code, 0.8), (pack.conditions[1].code, 0.2)),
        row=7,
    )


def test_patient_binary_present_and_absent(pack, record: PatientRecord) -> None:
    pt = DDXPlusPatient(pack, record)
    assert pt.answer("E_91") is True
    assert pt.answer("E_53") is True
    absent = _first(pack, BINARY, exclude=set(record.evidences))
    assert pt.answer(absent.code) is False


def test_patient_categorical_value_and_default(pack, record: PatientRecord) -> None:
    pt = DDXPlusPatient(pack, record)
    assert pt.answer("E_56") == pack.finding("E_56").values[7]
    other = _first(pack, CATEGORICAL, exclude=set(record.evidences))
    assert other.default in other.values
    assert pt.answer(other.code) == other.default


def test_patient_multi_value_and_default(pack, record: PatientRecord) -> None:
    pt = DDXPlusPatient(pack, record)
    assert pt.answer("E_55") == record.evidences["E_55"]
    other = _first(pack, MULTI, exclude=set(record.evidences))
    assert pt.answer(other.code) == (other.default,)


def test_patient_opening_everything_and_unknown(pack, record: PatientRecord) -> None:
    pt = DDXPlusPatient(pack, record)
    assert pt.opening() == {"E_53": True}
    everything = pt.everything()
    assert set(everything) == {f.code for f in pack.findings}
    assert sum(v is True for v in everything.values()) == 2  # E_53 and E_91 are the only binary positives
    # every answer the simulator gives is one the engine accepts
    c = Consultation.begin(record.age, record.sex, everything, pack=pack)
    assert len(c.state.answers) == len(pack.findings)
    with pytest.raises(UnknownFindingError):
        pt.answer("E_9999")


# ---------------------------------------------------------------- real data


def _check_summary(s: dict[str, Any], n: int, max_questions: int = 30) -> None:
    assert SUMMARY_KEYS <= set(s), SUMMARY_KEYS - set(s)
    assert s["cases"] == n
    assert 0 <= s["il"] <= max_questions
    assert 0.0 <= s["gtpa@1"] <= s["gtpa@3"] <= s["gtpa@5"] <= 1.0
    for k in ("per", "ddr", "ddp", "ddf1", "emergency_recall", "under_triage", "over_triage"):
        assert 0.0 <= s[k] <= 1.0, k
    assert s["ddf1"] == pytest.approx(2 * s["ddr"] * s["ddp"] / (s["ddr"] + s["ddp"]))
    assert 0.0 <= s["turn_latency_ms_p50"] <= s["turn_latency_ms_p99"]
    assert math.isfinite(s["turn_latency_ms_p99"])
    assert s["cases_per_second"] > 0
    assert s["under_triage"] + s["over_triage"] + s["triage_exact"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def en50() -> dict[str, Any]:
    return run_file(EN_DEV, BenchConfig(), limit=50, workers=1, progress=False)


@needs_shared
def test_run_file_english_50(en50: dict[str, Any], pack) -> None:
    s = en50["summary"]
    _check_summary(s, 50)
    assert s["gtpa@1"] >= 0.9
    assert s["emergency_recall"] == 1.0
    assert s["severe_cases"] > 0
    assert "ceiling_gtpa@1" in s and "ceiling_ddf1" in s
    # held-out rows are those outside the fit fold (odd rows of the English dev file)
    held = en50["held_out"]
    assert held["cases"] + en50["fit_fold_rows"] == 50
    assert held["cases"] == sum(1 for r in range(50) if not in_fit_fold(EN_DEV.name, r))
    # The paediatric slice: the same metrics over the patients under 18.
    kids = [c for c in en50["cases"] if c["age"] < 18]
    assert en50["pediatric"]["cases"] == len(kids) > 0 and "gtpa@1" in en50["pediatric"]
    cases = en50["cases"]
    assert [c["row"] for c in cases] == list(range(50))
    for c in cases:
        pack.condition(c["pathology"])  # a condition of the pack
        assert 0 <= c["il"] <= 30 and 0 <= c["positives"] <= c["il"]
        assert len(c["latencies_ms"]) == c["il"]
        assert c["triage"] in TRIAGE_LEVELS and c["true_triage"] == pack.condition(c["pathology"]).triage
        assert (c["rank"] < 5) == (c["pathology"] in c["top5"])
        assert set(c["reference"]) <= {n for n, p in _raw_differential(EN_DEV, c["row"]) if p >= REF_THRESHOLD}


def _raw_differential(path: Path, row: int) -> list[tuple[str, float]]:
    import ast

    with path.open(encoding="utf-8", newline="") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            if i == row:
                return [(str(n), float(p)) for n, p in ast.literal_eval(r["DIFFERENTIAL_DIAGNOSIS"])]
    raise AssertionError(row)


@needs_shared
def test_run_file_summary_matches_recomputation(en50: dict[str, Any]) -> None:
    """The reported summary is summarize() of the reported per-case results."""
    again = summarize(en50["cases"])
    for k, v in again.items():
        assert en50["summary"][k] == pytest.approx(v), k


@needs_shared
def test_run_file_french(pack) -> None:
    report = run_file(FR_TEST, BenchConfig(ceiling=False), limit=50, workers=1, progress=False)
    s = report["summary"]
    _check_summary(s, 50)
    assert s["gtpa@1"] >= 0.9
    assert s["emergency_recall"] in (None, 1.0)
    assert report["held_out"]["cases"] == 50 and report["fit_fold_rows"] == 0  # no French test row was fitted on
    # French condition names in the file become the pack's English condition codes
    with FR_TEST.open(encoding="utf-8", newline="") as fh:
        raw = [r["PATHOLOGY"] for _, r in zip(range(50), csv.DictReader(fh))]
    english = {c.code for c in pack.conditions}
    got = [c["pathology"] for c in report["cases"]]
    assert all(g in english for g in got)
    aliases = pack.aliases["conditions"]
    assert [aliases.get(r, r) for r in raw] == got
    assert any(r not in english for r in raw), "the French file was expected to use French condition names"
    assert all(code in english for c in report["cases"] for code in c["reference"] + c["top5"])


@needs_shared
def test_read_cases_french_in_english_codes(pack) -> None:
    records = list(read_cases(pack, FR_TEST, limit=20))
    assert len(records) == 20
    for r in records:
        assert r.initial_evidence in pack.finding_index
        assert set(r.evidences) <= set(pack.finding_index)
        assert r.sex in ("F", "M")
        for code, value in r.evidences.items():
            f = pack.finding(code)
            if f.kind == BINARY:
                assert value is True
            elif f.kind == CATEGORICAL:
                assert value in f.values, (code, value)
            else:
                assert set(value) <= set(f.values), (code, value)


@needs_shared
def test_parallel_run_equals_serial_run() -> None:
    """More than one chunk of cases, so that the worker pool is really used; results must not depend on it."""
    config = BenchConfig(ceiling=False, max_questions=10)
    serial = run_file(EN_DEV, config, limit=140, workers=1, progress=False)
    parallel = run_file(EN_DEV, config, limit=140, workers=2, progress=False)
    strip = lambda cases: [{k: v for k, v in c.items() if k != "latencies_ms"} for c in cases]  # noqa: E731
    assert strip(parallel["cases"]) == strip(serial["cases"])
    assert parallel["summary"]["workers"] == 2
    for k in ("gtpa@1", "ddf1", "il", "under_triage"):
        assert parallel["summary"][k] == serial["summary"][k]


@needs_shared
def test_write_report_and_markdown(en50: dict[str, Any], tmp_path: Path) -> None:
    js, md = write_report(en50, tmp_path / "out")
    body = json.loads(js.read_text(encoding="utf-8"))
    assert "cases" not in body and SUMMARY_KEYS <= set(body["summary"])
    lines = (tmp_path / "out" / "ddxplus_patients_test_en_dev.cases.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 50 and all("latencies_ms" not in json.loads(x) for x in lines)
    text = md.read_text(encoding="utf-8")
    assert text == markdown(en50)
    assert "| metric | all cases | held-out cases |" in text
    assert f"| GTPA@1 | {en50['summary']['gtpa@1']:.4f} |" in text


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "diagnostician.cli.main", *args], capture_output=True, text=True, timeout=300, env=env)


@needs_shared
def test_cli_bench_writes_reports(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    p = _run_cli("bench", "ddxplus", "--cases", str(EN_DEV), "--limit", "50", "--out", str(out), "--workers", "2")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stdout + p.stderr
    js = out / "ddxplus_patients_test_en_dev.json"
    md = out / "ddxplus_patients_test_en_dev.md"
    report = json.loads(js.read_text(encoding="utf-8"))
    _check_summary(report["summary"], 50)
    assert report["summary"]["gtpa@1"] >= 0.9 and report["summary"]["emergency_recall"] == 1.0
    assert report["config"]["limit"] == 50 and report["config"]["max_questions"] == 30
    table = md.read_text(encoding="utf-8")
    assert "| metric | all cases | held-out cases |" in table and "|---|---|---|" in table
    for label in ("GTPA@1", "DDF1", "emergency recall", "under-triage", "turn latency p50 (ms)"):
        assert f"| {label} |" in table, label
    assert table.strip() in p.stdout  # the same table goes to stdout
    assert str(js) in p.stderr


@needs_shared
def test_cli_bench_json_two_files(tmp_path: Path) -> None:
    out = tmp_path / "r"
    p = _run_cli("bench", "ddxplus", "--cases", str(EN_DEV), str(FR_TEST), "--limit", "20", "--json", "--out", str(out), "--workers", "1", "--no-ceiling")
    assert p.returncode == 0, p.stderr[-3000:]
    summaries = json.loads(p.stdout)
    assert set(summaries) == {EN_DEV.name, FR_TEST.name}
    for v in summaries.values():
        assert SUMMARY_KEYS <= set(v["summary"]) and v["summary"]["cases"] == 20
        assert "ceiling_gtpa@1" not in v["summary"]
    assert json.loads((out / "ddxplus_summary.json").read_text(encoding="utf-8")) == summaries


# ---------------------------------------------------------------- the targets, on the whole English dev file


@pytest.mark.slow
@needs_shared
def test_full_english_dev_meets_targets() -> None:
    report = run_file(EN_DEV, BenchConfig(), workers=None, progress=False)
    with EN_DEV.open(encoding="utf-8", newline="") as fh:
        n = sum(1 for _ in csv.DictReader(fh))
    _check_summary(report["summary"], n)
    held = report["held_out"]
    assert held["cases"] == sum(1 for r in range(n) if not in_fit_fold(EN_DEV.name, r)) > 0
    assert held["gtpa@1"] >= 0.99, held["gtpa@1"]
    assert held["emergency_recall"] == 1.0, held["emergency_recall"]
    assert held["under_triage"] <= 0.005, held["under_triage"]
