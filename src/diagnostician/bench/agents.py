"""Other doctors on the vignette benches: any OpenAI-compatible chat model, consulted by the vignette patient.

The model gets `DOCTOR_PROMPT` as its system message and the vignette's opening as the first patient
message. Each reply is either a question, which the deterministic vignette patient answers in lay words
(`answer_in_words`: the question is read with the free-text reader and each finding it names is
answered from what the vignette states), or a final answer in the fixed format of the prompt, read
leniently by `parse_final_answer`. The row of each consultation has the shape of the engine's
(`vignettes.consult_vignette`), so the same summaries score both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from diagnostician.bench.scoring import normalise_diagnosis
from diagnostician.bench.vignettes import UNMENTIONED, Vignette, VignettePatient, red_flag_findings
from diagnostician.dialogue.grounding import grounding_of
from diagnostician.dialogue.llm import LLMUnavailable
from diagnostician.dialogue.nlu import CONFIRM_BELOW, MAX_CHARS, read_text
from diagnostician.errors import InputError
from diagnostician.knowledge.schema import Pack

DOCTOR_PROMPT = """\
You are a doctor talking with a patient in a text chat. Your aim is to find the most likely diagnoses \
and to say how urgently the patient needs care.

Rules:
- Ask ONE short question per turn, in plain words a patient understands. Do not ask several things at once.
- Do not explain your reasoning while you ask questions.
- When you have enough information (or when asked for your final answer), reply ONLY with your final \
answer in exactly this format:

FINAL ANSWER
Differential: 1. <most likely diagnosis> 2. <next> 3. <next> (up to 5)
Triage: <one of: emergency | urgent within 24 hours | see a doctor | self-care>
Tests: <the tests you would order, separated by commas, or none>
"""
# Why this shape: one question per turn lets the deterministic patient answer it finding by finding;
# the fixed final-answer block (or the same keys as a JSON object) is what `parse_final_answer` reads.

FINAL_NUDGE = "Please give your final answer now."
NOT_SURE = "I'm not sure."

TRIAGE_LEVELS = ("emergency", "urgent_24h", "see_doctor", "self_care")


class ChatClient(Protocol):
    """What the agent needs from a chat client (`dialogue.llm.LLMClient` has it)."""

    def chat(self, messages: Sequence[dict[str, str]], **kw: Any) -> str: ...


@dataclass
class FinalAnswer:
    """A doctor's final answer: ranked diagnoses, triage level (engine levels, or None), tests, and whether it broke the format."""

    differential: list[str] = field(default_factory=list)
    triage: str | None = None
    tests: list[str] = field(default_factory=list)
    malformed: bool = False


# ---------------------------------------------------------------------------------------------- parsing

_MARKER = re.compile(r"final\s+answer", re.IGNORECASE)
_KEY = re.compile(
    r"^[\s>*#_\-]*(differential(?:\s+diagnos[ie]s)?|diagnos[ie]s|triage(?:\s+level)?|urgency|tests?(?:\s+to\s+order)?"
    r"|investigations?)[\s*_]*[:\-–]\s*(?:[*_]+\s*)?",
    re.IGNORECASE,
)
_NUMBERED = re.compile(r"(?:^|\s)\(?\d{1,2}[.)]\s+")
_BULLET = re.compile(r"^\s*(?:[-*•+]|\(?\d{1,2}[.)])\s+")
_TRAILING = re.compile(r"\s*(?:\(\s*\d+(?:\.\d+)?\s*%\s*\)|[-–:]\s*\d+(?:\.\d+)?\s*%)\s*$")
_NONE = {"none", "no tests", "n/a", "na", "-", "nothing", "no test", "none needed", "not needed"}


def _canonical_key(raw: str) -> str:
    raw = raw.lower()
    if raw.startswith(("differential", "diagnos")):
        return "differential"
    if raw.startswith(("triage", "urgency")):
        return "triage"
    return "tests"


def _clean_item(item: str) -> str:
    item = item.strip().strip("*_`\"'").strip()
    item = _TRAILING.sub("", item)
    return item.strip(" .;,").strip()


