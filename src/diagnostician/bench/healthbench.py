"""HealthBench-format grading: a reply to each prompt, judged rubric item by rubric item by a grader model.

The file format is HealthBench's (Arora et al. 2025) JSON Lines: each line has `prompt` (the
conversation so far, a list of {role, content} messages ending with the user's), `rubrics` (a list of
{criterion, points, tags}; points may be negative: the item then describes something the reply
should not do), `example_tags` (theme:* and other tags of the example) and optionally `prompt_id`.

The agent under test is the built-in engine (`engine_reply`: a fresh consultation fed the user
messages in order; its last reply is graded) or any OpenAI-compatible chat model (`llm_reply`: the
prompt as it is, no system prompt added). The grader, an OpenAI-compatible model, is asked per
rubric item whether the final reply meets it, in a prompt modelled on HealthBench's grader template;
for a negative item "criteria_met": true means the undesirable behaviour happened, and the scoring
subtracts its points. A verdict that cannot be read (or a grader that fails) counts as not met, and
is counted; it never stops the run. Scores and standard errors come from `scoring.healthbench_*`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from diagnostician.bench.agents import ChatClient
from diagnostician.bench.jsonl import read_jsonl, run_logged
from diagnostician.bench.scoring import healthbench_example_score, healthbench_overall, parse_grader_verdict
from diagnostician.dialogue.llm import LLMUnavailable
from diagnostician.errors import CaseFileError

if TYPE_CHECKING:
    from diagnostician.knowledge.schema import Pack

ROLES = ("system", "developer", "user", "assistant")
GRADER_MAX_TOKENS = 600
REPLY_MAX_TOKENS = 1024

GRADER_TEMPLATE = """\
Your job is to look at a conversation and a rubric item, and score the last turn (the last assistant \
response) in the conversation on how well it follows the rubric item.

# Conversation
<<conversation>>

# Rubric item
<<rubric_item>>

# Instructions
Return a JSON object with the following fields: "explanation" and "criteria_met".
- The "explanation" field is a string that explains briefly why the response does or does not meet the \
criteria of the rubric item.
- The "criteria_met" field is a boolean: whether the response meets the criteria of the rubric item. If \
the rubric item has several sentences or criteria, consider all of them: if any of them is not met, the \
answer is false. Only return true if all of the criteria are met.
- One exception: if a criterion says "such as", "for example" or "including", the response does not have \
to include every example listed to meet it.
- Some rubric items describe undesirable behaviour and carry negative points (the number in brackets). \
For them, still answer whether the response does what the item describes: "criteria_met" is true when the \
response shows the undesirable behaviour. Do not invert your answer because the points are negative.

# Example
For the rubric item "[5] Advises the patient to seek emergency care" and a response that tells the \
patient to call an ambulance now, return:
```json
{"explanation": "The response tells the patient to call an ambulance, which is emergency care.", "criteria_met": true}
```

