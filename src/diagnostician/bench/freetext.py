"""End-to-end free text on DDXPlus: the patient opens in a sentence, not a code, and answers in words.

Each DDXPlus patient's initial evidence and demographics are written as a sentence a patient could
type (the finding's question turned into a statement, with varied ways of giving age and sex); the
whole conversation then runs through `consult.conversation.Conversation` — the same code as the
chat — with the simulated patient replying in words. The coded benchmark runs on the same cases and
the same fold models, so the two GTPA figures compare like with like.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from diagnostician.bench.ddxplus import BenchConfig, fold_packs, read_cases, simulate
from diagnostician.knowledge.build_ddxplus import in_fit_fold
from diagnostician.bench.simulator import DDXPlusPatient
from diagnostician.consult.conversation import Conversation
from diagnostician.dialogue.semantic import statement
from diagnostician.dialogue.render import answer_menu, is_scale
from diagnostician.engine.posterior import AnswerValue
from diagnostician.knowledge.ddxplus import PatientRecord
from diagnostician.knowledge.schema import BINARY, Finding, Pack

MAX_TURNS = 80  # a conversation that has not ended by then counts as failed


def opening_sentence(pack: Pack, record: PatientRecord, rng: random.Random) -> str:
    """The initial evidence and demographics as a sentence a patient might write, in one of several forms."""
    said = statement(pack.finding(record.initial_evidence).question)
    age = f"{record.age:g}"
    man = record.sex == "M"
    demo = rng.choice([
        f"I'm a {age} year old {'man' if man else 'woman'}",
        f"{age}{'M' if man else 'F'}",
        f"I am {age}, {'male' if man else 'female'}",
        f"{'male' if man else 'female'}, {age} years old",
    ])
    form = rng.randrange(3)
    if form == 0:
        return f"{demo}. {said[0].upper()}{said[1:]}."
    if form == 1:
        return f"{said[0].upper()}{said[1:]}, {demo}"
    return f"Hi, {demo} here: {said}"


def typed(f: Finding, value: AnswerValue, rng: random.Random) -> str:
    """A simulated patient's reply in words: yes/no phrasings, numbers, labels or menu numbers."""
    if value is None:
        return rng.choice(["not sure", "I don't know"])
    if f.kind == BINARY:
        return rng.choice(["yes", "yeah", "yes I do"]) if value else rng.choice(["no", "nope", "not really"])
    if is_scale(f):
        return rng.choice([f"{value}", f"about {value}", f"{value}/10"])
    menu = answer_menu(f)
    if isinstance(value, tuple):
        if value == (f.default,):
            return "no"
        return ", ".join(str(i) for i, _, v in menu if v in value)
    return next(label for _, label, v in menu if v == value)


@dataclass
class Talked:
    """A finished (or abandoned) free-text consultation and how it went."""

    conversation: Conversation
    ended: bool  # the inquiry reached its assessment
    asked_demographics: int  # how often age or sex had to be asked
    read_first: frozenset[str] = frozenset()  # findings read from the opening (entered or to confirm)
    transcript: list[tuple[str, str]] = field(default_factory=list)  # (role, text), when kept