def _split_items(text: str) -> list[str]:
    """Items of a numbered, bulleted or comma/semicolon-separated list (on one line or several)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    items: list[str] = []
    for ln in lines:
        body = _BULLET.sub("", ln, count=1)
        if _NUMBERED.search(" " + body):  # "1. A 2. B" on one line
            items.extend(_NUMBERED.split(" " + body))
        elif len(lines) == 1 or not _BULLET.match(ln):
            items.extend(re.split(r"[;,]\s*(?![^()]*\))", body))  # not inside "(fever, cough)"
        else:
            items.append(body)
    out = [_clean_item(i) for i in items]
    return [i for i in out if i and i.lower() not in _NONE]


def triage_level(text: str) -> str | None:
    """The engine triage level a free-text triage answer names (None when it names none or several)."""
    t = text.lower().strip().strip("*_`\"'. ")
    if t in ("em", "ne", "sc"):
        return {"em": "emergency", "ne": "see_doctor", "sc": "self_care"}[t]
    found = set()
    if re.search(r"(?<!non-)(?<!non )(?<!not an )\bemergency\b|\b(?:911|999|112)\b|\ba&e\b|\bambulance\b|\ber\b", t):
        found.add("emergency")
    if re.search(r"\burgent|\b24\s*h|\bwithin (?:a|one) day\b|\bsame[- ]day\b|urgent_24h", t):
        found.add("urgent_24h")
    if re.search(r"self[-_ ]?care|\bhome care\b|\bat home\b|\bno doctor\b", t):
        found.add("self_care")
    elif "urgent_24h" not in found and re.search(r"\bsee[_ ]?(?:a |your )?doctor|\bdoctor\b|\bgp\b|\bnon[- ]urgent|\broutine\b|\bappointment\b|see_doctor", t):
        found.add("see_doctor")
    return found.pop() if len(found) == 1 else None


def _from_json(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    end = text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {}
    for k, v in data.items():
        m = _KEY.match(str(k).replace("_", " ") + ":")
        if m:
            out.setdefault(_canonical_key(m.group(1)), v)
    return out or None


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        items = []
        for v in value:
            if isinstance(v, dict):  # {"name": ..., "probability": ...}
                v = next((v[k] for k in ("name", "diagnosis", "condition", "test") if k in v), "")
            items.append(_clean_item(str(v)))
        return [i for i in items if i and i.lower() not in _NONE]
    if isinstance(value, str):
        return _split_items(value)
    return []


def parse_final_answer(text: str) -> FinalAnswer | None:
    """The final answer in a doctor's reply, read leniently; None when the reply is not a final answer (a question)."""
    if not isinstance(text, str) or not text.strip():
        return None
    marker = bool(_MARKER.search(text))
    data = _from_json(text)
    if data is not None:
        triage = triage_level(str(data.get("triage") or ""))
        fa = FinalAnswer(_as_list(data.get("differential"))[:5], triage, _as_list(data.get("tests")))
        fa.malformed = not fa.differential or triage is None or "tests" not in data
        return fa
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        m = _KEY.match(line)
        if m:
            current = _canonical_key(m.group(1))
            sections.setdefault(current, [])
            rest = line[m.end() :].strip()
            if rest:
                sections[current].append(rest)
        elif current is not None and line.strip() and not _MARKER.fullmatch(line.strip(" *#_:")):
            sections[current].append(line)
    if not marker and "differential" not in sections:
        return None  # a question or small talk: no final answer yet
    diff = _split_items("\n".join(sections.get("differential", [])))[:5]
    triage = triage_level(" ".join(sections.get("triage", [])))
    tests = _split_items("\n".join(sections.get("tests", [])))
    malformed = not marker or not diff or triage is None or "tests" not in sections
    return FinalAnswer(diff, triage, tests, malformed)


# ---------------------------------------------------------------------------------------------- the patient