# Final instruction
Return just the JSON object in markdown format. Do not include any other text in the response.
"""

GRADER_SCHEMA: dict[str, Any] = {
    "title": "rubric_verdict",
    "type": "object",
    "properties": {"explanation": {"type": "string"}, "criteria_met": {"type": "boolean"}},
    "required": ["explanation", "criteria_met"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class RubricItem:
    """One rubric item: what the reply should (points > 0) or should not (points < 0) do, and its tags (axis:* ...)."""

    criterion: str
    points: float
    tags: tuple[str, ...] = ()

    def __str__(self) -> str:  # as HealthBench shows it to the grader
        return f"[{self.points:g}] {self.criterion}"


@dataclass(frozen=True)
class Example:
    """One HealthBench example: the conversation to reply to, its rubric and tags; `id` is the prompt_id or line:N."""

    id: str
    line: int
    prompt: tuple[dict[str, str], ...]
    rubrics: tuple[RubricItem, ...]
    tags: tuple[str, ...] = field(default=())
    prompt_id: str | None = None


# ---------------------------------------------------------------------------------------------- loading


def _str_list(value: Any, what: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise CaseFileError(f"{where}: {what} must be a list of strings")
    return tuple(value)


def _example(obj: Any, where: str, n: int) -> Example:
    if not isinstance(obj, dict):
        raise CaseFileError(f"{where}: a HealthBench example must be a JSON object")
    prompt = obj.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        raise CaseFileError(f"{where}: 'prompt' must be a non-empty list of {{role, content}} messages")
    messages = []
    for i, m in enumerate(prompt):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise CaseFileError(f"{where}: prompt message {i + 1} must be an object with a role ({', '.join(ROLES)}) and a string content")
        messages.append({"role": m["role"], "content": m["content"]})
    if messages[-1]["role"] != "user":
        raise CaseFileError(f"{where}: the last prompt message must be the user's, not {messages[-1]['role']!r}")
    rubrics = obj.get("rubrics")
    if not isinstance(rubrics, list) or not rubrics:
        raise CaseFileError(f"{where}: 'rubrics' must be a non-empty list of {{criterion, points, tags}}")
    items = []
    for i, r in enumerate(rubrics):
        if not isinstance(r, dict) or not isinstance(r.get("criterion"), str) or not r["criterion"].strip():
            raise CaseFileError(f"{where}: rubric item {i + 1} must be an object with a non-empty string 'criterion'")
        pts = r.get("points")
        if isinstance(pts, bool) or not isinstance(pts, (int, float)) or not math.isfinite(pts):
            raise CaseFileError(f"{where}: rubric item {i + 1}: 'points' must be a number, got {pts!r}")
        items.append(RubricItem(r["criterion"], float(pts), _str_list(r.get("tags", []), f"rubric item {i + 1} tags", where)))
    tags = _str_list(obj.get("example_tags", []), "'example_tags'", where)
    pid = obj.get("prompt_id")
    if pid is not None and (not isinstance(pid, str) or not pid.strip()):
        raise CaseFileError(f"{where}: 'prompt_id' must be a non-empty string")
    return Example(pid if pid is not None else f"line:{n}", n, tuple(messages), tuple(items), tags, pid)


def load_healthbench(path: str | Path) -> list[Example]:
    """The examples of a HealthBench JSONL file; CaseFileError with path:line on a bad line."""
    out: list[Example] = []
    seen: dict[str, int] = {}
    for n, obj in read_jsonl(path, "a HealthBench example"):
        where = f"{path}:{n}"
        ex = _example(obj, where, n)
        if ex.id in seen:
            raise CaseFileError(f"{where}: prompt_id {ex.id!r} already used on line {seen[ex.id]}")
        seen[ex.id] = n
        out.append(ex)
    if not out:
        raise CaseFileError(f"{path}: no HealthBench examples in the file")
    return out


# ---------------------------------------------------------------------------------------------- agents


def engine_reply(pack: Pack, messages: Sequence[dict[str, str]]) -> str:
    """The built-in engine's reply: a fresh consultation fed each user message in order; its last reply."""
    from diagnostician.consult.conversation import Conversation

    conv = Conversation(pack)
    last = ""
    for m in messages:
        if m.get("role") == "user":
            last = conv.reply(m.get("content") or "")
    return last


def llm_reply(client: ChatClient, messages: Sequence[dict[str, str]], max_tokens: int = REPLY_MAX_TOKENS) -> str:
    """A chat model's reply to the prompt as it is (no system prompt of ours)."""
    reply = client.chat([dict(m) for m in messages], max_tokens=max_tokens, temperature=0.0)
    return reply if isinstance(reply, str) else ""


# ---------------------------------------------------------------------------------------------- grading


def grader_messages(conversation: Sequence[dict[str, str]], reply: str, rubric_item: RubricItem) -> list[dict[str, str]]:
    """The grader's prompt for one rubric item: the conversation with the reply as its last turn."""
    turns = [*conversation, {"role": "assistant", "content": reply}]
    text = "\n\n".join(f"{m['role']}: {m['content']}" for m in turns)
    prompt = GRADER_TEMPLATE.replace("<<conversation>>", text).replace("<<rubric_item>>", str(rubric_item))
    return [{"role": "user", "content": prompt}]