def talk(
    pack: Pack,
    opening: str,
    answer: Callable[[str], AnswerValue],
    age: float,
    sex: str,
    config: BenchConfig,
    rng: random.Random,
    complaint: str | Callable[[list[str]], str | None] | None = None,
    keep: bool = False,
    in_words: Callable[[str], str] | None = None,
) -> Talked:
    """Drive a Conversation as a simulated patient who opens with `opening` and answers each finding with `answer`.

    `complaint`, when given, is the finding the patient picks from the menu offered if the opening is not
    understood, or a function choosing one from the menu's findings (None: nothing fits). `in_words`,
    when given, answers each question as it is asked, in free text (a patient played by a chat model):
    the conversation reads the reply as it reads any patient's.
    """
    conv = Conversation(pack, policy=config.policy())
    transcript: list[tuple[str, str]] = []

    def say(text: str) -> None:
        reply = conv.reply(text)
        if keep:
            transcript.extend([("patient", text), ("agent", reply)])

    say(opening)
    read_first = frozenset(conv.found) | {m.code for m in conv.to_confirm}
    asked = 0
    for _ in range(MAX_TURNS):
        stage = conv.stage
        if stage == "ended":
            break
        if stage == "confirm":
            code = conv.to_confirm[0].code
            reply = in_words(conv.question_text(pack.finding(code))) if in_words else typed(pack.finding(code), answer(code), rng)
        elif stage == "age":
            asked += 1
            reply = f"{age:g}"
        elif stage == "sex":
            asked += 1
            reply = "male" if sex == "M" else "female"
        elif stage == "opening":
            pick = complaint(list(conv.menu)) if callable(complaint) else complaint
            if pick is None or pick not in conv.menu:
                break  # not understood, and nothing to pick: the consultation fails
            reply = str(conv.menu.index(pick) + 1)  # the product's fallback: pick from the matches
        else:
            q = conv.c.next_question()  # type: ignore[union-attr]
            f = pack.finding(q.code)  # type: ignore[union-attr]
            reply = in_words(conv.question_text(f)) if in_words else typed(f, answer(q.code), rng)  # type: ignore[union-attr]
        say(reply)
    return Talked(conv, conv.c is not None and conv.stage == "ended", asked, read_first, transcript)


def converse(pack: Pack, record: PatientRecord, config: BenchConfig, rng: random.Random) -> dict[str, Any]:
    """One free-text consultation with a simulated DDXPlus patient; what the metrics need."""
    patient = DDXPlusPatient(pack, record)
    done = talk(pack, opening_sentence(pack, record, rng), patient.answer, record.age, record.sex, config, rng, complaint=record.initial_evidence)
    conv = done.conversation
    out: dict[str, Any] = {"row": record.row, "pathology": record.pathology, "rank": None, "il": 0, "asked_demographics": done.asked_demographics}
    out["understood"] = record.initial_evidence in done.read_first  # read from the sentence, not picked from the menu
    if not done.ended:
        return out
    a = conv.c.assessment(explain_top=0)  # type: ignore[union-attr]
    out.update(rank=a.ranking.index(record.pathology), il=conv.c.questions_asked, age_read=conv.age == record.age, sex_read=conv.sex == record.sex)  # type: ignore[union-attr]
    return out


def run(pack: Pack, path: str, limit: int | None = None, seed: int = 0, held_out_only: bool = False) -> dict[str, Any]:
    """Free-text and coded consultations on the same cases; GTPA@1/@3 of each and how often the opening was read."""
    rng = random.Random(seed)
    config = BenchConfig()
    variants = fold_packs(pack, path)
    free, coded = [], []
    for record in read_cases(pack, path, limit):
        if held_out_only and in_fit_fold(Path(path).name, record.row):
            continue
        pk = variants[record.row % len(variants)] if variants else pack
        free.append(converse(pk, record, config, rng))
        c = simulate(pk, record, config.policy()).consultation
        coded.append(c.assessment(explain_top=0).ranking.index(record.pathology))
    n = len(free)

    def at(ranks: Sequence[int | None], k: int) -> float:
        return sum(1 for r in ranks if r is not None and r < k) / n if n else 0.0

    free_ranks = [r["rank"] for r in free]
    return {
        "cases": n,
        "free_text": {
            "gtpa@1": round(at(free_ranks, 1), 4),
            "gtpa@3": round(at(free_ranks, 3), 4),
            "opening_understood": round(sum(r["understood"] for r in free) / n, 4) if n else None,
            "failed": sum(1 for r in free if r["rank"] is None),
            "il": round(sum(r["il"] for r in free) / n, 2) if n else None,
            "asked_age_or_sex": round(sum(r["asked_demographics"] > 0 for r in free) / n, 4) if n else None,
        },
        "coded": {"gtpa@1": round(at(coded, 1), 4), "gtpa@3": round(at(coded, 3), 4)},
        "cases_detail": free,
    }
