"""OSCE-style benchmark on AgentClinic case scripts: history, then examinations and tests, then the diagnosis.

A case (AgentClinic-MedQA format) holds a patient actor's script, the physical examination
findings, the test results and the correct diagnosis. The engine is the doctor:
1. History: the deterministic vignette patient of `bench.vignettes` answers from the patient
   actor's script (demographics, history, symptoms, past medical and social history, review of
   systems), through the same Conversation as the chat.
2. Examination: one turn for a general physical examination, as every clinician does: the
   measurement side returns the script's examination findings, read as results are read in the
   product (`Consultation.take_results`): examination signs of known accuracy ("Murphy's sign
   positive") enter as results, and the pack's findings it shows ("ptosis", "temperature
   38.9 °C") enter as observed where the history left them open.
   Tests: the engine orders what its assessment suggests (results of known accuracy by value of
   information first, then the greedy cover of the differential's probability, `engine.workup`),
   one turn each, re-ranked after every result, until the leading condition's posterior reaches
   SETTLED or the budget ends. A deterministic measurement side answers each request from the
   script when one of its entries matches the request's words or one of the result's order names
   ("chest CT" ↔ "Imaging / Chest_CT"), and "normal / not available" otherwise. Whatever the
   script returns is read like any results text: every result of known accuracy in it (by its
   words, or a lab value against its threshold) enters the posterior; the rest is recorded, not
   interpreted (no likelihood), and the transcript says so. A test whose script entries were
   already returned is not ordered again.
3. Final answer: the differential after the history, the examination and the results (top-1 /
   top-5 with the diagnosis matcher).

Budget: `turns` in all (default 20, as in the AgentClinic paper); the history takes at most
`history` questions (default HISTORY_TURNS, the first an open question answered with the
script's History), then one general examination and at most `tests` tests (default TEST_TURNS).
Metrics: top1, top5, turns (history + examination + tests, mean and median), tests_ordered, the
share of the script's tests ordered, and over-testing (ordered tests the script has no result for).
"""

from __future__ import annotations

import random
import re
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from diagnostician.bench.ddxplus import BenchConfig
from diagnostician.bench.jsonl import read_jsonl, run_logged
from diagnostician.bench.scoring import gold_conditions, icd10_map, pack_synonyms, top_k_hit
from diagnostician.bench.vignettes import Vignette, consult_with_patient, vignette_demographics
from diagnostician.dialogue.nlu import MAX_CHARS
from diagnostician.errors import CaseFileError
from diagnostician.knowledge.results import result_entries
from diagnostician.knowledge.schema import Pack

DEFAULT_TURNS = 20
TEST_TURNS = 3  # tests at most, after the general examination (a budget that leaves fewer turns caps them further)
OPEN_QUESTION = "Tell me about it: how it started, and what else you have noticed."
SETTLED = 0.9  # posterior of the leading condition at which testing stops
HISTORY_TURNS = 8  # questions to the patient, as a clinician plans a timed OSCE station
# The patient actor answers "no" to what its script does not mention: an AgentClinic script holds the whole
# history and review of systems ("Below is all of your information", the paper's patient prompt); on the dev
# file "don't know" instead gave top-1/top-5 15.0/29.0 % against 15.9/34.6 % (seventh-session pack).
OSCE_UNMENTIONED = "absent"
NOT_AVAILABLE = "normal / not available"
_STOP = frozenset({"the", "of", "and", "or", "a", "an", "test", "tests", "level", "levels", "scan", "findings", "exam", "examination", "unspecified"})


@dataclass(frozen=True)
class OsceCase:
    """One AgentClinic case: the patient's side as a vignette, the examination and test entries, the diagnosis."""

    vignette: Vignette
    exams: dict[str, str]  # "Neurological_Examination / Cranial_Nerves" → finding text
    tests: dict[str, str]  # "Imaging / Chest_CT / Findings" → result text
    diagnosis: str
    story: str = ""  # the patient's own account (the script's History), said when asked an open question