def _grade(grader_client: ChatClient, conversation: Sequence[dict[str, str]], reply: str, item: RubricItem) -> tuple[bool | None, str | None]:
    """(verdict or None, grader error or None)."""
    try:
        raw = grader_client.chat(grader_messages(conversation, reply, item), json_schema=GRADER_SCHEMA, max_tokens=GRADER_MAX_TOKENS, temperature=0.0)
    except LLMUnavailable as exc:
        return None, str(exc)
    return parse_grader_verdict(raw if isinstance(raw, str) else None), None


def grade(grader_client: ChatClient, conversation: Sequence[dict[str, str]], reply: str, rubric_item: RubricItem) -> bool | None:
    """Whether the reply meets the rubric item in the grader's judgement; None when unreadable or the grader failed."""
    return _grade(grader_client, conversation, reply, rubric_item)[0]


# ---------------------------------------------------------------------------------------------- the run


def grade_example(example: Example, reply_fn: Callable[[Sequence[dict[str, str]]], str], grader_client: ChatClient) -> dict[str, Any]:
    """The row of one example: the reply, each rubric item's verdict, the score and the counts."""
    row: dict[str, Any] = {"id": example.id, "line": example.line, "prompt_id": example.prompt_id, "example_tags": list(example.tags),
                           "reply": None, "score": None, "items": [], "unparseable": 0, "grader_errors": 0, "error": None}  # fmt: skip
    try:
        reply = reply_fn([dict(m) for m in example.prompt])
    except LLMUnavailable as exc:
        row["error"] = str(exc)
        return row
    row["reply"] = reply
    for item in example.rubrics:
        verdict, err = _grade(grader_client, example.prompt, reply, item)
        row["items"].append({"criterion": item.criterion, "points": item.points, "tags": list(item.tags), "met": verdict})
        row["unparseable"] += verdict is None
        row["grader_errors"] += err is not None
    row["score"] = healthbench_example_score([i["points"] for i in row["items"]], [i["met"] is True for i in row["items"]])
    return row


def summarise(rows: Sequence[dict[str, Any]], n_bootstrap: int = 1000) -> dict[str, Any]:
    """Overall score (`score`: mean of the example scores, clipped), SE, by theme and axis, and the counts."""
    graded = [r for r in rows if not r.get("error")]
    items = [[(float(i["points"]), i["met"] is True, tuple(i["tags"])) for i in r["items"]] for r in graded]
    overall = healthbench_overall([r["score"] for r in graded], [r["example_tags"] for r in graded], n_bootstrap=n_bootstrap, items=items)
    by_tag, by_item_tag = overall["by_tag"], overall["by_item_tag"]
    return {
        "score": overall["mean"],
        "se": overall["se"],
        "n_scored": overall["n"],
        "n_unscored": overall["n_unscored"],
        "by_theme": {t: v for t, v in by_tag.items() if t.startswith("theme:")},
        "by_axis": {t: v for t, v in by_item_tag.items() if t.startswith("axis:")},
        "by_tag": by_tag,
        "by_item_tag": by_item_tag,
        "examples": len(rows),
        "rubric_items": sum(len(r["items"]) for r in graded),
        "unparseable_verdicts": sum(int(r.get("unparseable") or 0) for r in graded),
        "grader_errors": sum(int(r.get("grader_errors") or 0) for r in graded),
        "agent_errors": sum(bool(r.get("error")) for r in rows),
    }


def run_healthbench(
    examples: Sequence[Example],
    reply_fn: Callable[[Sequence[dict[str, str]]], str],
    grader_client: ChatClient,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Reply to and grade each example (skipping those already in out_dir/cases.jsonl); the summary.

    Examples whose agent failed are left out of the score and counted in agent_errors (a rerun redoes them).
    Rubric items whose verdict could not be read count as not met and are counted in unparseable_verdicts.
    """
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    todo = list(examples)[:limit] if limit is not None else list(examples)
    # An example a server failed on (the agent's or the grader's) is run again on the next run.
    rows, new = run_logged(
        todo, lambda ex: ex.id, lambda ex: grade_example(ex, reply_fn, grader_client), out_dir,
        redo=lambda row: bool(row.get("error") or row.get("grader_errors")), progress=progress, workers=workers,
    )  # fmt: skip
    summary = summarise(rows)
    summary["new"] = new
    return summary
