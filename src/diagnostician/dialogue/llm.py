"""Optional language-model helpers for the dialogue: reading findings from free text and rephrasing templates.

A model is never required and never the source of medical facts: what it extracts is validated against
the pack and confirmed with the patient (confidence 0.6), and what it writes is kept only when the
grounding check finds nothing it was not allowed to say; otherwise the template text is used.
Any OpenAI-compatible server works (vLLM, SGLang, llama.cpp server, llama-cpp-python, Ollama, hosted).
Patient text is never logged: only codes, counts and sizes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from diagnostician.dialogue.grounding import Grounding, check_grounded, grounding_of
from diagnostician.dialogue.mentions import POLARITIES, Mention, Reading
from diagnostician.errors import DiagnosticianError, InputError
from diagnostician.knowledge.schema import BINARY, CATEGORICAL, Finding, Pack

log = logging.getLogger(__name__)

LLM_CONFIDENCE = 0.6  # below the confirmation threshold: the caller asks the patient before using it
ENV_PREFIX = "DIAGNOSTICIAN_LLM_"
_CONFIG_KEYS = ("base_url", "model", "api_key", "timeout_s", "retries")
_CODE_LIKE = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")


class LLMUnavailable(DiagnosticianError):
    """The language-model server is down, unreachable, or answered with an error or an unreadable body."""


@dataclass(frozen=True)
class LLMConfig:
    """Where the OpenAI-compatible server is and how patiently to talk to it."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 30.0
    retries: int = 2

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url) if isinstance(self.base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"LLM base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {self.base_url!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise InputError("LLM model must be a non-empty name (the server's model id)")
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise InputError("LLM api_key must be a string")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)) or not (
            math.isfinite(self.timeout_s) and 0 < self.timeout_s <= 3600
        ):
            raise InputError(f"LLM timeout_s must be a number of seconds in (0, 3600], got {self.timeout_s!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or not 0 <= self.retries <= 10:
            raise InputError(f"LLM retries must be an integer from 0 to 10, got {self.retries!r}")

    @property
    def chat_url(self) -> str:
        """The chat-completions endpoint (a base URL without a path gets /v1, as OpenAI-style servers expect)."""
        base = self.base_url.rstrip("/")
        if not urlsplit(base).path:
            base += "/v1"
        return base + "/chat/completions"

    @classmethod
    def from_env(cls, config_file: str | Path | None = None, prefix: str = ENV_PREFIX) -> LLMConfig | None:
        """The configuration from a TOML file ([llm] table) and `prefix`* variables (DIAGNOSTICIAN_LLM_*); None if unset."""
        ENV_PREFIX = prefix  # noqa: N806 - the same names for another model (the grader)
        values: dict[str, Any] = {}
        path = config_file if config_file is not None else os.environ.get(ENV_PREFIX + "CONFIG") or None
        if path is not None:
            values.update(_read_toml(Path(path)))
        # Variables override the file so that one deployment can share a file and change one setting.
        env = {
            "base_url": os.environ.get(ENV_PREFIX + "BASE_URL"),
            "model": os.environ.get(ENV_PREFIX + "MODEL"),
            "api_key": os.environ.get(ENV_PREFIX + "API_KEY"),
        }
        values.update({k: v for k, v in env.items() if v})
        for var, key, conv in ((ENV_PREFIX + "TIMEOUT", "timeout_s", float), (ENV_PREFIX + "RETRIES", "retries", int)):
            raw = os.environ.get(var)
            if raw:
                try:
                    values[key] = conv(raw)
                except ValueError as exc:
                    raise InputError(f"{var}={raw!r} is not a valid {conv.__name__}") from exc
        if not values:
            return None
        missing = [k for k in ("base_url", "model") if not values.get(k)]
        if missing:
            where = f"{path} [llm] or " if path is not None else ""
            names = " and ".join(f"{k} ({where}{ENV_PREFIX}{k.upper()})" for k in missing)
            raise InputError(f"LLM partly configured: set {names} too, or unset the other LLM settings")
        return cls(**values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"LLM config file not found: {path}") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"LLM config file {path} cannot be read: {exc}") from exc
    table = data.get("llm")
    if not isinstance(table, dict):
        raise InputError(f"LLM config file {path} has no [llm] table")
    unknown = sorted(set(table) - set(_CONFIG_KEYS))
    if unknown:
        raise InputError(f"LLM config file {path}: unknown key(s) {unknown}; expected some of {list(_CONFIG_KEYS)}")
    return dict(table)