def _flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested script entries as 'A / B / C' → text."""
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix} / {k}" if prefix else str(k)))
        return out
    if isinstance(obj, list):
        return {prefix: "; ".join(str(x) for x in obj)}
    return {prefix: str(obj)}


def load_osce(path: str | Path) -> list[OsceCase]:
    """AgentClinic OSCE cases from a JSONL file (`OSCE_Examination` objects)."""
    out = []
    for n, row in read_jsonl(path, "an OSCE case"):
        try:
            osce = row["OSCE_Examination"]
            actor = osce["Patient_Actor"]
            symptoms = actor.get("Symptoms") or {}
            demo = str(actor.get("Demographics") or "")
            primary = str(symptoms.get("Primary_Symptom") or "")
            secondary = symptoms.get("Secondary_Symptoms") or []
            parts = [demo, str(actor.get("History") or ""), primary, "; ".join(map(str, secondary)), str(actor.get("Past_Medical_History") or ""),
                     str(actor.get("Social_History") or ""), str(actor.get("Review_of_Systems") or "")]  # fmt: skip
            text = ". ".join(p.strip().rstrip(".") for p in parts if p.strip())
            age, sex = vignette_demographics(demo)
            opening = f"{demo}. {primary}".strip(". ")
            v = Vignette(f"{Path(path).stem}:{n}", opening, text, age, sex, str(osce["Correct_Diagnosis"]))
            story = str(actor.get("History") or "").strip()
            out.append(OsceCase(v, _flatten(osce.get("Physical_Examination_Findings") or {}), _flatten(osce.get("Test_Results") or {}), v.diagnosis, story))
        except (KeyError, TypeError, AttributeError) as exc:
            raise CaseFileError(f"{path}:{n}: not an AgentClinic OSCE case: {exc}") from exc
    return out


def _words(text: str) -> set[str]:
    words = {w.rstrip("s") if len(w) > 3 else w for w in re.findall(r"[a-z0-9]+", text.lower().replace("_", " "))}
    return words - _STOP


def _plain_names(name: str) -> list[str]:
    """A test name without its parenthesised part, and that part alone: "electrocardiogram (ECG)" → electrocardiogram, ECG."""
    inner = re.findall(r"\(([^()]*)\)", name)
    outer = re.sub(r"\([^()]*\)", " ", name).strip()
    return [n for n in (outer, *inner) if n and n != name]


class Measurement:
    """Answers an examination or test request from the case script, by the words of its entries."""

    def __init__(self, entries: dict[str, str]) -> None:
        self.entries = entries

    def keys_for(self, request: str, aliases: tuple[str, ...] = ()) -> list[str]:
        """The script entries a request names: every word of the request (or of an alias) is in the entry's path."""
        names = [_words(n) for n in (request, *_plain_names(request), *aliases)]
        return [k for k in self.entries if any(ws and ws <= _words(k) for ws in names)]

    def answer(self, request: str, aliases: tuple[str, ...] = ()) -> str:
        """The script's result for a request, or 'normal / not available'."""
        keys = self.keys_for(request, aliases)
        return "; ".join(f"{k}: {self.entries[k]}" for k in keys) if keys else NOT_AVAILABLE


def _test_key_groups(entries: dict[str, str]) -> list[str]:
    """The script's tests, one per top-level group or second-level entry ("Imaging / Chest_CT")."""
    groups: list[str] = []
    for k in entries:
        parts = k.split(" / ")
        g = " / ".join(parts[:2]) if len(parts) > 2 else parts[0]
        if g not in groups:
            groups.append(g)
    return groups