def _lay(value: Any, absent: Any, labels: dict[str, str]) -> str:
    if value is None:
        return "I don't know"
    if value is False or value == absent:
        return "no"
    if value is True:
        return "yes"
    values = value if isinstance(value, tuple) else (value,)
    named = [labels.get(v, v) for v in values if v != absent and (not isinstance(absent, tuple) or v not in absent)]
    return "yes, " + " and ".join(named) if named else "yes"


def asked_about(pack: Pack, question: str) -> dict[str, str]:
    """The findings a free-text question asks about (read with confidence), with the words that name each."""
    try:
        reading = read_text(pack, question[:MAX_CHARS])
    except InputError:
        return {}
    asked: dict[str, str] = {}
    for m in reading.mentions:
        if m.confidence < CONFIRM_BELOW or m.code in asked:
            continue  # a loose fuzzy match is not what the doctor asked about
        asked[m.code] = m.text or pack.finding(m.code).question
    return asked


def answer_in_words(pack: Pack, patient: VignettePatient, question: str) -> str:
    """The vignette patient's short lay answer to a free-text question (yes / no / I don't know per finding it names)."""
    asked = asked_about(pack, question)
    if not asked:
        return NOT_SURE
    parts = []
    for code, words in asked.items():
        f = pack.finding(code)
        labels = dict(zip(f.values, f.labels))
        parts.append((_lay(patient.answer(code), f.absent_value(), labels), words))
    if len(parts) == 1:
        reply = parts[0][0]
        return reply[0].upper() + reply[1:] + "."
    said = ", ".join(f"{a} to {w}" if not a.startswith("yes, ") else f"yes to {w} ({a[5:]})" for a, w in parts)
    said = said.replace("I don't know to", "not sure about")
    return said[0].upper() + said[1:] + "."


# ---------------------------------------------------------------------------------------------- the consultation


def doctor_turn(
    client: ChatClient, messages: list[dict[str, str]], transcript: list[dict[str, str]], role: str, max_tokens: int, temperature: float = 0.0
) -> tuple[str, FinalAnswer | None]:
    """One turn of a chat-model doctor: its reply (kept in the messages and the transcript) and its final answer, if it gave one."""
    reply = client.chat(messages, max_tokens=max_tokens, temperature=temperature)
    reply = reply if isinstance(reply, str) else ""
    messages.append({"role": "assistant", "content": reply})
    transcript.append({"role": role, "text": reply})
    return reply, parse_final_answer(reply)


def run_llm_agent(
    client: ChatClient,
    pack: Pack,
    vignette: Vignette,
    max_turns: int = 20,
    max_tokens: int = 400,
    patient_answer: Callable[[str], str] | None = None,
    check_leaks: bool = True,
    temperature: float = 0.0,
    unmentioned: str = UNMENTIONED,
) -> dict[str, Any]:
    """One consultation of a chat model with the vignette patient, as a bench row (the engine's shape plus malformed and error).

    `patient_answer` (question → answer) replaces the deterministic patient, e.g. `llm_patient`; its
    turns are then leak-checked (unless `check_leaks` is off: a deterministic record's answers) and
    the flagged ones listed under `leaks`.
    """
    if max_turns < 1:
        raise ValueError("max_turns must be at least 1")
    patient = VignettePatient(pack, vignette, unmentioned)
    messages: list[dict[str, str]] = [{"role": "system", "content": DOCTOR_PROMPT}, {"role": "user", "content": vignette.opening}]
    transcript: list[dict[str, str]] = [{"role": "patient", "text": vignette.opening}]
    row: dict[str, Any] = {"id": vignette.id, "diagnosis": vignette.diagnosis, "urgency": vignette.urgency, "ended": False,
                           "transcript": transcript, "differential": [], "triage": None, "tests": [], "turns": 0,
                           "malformed": False, "error": None, "leaks": []}  # fmt: skip
    questions = 0
    nudged = False
    key = patient.stated()
    opening = {code for code in asked_about(pack, vignette.opening) if code in key}  # what the patient said first
    questioned: set[str] = set()
    try:
        while True:
            reply, final = doctor_turn(client, messages, transcript, "agent", max_tokens, temperature)
            if final is not None:
                row.update(ended=True, differential=final.differential, triage=final.triage, tests=final.tests, malformed=final.malformed)
                break
            if nudged:
                row["malformed"] = True  # asked for the final answer and still none
                break
            questions += 1
            if questions >= max_turns:
                answer, nudged = FINAL_NUDGE, True
            elif patient_answer is not None:
                questioned |= set(asked_about(pack, reply))
                answer = patient_answer(reply)
                flags = leak_check(pack, vignette, answer) if check_leaks else []
                if flags:
                    row["leaks"].append({"turn": len(transcript), "flags": flags})
            else:
                questioned |= set(asked_about(pack, reply))
                answer = answer_in_words(pack, patient, reply)
            messages.append({"role": "user", "content": answer})
            transcript.append({"role": "patient", "text": answer})
    except LLMUnavailable as exc:
        row["error"] = str(exc)
    learned = opening | (questioned & key)  # said first, or asked about a stated finding (the answer is yes)
    row.update(turns=questions, key_findings=len(key), elicited=len(learned), red_flag_asked=bool(questioned & red_flag_findings(pack)))
    return row