class LLMClient:
    """A small client for the chat-completions endpoint of an OpenAI-compatible server."""

    def __init__(self, config: LLMConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.Client(timeout=config.timeout_s, headers=headers, transport=transport)
        # Servers differ in how they take a JSON schema; remember what worked so the fallback costs one request once.
        self.schema_style = "json_schema"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chat(
        self,
        messages: Sequence[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> str:
        """The assistant's reply to the messages, optionally constrained to a JSON schema."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if json_schema is None:
            return self._post(body)
        if self.schema_style == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": json_schema.get("title", "answer"), "schema": json_schema, "strict": True},
            }
            try:
                return self._post(body)
            except _Rejected as exc:
                # llama-cpp-python's server (and some others) reject json_schema with 400/422 but take
                # {"type": "json_object", "schema": ...}; try that once and keep it if it works.
                log.info("llm server rejected response_format json_schema (%s); trying json_object", exc.status)
        body["response_format"] = {"type": "json_object", "schema": json_schema}
        reply = self._post(body)
        self.schema_style = "json_object"
        return reply

    def _post(self, body: dict[str, Any]) -> str:
        url = self.config.chat_url
        attempts = 1 + self.config.retries
        chars_in = sum(len(m.get("content") or "") for m in body["messages"])
        for attempt in range(attempts):
            last = attempt == attempts - 1
            started = time.monotonic()
            try:
                resp = self._http.post(url, json=body)
            except httpx.ReadTimeout as exc:
                # The server is up but slow: retrying would only multiply the wait.
                raise LLMUnavailable(f"LLM server at {url} did not answer within {self.config.timeout_s:g} s") from exc
            except httpx.TransportError as exc:
                log.warning("llm server %s unreachable (attempt %d/%d): %s", url, attempt + 1, attempts, type(exc).__name__)
                if last:
                    raise LLMUnavailable(
                        f"LLM server at {url} is down or unreachable ({type(exc).__name__}: {exc}) after {attempts} attempt(s)"
                    ) from exc
                time.sleep(_backoff(attempt))
                continue
            log.info(
                "llm chat: %d message(s), %d chars in, status %d, %d bytes out, %.2f s",
                len(body["messages"]), chars_in, resp.status_code, len(resp.content), time.monotonic() - started,
            )
            if "response_format" in body and resp.status_code in (400, 422, 500) and b"response_format" in resp.content:
                # A refusal of the format, not an outage (llama-cpp-python reports it as 500): do not retry.
                raise _Rejected(url, resp.status_code)
            if resp.status_code == 429 or resp.status_code >= 500:
                if last:
                    raise LLMUnavailable(f"LLM server at {url} answered {resp.status_code} after {attempts} attempt(s)")
                time.sleep(_backoff(attempt, resp.headers.get("retry-after")))
                continue
            if resp.status_code in (400, 422) and "response_format" in body:
                raise _Rejected(url, resp.status_code)
            if resp.status_code != 200:
                raise LLMUnavailable(f"LLM server at {url} answered {resp.status_code}")
            return _content(resp, url)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt


class _Rejected(LLMUnavailable):
    """The server refused a request that asked for a response format (400/422, or llama-cpp-python's 500)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"LLM server at {url} answered {status}: it refused the request or its JSON response format")
        self.status = status


def _backoff(attempt: int, retry_after: str | None = None) -> float:
    # Short on purpose: a person is waiting for the next question, and the template is a fine fallback.
    if retry_after:
        try:
            return min(2.0, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return min(2.0, 0.25 * 2**attempt)


def _content(resp: httpx.Response, url: str) -> str:
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LLMUnavailable(f"LLM server at {url} answered 200 with a body that is not a chat completion") from exc
    return content if isinstance(content, str) else ""


# ---------------------------------------------------------------------------------------------- extraction

MAX_FINDINGS = 12  # default bound on the answer's length, so that a looping model stops inside max_tokens
LISTED_VALUES = 16  # findings with more values (body locations) are offered without them: the engine asks later
TOKENS_PER_FINDING = 40  # one item of the answer, values included, with room to spare


def _offered_values(f: Finding) -> tuple[str, ...]:
    """The value codes a model may give for a finding (none for binary ones and for long value lists)."""
    if f.kind == BINARY or len(f.values) > LISTED_VALUES:
        return ()
    return tuple(v for v in f.values if f.kind == CATEGORICAL or v != f.default)


def extraction_schema(pack: Pack, codes: Sequence[str], max_findings: int = MAX_FINDINGS) -> dict[str, Any]:
    """The JSON schema of an extraction answer: offered finding codes, polarities and offered value codes."""
    values = sorted({v for c in codes for v in _offered_values(pack.finding(c))})
    value_items: dict[str, Any] = {"type": "array", "maxItems": 0}
    if values:
        # Codes only: a closed list keeps the answer short and stops the model from copying the prompt.
        value_items = {"type": "array", "items": {"type": "string", "enum": values}, "maxItems": 4}
    return {
        "title": "findings",
        "type": "object",
        "properties": {
            "findings": {
                "type": "array",
                "maxItems": max_findings,
                "items": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string", "enum": list(codes)},
                        "polarity": {"type": "string", "enum": list(POLARITIES)},
                        "values": value_items,
                    },
                    "required": ["code", "polarity", "values"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["findings"],
        "additionalProperties": False,
    }


def _finding_line(f: Finding) -> str:
    q = f.question if len(f.question) <= 90 else f.question[:87] + "..."
    offered = _offered_values(f)
    if not offered:
        return f"{f.code}: {q}"
    if all(v.isdigit() for v in offered):
        return f"{f.code}: {q} [values: {offered[0]} to {offered[-1]}]"
    return f"{f.code}: {q} [values: " + ", ".join(f"{v}={f.label_of(v)}" for v in offered) + "]"


def extraction_messages(pack: Pack, text: str, codes: Sequence[str]) -> list[dict[str, str]]:
    """The chat messages asking for the findings of a text among the given codes."""
    listing = "\n".join(_finding_line(pack.finding(c)) for c in codes)
    instructions = (
        "You read what a patient wrote and list which of the findings below it mentions. "
        "Use only these codes. polarity: present, absent (the text denies it) or uncertain. "
        "values: the value codes the text gives for findings that have values, else an empty list. "
        "List nothing the text does not say. Answer with JSON only.\n\nFindings:\n" + listing
    )
    return _messages(instructions, "Patient's message:\n" + text)


def _messages(instructions: str, payload: str) -> list[dict[str, str]]:
    # One user turn rather than a system turn: Gemma-style chat templates drop or refuse the system role,
    # and every OpenAI-compatible server takes a user message.
    return [{"role": "user", "content": f"{instructions}\n\n{payload}"}]


def extract_with_llm(
    client: LLMClient,
    pack: Pack,
    text: str,
    *,
    candidates: Iterable[str] | None = None,
    max_findings: int = MAX_FINDINGS,
) -> list[Mention]:
    """The findings a model reads in the text, validated against the pack (to be confirmed with the patient).

    `candidates` limits the findings offered to the model (all of the pack by default; a shortlist keeps the
    prompt within a small model's context). Raises LLMUnavailable when the server fails.
    """
    codes = list(dict.fromkeys(candidates)) if candidates is not None else [f.code for f in pack.findings]
    for code in codes:
        pack.finding(code)  # UnknownFindingError for a caller's mistake, before any request
    reply = client.chat(
        extraction_messages(pack, text, codes),
        json_schema=extraction_schema(pack, codes, max_findings),
        max_tokens=16 + TOKENS_PER_FINDING * max_findings,
    )
    return parse_extraction(pack, reply, codes)


def _safe(code: object) -> str:
    """A model's string as it may be logged: code-like strings as they are, anything else only by size."""
    if isinstance(code, str) and _CODE_LIKE.match(code):
        return code
    return f"<{type(code).__name__} of {len(str(code))} chars>"


def parse_extraction(pack: Pack, reply: str, offered: Sequence[str]) -> list[Mention]:
    """Mentions from a model's JSON answer, keeping only offered codes and values of their own finding."""
    try:
        data = json.loads(reply)
        items = data["findings"]
        if not isinstance(items, list):
            raise TypeError("findings is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("llm extraction: malformed answer (%d chars, %s); nothing taken", len(reply), type(exc).__name__)
        return []
    allowed = set(offered)
    mentions: list[Mention] = []
    seen: set[str] = set()
    dropped = 0
    for item in items:
        code = item.get("code") if isinstance(item, dict) else None
        if not isinstance(code, str) or code not in allowed or code not in pack.finding_index:
            dropped += 1
            log.warning("llm extraction: dropped unknown or unoffered finding code %s", _safe(code))
            continue
        polarity = item.get("polarity")
        if polarity not in POLARITIES:
            dropped += 1
            log.warning("llm extraction: dropped %s with invalid polarity %s", code, _safe(polarity))
            continue
        if code in seen:
            continue  # the first reading of a finding wins; a contradicting repeat is not trusted either way
        seen.add(code)
        finding = pack.finding(code)
        raw = item.get("values") or []
        values = _valid_values(finding, raw if isinstance(raw, list) else [raw])
        value: Any = None
        if polarity != "absent" and finding.kind != BINARY and values:
            value = values[0] if finding.kind == CATEGORICAL else tuple(values)
        mentions.append(Mention(code=code, polarity=polarity, value=value, confidence=LLM_CONFIDENCE, method="llm"))
    log.info("llm extraction: %d finding(s) kept, %d dropped", len(mentions), dropped)
    return mentions


def _valid_values(finding: Finding, raw: list[object]) -> list[str]:
    by_label = {lab.lower(): v for v, lab in zip(finding.values, finding.labels)}
    out: list[str] = []
    for item in raw:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)  # scale answers come back as numbers
        code = None
        if isinstance(item, str):
            code = item if item in finding.values else by_label.get(item.strip().lower())
        if code is None:
            log.warning("llm extraction: dropped value %s not belonging to %s", _safe(item), finding.code)
        elif code not in out:
            out.append(code)
    if finding.kind == BINARY and out:
        log.warning("llm extraction: ignored %d value(s) given for binary finding %s", len(out), finding.code)
        return []
    return out


# ---------------------------------------------------------------------------------------------- phrasing


@dataclass(frozen=True)
class Phrased:
    """A text to show: the model's rephrasing if it passed every check, else the template unchanged."""

    text: str
    used_llm: bool
    violations: list[str] = field(default_factory=list)


def _clean(reply: str) -> str:
    text = reply.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def _rephrase(
    client: LLMClient,
    instructions: str,
    template: str,
    allowed: Grounding,
    pack: Pack,
    detect: Callable[[str], list[Mention]] | None,
    extra_check: Callable[[str], list[str]],
    what: str,
    label: str,
) -> Phrased:
    try:
        reply = client.chat(
            _messages(instructions, f"{label}:\n{template}"),
            max_tokens=48 + len(template) // 2,  # about twice the template's tokens: a rewording, not an essay
            temperature=0.2,
        )
    except LLMUnavailable as exc:
        log.warning("llm %s: server failed, template used (%s)", what, type(exc).__name__)
        return Phrased(template, False, [f"server failed: {exc}"])
    text = _clean(reply)
    # What the template itself says is grounded by definition; a faithful rephrasing may say it too.
    grounding = allowed.union(grounding_of(template, pack, detect))
    violations = ["empty reply"] if not text else []
    if len(text) > max(240, 3 * len(template)):
        violations.append(f"reply of {len(text)} chars is too long for a {len(template)}-char template")
    violations += extra_check(text) + check_grounded(text, grounding, pack, detect)
    if violations:
        log.info("llm %s: %d violation(s), template used", what, len(violations))
        return Phrased(template, False, violations)
    return Phrased(text, True, [])


def _one_question(text: str) -> list[str]:
    n = text.count("?")
    if n != 1 or not text.rstrip().endswith("?"):
        return [f"expected exactly one question ending with '?', got {n} question mark(s)"]
    return []


def phrase_question(
    client: LLMClient,
    pack: Pack,
    question_text: str,
    allowed: Grounding,
    proxy: bool,
    *,
    detect: Callable[[str], list[Mention]] | None = None,
) -> Phrased:
    """The question reworded warmly and plainly (for a parent when proxy), or the template if that fails a check."""
    who = (
        "The person answering is a parent or carer writing about their child: speak to them and say "
        "'your child' where the question says 'you'. "
        if proxy
        else ""
    )
    instructions = (
        "Reword the question below so that it sounds warm, kind and plain, for someone without "
        "medical training. " + who + "Keep its meaning exactly. Ask exactly one question and end it with '?'. "
        "Do not add any condition, number, advice or urgency. Reply with the reworded question only."
    )
    return _rephrase(client, instructions, question_text, allowed, pack, detect, _one_question, "question", "Question")


def phrase_explanation(
    client: LLMClient,
    template_text: str,
    allowed: Grounding,
    *,
    pack: Pack | None = None,
    detect: Callable[[str], list[Mention]] | None = None,
) -> Phrased:
    """The explanation reworded warmly and plainly, or the template if that fails the grounding check.

    The pack (argument or `allowed.pack`) is needed to recognise condition names.
    """
    pack = pack or allowed.pack
    if pack is None:
        raise InputError("phrase_explanation needs the pack (argument or Grounding.pack) to check condition names")
    instructions = (
        "Reword the text below so that it sounds warm, kind and plain, for someone without medical "
        "training. Keep every fact, number and piece of advice exactly as it is, and add none. Do not say that "
        "anyone has a condition. Reply with the reworded text only."
    )
    return _rephrase(client, instructions, template_text, allowed, pack, detect, lambda _t: [], "explanation", "Text")


def llm_reader(client: LLMClient, shortlist: int = 8) -> Callable[[Pack, str], Reading]:
    """A reader that adds, to the offline reading, what an OpenAI-compatible model extracts (validated, never trusted).

    The model is offered a shortlist of findings (those whose questions share the most words with
    the text), since a whole pack does not fit a small model's context.
    """
    from diagnostician.dialogue.intake import rank_by_words
    from diagnostician.dialogue.nlu import read_text

    def read(pack: Pack, text: str) -> Reading:
        reading = read_text(pack, text)
        known = {m.code for m in reading.mentions}
        try:
            extra = extract_with_llm(client, pack, text, candidates=rank_by_words(pack, text, shortlist) or None)
        except LLMUnavailable:
            extra = []
        reading.mentions += [m for m in extra if m.code not in known]
        return reading

    return read