def consult_osce(pack: Pack, case: OsceCase, turns: int, rng: random.Random, history: int = HISTORY_TURNS, tests: int = TEST_TURNS) -> dict[str, Any]:
    """One OSCE consultation: history by the engine, a general examination, the tests it suggests answered from the script, its final differential."""
    # The first question is an open one ("Tell me about it"); the patient answers with the script's History,
    # read with the opening complaint. It counts as a turn of the history.
    opened = bool(case.story)
    config = BenchConfig(pack=pack.name, max_questions=max(1, min(history, turns - TEST_TURNS - 1) - opened))
    v = replace(case.vignette, opening=f"{case.vignette.opening}. {case.story}") if opened else case.vignette
    row, c = consult_with_patient(pack, v, config, rng, OSCE_UNMENTIONED)
    if c is not None and opened:
        row["turns"] += 1
        row["transcript"][:1] = [{"role": "patient", "text": case.vignette.opening}, {"role": "doctor", "text": OPEN_QUESTION},
                                 {"role": "patient", "text": case.story}]  # fmt: skip
    ordered: list[dict[str, Any]] = []
    examined: list[str] = []
    if c is not None:
        shown = exam_text(case)
        examined = examine(c, shown)
        row["transcript"] += [
            {"role": "doctor", "text": "Examination: general physical examination."},
            {"role": "measurement", "text": shown or NOT_AVAILABLE},
            {"role": "doctor", "text": "Read as findings: " + (", ".join(examined) if examined else "none the knowledge has") + "."},
        ]
        ordered = order_tests(c, case, max(0, min(tests, turns - row["turns"] - 1)), row["transcript"])
        a = c.assessment(explain_top=0)
        row.update(differential=[e.name for e in a.differential[:5]], triage=a.triage.level, red_flags=[r.id for r in a.triage.red_flags])
    groups = _test_key_groups(case.tests)
    hit_groups = {g for o in ordered for k in o["script_keys"] for g in groups if k == g or k.startswith(g + " / ")}
    exam_orders = sum(o["kind"] == "exam" for o in ordered)
    row.update(
        tests_ordered=len(ordered) - exam_orders,
        exams_ordered=exam_orders + (c is not None),  # the general examination, then any ordered
        orders=ordered,
        informative_share=round(len(hit_groups) / len(groups), 4) if groups else None,
        over_testing=sum(not o["script_keys"] for o in ordered),
        turns_history=row["turns"],
        exam_findings=examined,
        turns=row["turns"] + len(ordered) + (c is not None),
    )
    return row


