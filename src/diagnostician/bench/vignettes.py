"""Vignette benchmarks: the engine consulted by a deterministic patient who answers from a written vignette.

The patient (no language model) knows what the vignette says: its text is read once with the
free-text reader, and each question on a finding is answered yes when the vignette states it, no
when it denies it, and "don't know" when it does not mention it (UNMENTIONED), as the patient of
SymptomCheck Bench (the protocol behind the published Avey figures) and our `--patient llm` are
told to; "absent" answers no instead (the DDXPlus convention, kept by the OSCE bench, whose
scripts hold the whole history and review of systems). The consultation itself runs through the
same Conversation as the chat: the patient opens with the chief complaint in words, then answers
in words.

Two benchmarks use it: diagnosis (top-1/3/5 against the vignette's diagnosis, with the matcher of
`bench.scoring`) on Avey-format files, and triage (emergency / see a doctor / self-care against
the gold urgency) on Semigran-format files. Each run writes one JSONL line per case (the
transcript, the agent's answer, the scores) and resumes after an interruption.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from diagnostician.bench.ddxplus import BenchConfig
from diagnostician.bench.freetext import talk
from diagnostician.bench.jsonl import read_jsonl, run_logged
from diagnostician.bench.scoring import icd10_map, judged_top_k, match_diagnosis, mcnemar, pack_synonyms, to_semigran, top_k_hit, triage_metrics
from diagnostician.dialogue.mentions import ABSENT, PRESENT, Reading
from diagnostician.dialogue.nlu import MAX_CHARS, language, normalise, read_demographics, read_text
from diagnostician.engine.posterior import AnswerValue
from diagnostician.errors import CaseFileError
from diagnostician.knowledge.lexicon import load_lexicon
from diagnostician.knowledge.schema import BINARY, CATEGORICAL, Pack

# What the patient answers about a finding its vignette does not mention: "unknown" ("don't know") or "absent" ("no").
UNMENTIONED = "unknown"


@dataclass(frozen=True)
class Vignette:
    """One case: an id, what the patient says first, the whole text the patient knows, demographics and gold labels."""

    id: str
    opening: str
    text: str
    age: float | None
    sex: str | None
    diagnosis: str
    urgency: str | None = None  # em / ne / sc (Semigran files)


def vignette_demographics(text: str) -> tuple[float | None, str | None]:
    """Age and sex as the free-text reader finds them (a parent's "2-year-old son" is a boy)."""
    reading = Reading(text=text)
    read_demographics(normalise(text), reading, language("en"))
    return reading.age, reading.sex


_ABBREVIATIONS = ("mr", "mrs", "ms", "dr", "st", "vs", "e.g", "i.e", "approx", "no")


def _sentences(text: str) -> list[str]:
    """Sentences of a clinical text, not cut after "Mr." or "Dr."."""
    out, start = [], 0
    for m in re.finditer(r"[.!?](?=\s+[A-Z0-9])", text):
        word = re.split(r"\s", text[start : m.start()].strip())[-1].lower() if text[start : m.start()].strip() else ""
        if word.rstrip(".") in _ABBREVIATIONS:
            continue
        out.append(text[start : m.end()].strip())
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def load_vignettes(path: str | Path) -> list[Vignette]:
    """Avey-format (chief_complaints, presentation, absent_findings…) or Semigran-format (case_description, urgency_level) files."""
    out = []
    for n, v in read_jsonl(path, "a vignette"):
        try:
            if "case_description" in v:
                text = str(v["case_description"])
                # The patient opens with what the first two sentences say (the presenting complaint and its course).
                first = " ".join(_sentences(text)[:2])
                age, sex = vignette_demographics(first)
                out.append(Vignette(f"{Path(path).stem}:{n}", first, text, age, sex, str(v["correct_diagnosis"]), str(v.get("urgency_level") or "") or None))
            else:
                demo = str(v.get("demographics") or "")
                # The patient knows their own complaints as well as the story the vignette tells.
                keys = ("demographics", "chief_complaints", "presentation", "absent_findings", "physical_history", "family_history", "social_history")
                text = ". ".join(str(v.get(k) or "").strip().rstrip(".") for k in keys if str(v.get(k) or "").strip() not in ("", "-"))
                age, sex = vignette_demographics(demo)
                opening = f"{demo}. {v.get('chief_complaints') or ''}".strip(". ")
                out.append(Vignette(f"{Path(path).stem}:{n}", opening, text, age, sex, str(v["correct_diagnosis"])))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CaseFileError(f"{path}:{n}: not a vignette: {exc}") from exc
    return out


class VignettePatient:
    """Answers a finding's question from what the vignette's text states or denies (unmentioned: `unmentioned`).

    With unmentioned "absent", one exception, for packs whose lexicon marks its implications as
    characterisations: a narrower finding whose broader one the vignette states ("sharp" belly
    pain when it says "abdominal pain") is unknown, not denied; the text does not say which kind
    of pain it is.
    """

    def __init__(self, pack: Pack, vignette: Vignette, unmentioned: str = UNMENTIONED) -> None:
        if unmentioned not in ("absent", "unknown"):
            raise ValueError(f"unmentioned must be absent or unknown, got {unmentioned!r}")
        self.pack = pack
        self.unmentioned = unmentioned
        self.said = {m.code: m for m in read_text(pack, vignette.text[:MAX_CHARS]).mentions}
        lexicon = load_lexicon(pack)
        self.broader = lexicon.implies if lexicon.characterises else {}

    def stated(self) -> set[str]:
        """The findings the vignette states present: its key findings, which a good inquiry elicits."""
        return {code for code, m in self.said.items() if m.polarity == PRESENT}

    def pick(self, menu: list[str]) -> str | None:
        """From a menu of findings offered when the opening was not understood, the first one the vignette states."""
        return next((code for code in menu if (m := self.said.get(code)) is not None and m.polarity == PRESENT), None)

    def answer(self, code: str) -> AnswerValue:
        """The patient's answer to the question on `code`."""
        f = self.pack.finding(code)
        m = self.said.get(code)
        if m is None and any(self.said.get(b) is not None and self.said[b].polarity == PRESENT for b in self.broader.get(code, ())):
            return None
        if m is None and self.unmentioned == "unknown":
            return None
        if m is None or m.polarity == ABSENT:
            return f.absent_value()
        if m.polarity != PRESENT:
            return None
        if f.kind == BINARY:
            return True
        if m.value in (None, ()):
            return None  # a site without a side, a character not named: the patient cannot say
        return m.value if f.kind == CATEGORICAL or isinstance(m.value, tuple) else (m.value,)


def consult_vignette(pack: Pack, v: Vignette, config: BenchConfig, rng: random.Random, unmentioned: str = UNMENTIONED) -> dict[str, Any]:
    """One consultation of the engine with the vignette patient; its transcript, differential and triage."""
    return consult_with_patient(pack, v, config, rng, unmentioned)[0]


def consult_with_patient(
    pack: Pack, v: Vignette, config: BenchConfig, rng: random.Random, unmentioned: str = UNMENTIONED, in_words: Callable[[str], str] | None = None
) -> tuple[dict[str, Any], Any]:
    """The consultation's row (transcript, differential, triage) and the Consultation itself (None if it never started).

    `in_words` (question → free-text answer) replaces the deterministic patient's coded answers, e.g. a
    patient played by a chat model (`bench.agents.llm_patient`)."""
    patient = VignettePatient(pack, v, unmentioned)
    done = talk(pack, v.opening, patient.answer, v.age if v.age is not None else 40, v.sex or "F", config, rng, complaint=patient.pick, keep=True,
                in_words=in_words)  # fmt: skip
    out: dict[str, Any] = {"id": v.id, "age": v.age, "diagnosis": v.diagnosis, "urgency": v.urgency, "ended": done.ended,
                           "transcript": [{"role": r, "text": t} for r, t in done.transcript]}  # fmt: skip
    c = done.conversation.c
    if c is None:
        out.update(differential=[], triage=None, turns=0)
        return out, None
    a = c.assessment(explain_top=0)
    key = patient.stated()
    learned = {x.code for x in c.state.answers if x.is_positive(pack)}
    asked = {x.code for x in c.state.answers[c.initial :]}
    out.update(
        differential=[e.name for e in a.differential[:5]],
        triage=a.triage.level,
        red_flags=[r.id for r in a.triage.red_flags],
        turns=c.questions_asked,
        key_findings=len(key),
        elicited=len(key & learned),
        red_flag_asked=bool(asked & red_flag_findings(pack)),
    )
    return out, c


def red_flag_findings(pack: Pack) -> set[str]:
    """The findings a danger sign of the pack is made of."""
    return {code for r in pack.red_flags for code, _ in r.when}


def run_cases(
    pack: Pack,
    vignettes: list[Vignette],
    out_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    seed: int = 0,
    consult: Callable[[Vignette], dict[str, Any]] | None = None,
    workers: int = 1,
    unmentioned: str = UNMENTIONED,
) -> list[dict[str, Any]]:
    """Consult every vignette (skipping those already in out_dir/cases.jsonl) and append each result as it finishes.

    `consult` runs one consultation and returns its row; by default the engine (`consult_vignette`).
    """
    if consult is None:
        config = BenchConfig()

        def consult(v: Vignette) -> dict[str, Any]:
            return consult_vignette(pack, v, config, random.Random(f"{seed}:{v.id}"), unmentioned)

    # A row whose agent's server failed is run again on the next run.
    results, _ = run_logged(vignettes, lambda v: v.id, consult, out_dir, redo=lambda row: bool(row.get("error")), progress=progress, workers=workers)
    return results


def diagnosis_summary(pack: Pack, results: list[dict[str, Any]], judge: Any = None) -> dict[str, Any]:
    """top1 / top3 / top5 of the differential against each vignette's diagnosis, the mean number of questions, what was elicited.

    The matcher's deterministic rules decide first; with a `judge` (a chat client) a case they find no
    match for is put to the judge prediction by prediction, and every judgement is logged.
    """
    icd = icd10_map(pack)
    n = len(results)
    hits = {k: 0 for k in (1, 3, 5)}
    decisions = []
    for r in results:
        preds = r.get("differential") or []
        hit, rank, match = top_k_hit(preds, r["diagnosis"], 5, synonyms=pack_synonyms(pack), icd10=icd)
        # Every judgement of the matcher is kept: which prediction matched, by which rule.
        decision = {"id": r["id"], "gold": r["diagnosis"], "rank": rank, "matched": preds[rank - 1] if rank else None, "rule": match.rule, "detail": match.detail}
        if not hit and judge is not None and preds:
            hit, rank, log = judged_top_k(judge, preds, r["diagnosis"], 5)
            decision.update(judge=log, rank=rank, matched=preds[rank - 1] if rank else None, rule="llm-judge" if hit else match.rule)
        for k in hits:
            hits[k] += bool(hit and rank is not None and rank <= k)
        decisions.append(decision)
    covered = sum(in_pack(pack, r["diagnosis"]) for r in results)
    return {
        "cases": n,
        "coverage": round(covered / n, 4) if n else None,
        "top1": round(hits[1] / n, 4) if n else None,
        "top3": round(hits[3] / n, 4) if n else None,
        "top5": round(hits[5] / n, 4) if n else None,
        "turns": round(sum(r.get("turns") or 0 for r in results) / n, 2) if n else None,
        "ended": sum(bool(r.get("ended")) for r in results),
        **elicitation(results),
        **({"judged": sum(1 for d in decisions if d.get("judge"))} if judge is not None else {}),
        "decisions": decisions,
    }


def elicitation(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Share of each vignette's stated findings the agent elicited (mean over vignettes with any), and how often it asked a danger-sign question."""
    keyed = [r for r in results if r.get("key_findings")]
    asked = [r for r in results if r.get("red_flag_asked") is not None]
    return {
        "key_findings_elicited": round(sum(r["elicited"] / r["key_findings"] for r in keyed) / len(keyed), 4) if keyed else None,
        "red_flag_questions": round(sum(bool(r["red_flag_asked"]) for r in asked) / len(asked), 4) if asked else None,
    }


def in_pack(pack: Pack, diagnosis: str) -> bool:
    """Whether the pack has a condition the matcher accepts as this diagnosis (coverage)."""
    syn, icd = pack_synonyms(pack), icd10_map(pack)
    return any(match_diagnosis(c.name, diagnosis, syn, icd).matched for c in pack.conditions)


def triage_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, under- and over-triage and emergency recall of the engine's triage against the gold urgency."""
    rows = [r for r in results if r.get("urgency")]
    # A consultation that never reached an assessment gave no advice: scored as the least urgent (the unsafe reading).
    predicted = [r["triage"] or "self_care" for r in rows]
    out = triage_metrics([r["urgency"] for r in rows], predicted)
    out["cases"] = len(rows)
    return out


def iter_markdown(summary: dict[str, Any], keys: tuple[str, ...]) -> Iterator[str]:
    """Rows of a two-column Markdown table of the chosen summary figures."""
    yield "| measure | value |"
    yield "|---|---|"
    for k in keys:
        if k in summary:
            yield f"| {k} | {summary[k]} |"


def case_correct(pack: Pack, row: dict[str, Any], kind: str) -> bool:
    """Whether one logged case was right: triage level equal to the gold urgency, or the top-1 diagnosis matching."""
    if kind == "triage":
        return to_semigran(row.get("triage") or "self_care") == row.get("urgency")
    return top_k_hit(row.get("differential") or [], row["diagnosis"], 1, synonyms=pack_synonyms(pack), icd10=icd10_map(pack))[0]


def compare_runs(pack: Pack, rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """McNemar's paired test of two runs (two agents, or two repeats of one) on the cases both have."""
    by_b = {r["id"]: r for r in rows_b}
    shared = [r for r in rows_a if r["id"] in by_b]
    if not shared:
        raise CaseFileError("the two runs have no case in common")
    out = mcnemar([case_correct(pack, r, kind) for r in shared], [case_correct(pack, by_b[r["id"]], kind) for r in shared])
    out["only_in_a"] = len(rows_a) - len(shared)
    out["only_in_b"] = len(rows_b) - len(shared)
    return out