# ---------------------------------------------------------------------------------------------
# A patient played by a language model, and the check that it does not give the game away

PATIENT_PROMPT = """\
You are role-playing a patient talking to a doctor in a text chat. This is your story:

{story}

Rules:
- Answer only what the doctor asks, in one or two short sentences, in plain everyday words.
- Never name a diagnosis, never guess what you have, and do not use medical terms.
- If your story does not say, answer that you have not noticed it or do not know.
"""
# Why stateless (story + one question per call): each answer depends only on the story and the
# question, so a run is reproducible at temperature 0 and one confused answer does not carry over.

_JARGON = re.compile(r"\b[a-z]{3,}(?:itis|osis|emia|aemia|algia|ectomy|pathy|oma|plasia|trophy)\b", re.IGNORECASE)


def llm_patient(client: ChatClient, vignette: Vignette, max_tokens: int = 120) -> Callable[[str], str]:
    """A patient played by a chat model from the vignette's text: question in, short lay answer out."""
    system = PATIENT_PROMPT.format(story=vignette.text[:MAX_CHARS])

    def answer(question: str) -> str:
        reply = client.chat([{"role": "system", "content": system}, {"role": "user", "content": question}], max_tokens=max_tokens, temperature=0.0)
        return reply.strip() if isinstance(reply, str) and reply.strip() else NOT_SURE

    return answer


def leak_check(pack: Pack, vignette: Vignette, text: str) -> list[str]:
    """Why a patient turn gives too much away: it names the diagnosis, or uses clinical terms the vignette does not."""
    flags = []
    gold = normalise_diagnosis(re.sub(r"\([^)]*\)", "", vignette.diagnosis))
    words = set(normalise_diagnosis(text).split())
    if gold and set(gold.split()) <= words:
        flags.append(f"names the diagnosis ({vignette.diagnosis})")
    story = vignette.text.lower()
    for code in sorted(grounding_of(text, pack).conditions):
        name = pack.conditions[pack.condition_index[code]].name
        if name.lower() not in story:
            flags.append(f"names a condition the vignette does not: {name}")
    for term in sorted({m.group(0).lower() for m in _JARGON.finditer(text)}):
        if term not in story:
            flags.append(f"clinical term not in the vignette: {term}")
    return flags


def run_llm_ddxplus(client: ChatClient, pack: Pack, record: Any, rng: Any, max_turns: int = 20, max_tokens: int = 400) -> dict[str, Any]:
    """A chat model consulting a DDXPlus patient record: its free-text questions answered from the record, finding by finding."""
    from diagnostician.bench.freetext import opening_sentence
    from diagnostician.bench.simulator import DDXPlusPatient

    patient = DDXPlusPatient(pack, record)
    name = pack.condition(record.pathology).name
    opening = opening_sentence(pack, record, rng)
    v = Vignette(f"row{record.row}", opening, opening, float(record.age), record.sex, name)
    return run_llm_agent(client, pack, v, max_turns, max_tokens, patient_answer=lambda q: answer_in_words(pack, patient, q), check_leaks=False)