def order_tests(c: Any, case: OsceCase, budget: int, transcript: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Order what the assessment suggests, one test a turn, re-ranked after each result; every result read from the script's words."""
    lab, exam = Measurement(case.tests), Measurement(case.exams)
    orders = {code: tuple(r.get("orders") or ()) for code, r in result_entries(c.pack).items()}
    ordered: list[dict[str, Any]] = []
    seen_keys: set[str] = set()
    asked: set[str] = set()
    while len(ordered) < budget:
        a = c.assessment(explain_top=0)
        if a.differential and a.differential[0].posterior >= SETTLED:
            break  # the diagnosis is settled: no more tests
        pick = None
        for t in a.tests:
            if t.name.lower() in asked:
                continue
            side = exam if t.kind == "exam" else lab
            aliases = orders.get(t.result or "", ())
            keys = side.keys_for(t.name, aliases)
            if keys and set(keys) <= seen_keys:
                asked.add(t.name.lower())
                continue  # its report is already in hand
            pick = (t, side, aliases, keys)
            break
        if pick is None:
            break
        t, side, aliases, keys = pick
        asked.add(t.name.lower())
        seen_keys.update(keys)
        result = side.answer(t.name, aliases)
        taken = c.take_results(script_words(result)[:MAX_CHARS]) if keys else None
        entered = [f"{r.code}: {'positive' if r.value else 'negative'}" for r, _ in taken.entered] if taken else []
        entered += [f"{x.answer.code}: {'yes' if x.answer.value else 'no'}" for x in taken.observed] if taken else []
        ordered.append({"test": t.name, "kind": t.kind, "mass": round(t.mass, 4), "bits": t.bits, "script_keys": keys, "result": result, "entered": entered})
        why = f"a result would tell {t.bits:.2f} bits" if t.bits is not None else f"bearing on {t.mass:.0%} of the differential"
        note = ("Read as: " + ", ".join(entered) + ".") if entered else "Result recorded, not interpreted: no published accuracy in the knowledge for what it shows."
        transcript += [
            {"role": "doctor", "text": f"Order: {t.name} ({t.kind}), {why}."},
            {"role": "measurement", "text": result},
            {"role": "doctor", "text": note},
        ]
    return ordered


def script_words(text: str) -> str:
    """A script's entry paths and results as plain words ("Blood_Tests / TSH: 12" → "Blood Tests, TSH: 12")."""
    return text.replace("_", " ").replace(" / ", ", ")


def exam_text(case: OsceCase) -> str:
    """The script's physical examination findings as one text ("Vital Signs, Temperature: 38.9 °C; ...")."""
    return "; ".join(f"{script_words(k)}: {v}" for k, v in case.exams.items())


def examine(c: Any, shown: str) -> list[str]:
    """Enter what a general examination shows (exam_text): signs of known accuracy, and findings the history left open; 'code: yes|no' of each."""
    if not shown:
        return []
    taken = c.take_results(shown[:MAX_CHARS])
    return [f"{r.code}: {'yes' if r.value else 'no'}" for r, _ in taken.entered] + [f"{t.answer.code}: {'yes' if t.answer.value else 'no'}" for t in taken.observed]


def run_osce(
    pack: Pack,
    cases: list[OsceCase],
    out_dir: Path | None = None,
    turns: int = DEFAULT_TURNS,
    history: int = HISTORY_TURNS,
    tests: int = TEST_TURNS,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    consult: Callable[[OsceCase], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Consult every case (resuming from out_dir/cases.jsonl) and return the rows; `consult` replaces the engine (a chat model)."""
    by_id = {c.vignette.id: c for c in cases}
    run = consult or (lambda c: consult_osce(pack, c, turns, random.Random(f"{seed}:{c.vignette.id}"), history, tests))
    results, _ = run_logged(list(by_id.values()), lambda c: c.vignette.id, run, out_dir, progress=progress)
    return results


# ---------------------------------------------------------------------------------------------
# Any chat model as the doctor, and a measurement side played by a chat model

OSCE_DOCTOR_PROMPT = """You are a doctor seeing a patient in a clinic (a text chat). Find the most likely diagnosis, with the \
fewest useful steps. Each turn, do exactly ONE of these:
- ask the patient ONE short question, in plain words;
- examine: reply with one line `EXAM: <the examination>` (for example `EXAM: abdominal palpation`);
- order a test: reply with one line `TEST: <the test>` (for example `TEST: complete blood count`);
- or give your final answer, ONLY in exactly this format:

FINAL ANSWER
Differential: 1. <most likely diagnosis> 2. <next> 3. <next> (up to 5)
Triage: <one of: emergency | urgent within 24 hours | see a doctor | self-care>
Tests: <tests you would still order, separated by commas, or none>
"""
# Why fixed EXAM:/TEST: lines: the measurement side must tell a request from a question to the patient
# without guessing; anything else is a question for the patient.

MEASUREMENT_PROMPT = """You report examination findings and test results for a patient, from this record only:

{record}

Rules: reply with the finding or result the request asks for, copied or summarised from the record in \
one or two sentences. If the record does not hold it, reply exactly: normal / not available. Never \
name a diagnosis.
"""
_REQUEST = re.compile(r"^\s*(?:request(?:ing)?\s+)?(exam(?:ine|ination)?|test|order)\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


def llm_measurement(client: Any, case: OsceCase, max_tokens: int = 160) -> Callable[[str, str], str]:
    """A measurement side played by a chat model from the case's examination and test entries: (kind, request) → result."""
    record = "\n".join(f"{k}: {v}" for k, v in {**case.exams, **case.tests}.items())[:6000]
    system = MEASUREMENT_PROMPT.format(record=record or "(empty)")

    def answer(kind: str, request: str) -> str:
        reply = client.chat([{"role": "system", "content": system}, {"role": "user", "content": f"{kind}: {request}"}], max_tokens=max_tokens, temperature=0.0)
        return reply.strip() if isinstance(reply, str) and reply.strip() else NOT_AVAILABLE

    return answer


def run_llm_osce(
    client: Any,
    pack: Pack,
    case: OsceCase,
    turns: int = DEFAULT_TURNS,
    max_tokens: int = 400,
    patient_answer: Callable[[str], str] | None = None,
    measurement: Callable[[str, str], str] | None = None,
) -> dict[str, Any]:
    """One OSCE consultation with a chat model as the doctor: questions to the patient, EXAM:/TEST: requests, a final answer."""
    from diagnostician.bench.agents import FINAL_NUDGE, answer_in_words, doctor_turn
    from diagnostician.bench.vignettes import VignettePatient
    from diagnostician.dialogue.llm import LLMUnavailable

    v = case.vignette
    patient = VignettePatient(pack, v, OSCE_UNMENTIONED)
    exam, lab = Measurement(case.exams), Measurement(case.tests)
    messages: list[dict[str, str]] = [{"role": "system", "content": OSCE_DOCTOR_PROMPT}, {"role": "user", "content": v.opening}]
    transcript: list[dict[str, str]] = [{"role": "patient", "text": v.opening}]
    row: dict[str, Any] = {"id": v.id, "diagnosis": v.diagnosis, "urgency": v.urgency, "ended": False, "transcript": transcript,
                           "differential": [], "triage": None, "malformed": False, "error": None}  # fmt: skip
    asked, orders, nudged = 0, [], False
    try:
        while True:
            reply, final = doctor_turn(client, messages, transcript, "doctor", max_tokens)
            if final is not None:
                row.update(ended=True, differential=final.differential, triage=final.triage, malformed=final.malformed)
                break
            if nudged:
                row["malformed"] = True  # asked for the final answer and still none
                break
            request = _REQUEST.search(reply)
            if asked + len(orders) >= turns - 1:
                answer, role, nudged = FINAL_NUDGE, "patient", True
            elif request:
                kind = "exam" if request.group(1).lower().startswith("exam") else "test"
                what = request.group(2).strip()
                side = exam if kind == "exam" else lab
                keys = side.keys_for(what)
                answer = measurement(kind, what) if measurement is not None else side.answer(what)
                orders.append({"test": what, "kind": kind, "script_keys": keys, "result": answer})
                role = "measurement"
            else:
                asked += 1
                answer = patient_answer(reply) if patient_answer is not None else answer_in_words(pack, patient, reply)
                role = "patient"
            messages.append({"role": "user", "content": answer})
            transcript.append({"role": role, "text": answer})
    except LLMUnavailable as exc:
        row["error"] = str(exc)
    groups = _test_key_groups(case.tests)
    hit = {g for o in orders for k in o["script_keys"] for g in groups if k == g or k.startswith(g + " / ")}
    tests = [o for o in orders if o["kind"] == "test"]
    row.update(
        turns_history=asked, orders=orders, tests_ordered=len(tests), exams_ordered=len(orders) - len(tests),
        informative_share=round(len(hit) / len(groups), 4) if groups else None, over_testing=sum(not o["script_keys"] for o in orders),
        turns=asked + len(orders),
    )  # fmt: skip
    return row


def osce_summary(pack: Pack, results: list[dict[str, Any]]) -> dict[str, Any]:
    """top1, top5, turns, tests_ordered, informative share, over-testing, coverage and emergency recall of an OSCE run."""
    n = len(results)
    if not n:
        return {"cases": 0}
    syn, icd = pack_synonyms(pack), icd10_map(pack)
    top1 = top5 = covered = 0
    em_total = em_hit = 0
    for r in results:
        hit, rank, _ = top_k_hit(r.get("differential") or [], r["diagnosis"], 5, synonyms=syn, icd10=icd)
        top1 += bool(hit and rank == 1)
        top5 += bool(hit)
        gold = gold_conditions(pack, r["diagnosis"], syn, icd)
        covered += bool(gold)
        # An emergency case: the pack's own urgency for the correct diagnosis says so (its closest match, not an ICD-10 sibling's).
        if gold and gold[0].triage == "emergency":
            em_total += 1
            em_hit += r.get("triage") == "emergency"
    shares = [r["informative_share"] for r in results if r.get("informative_share") is not None]
    return {
        "cases": n,
        "coverage": round(covered / n, 4),
        "top1": round(top1 / n, 4),
        "top5": round(top5 / n, 4),
        "turns": round(sum(r.get("turns") or 0 for r in results) / n, 2),
        "turns_median": float(statistics.median(r.get("turns") or 0 for r in results)),
        "turns_history": round(sum(r.get("turns_history") or 0 for r in results) / n, 2),
        "tests_ordered": round(sum(r.get("tests_ordered") or 0 for r in results) / n, 2),
        "exams_ordered": round(sum(r.get("exams_ordered") or 0 for r in results) / n, 2),
        "informative_share": round(sum(shares) / len(shares), 4) if shares else None,
        "over_testing": round(sum(r.get("over_testing") or 0 for r in results) / n, 2),
        "emergency_cases": em_total,
        "emergency_recall": round(em_hit / em_total, 4) if em_total else None,
        "ended": sum(bool(r.get("ended")) for r in results),
    }
