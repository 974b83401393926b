"""API keys: creating and hashing them, and the middleware that checks them and rate-limits each key.

Keys are checked on every path under /v1 except /v1/health; /docs, /openapi.json and anything
outside /v1 stay open. The store is read on every request (not cached), so a revoked key stops
working at once in every worker process.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import threading
import time
from typing import Callable

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from diagnostician.api.problems import PROBLEM_JSON, problem_body
from diagnostician.api.settings import DEFAULT_RATE_LIMIT
from diagnostician.consult.store import ApiKey, ConsultationStore, StoreError
from diagnostician.errors import InputError

KEY_PREFIX = "dx_"
OPEN_PATHS = frozenset({"/v1/health"})
SCOPE_KEY = "diagnostician.api_key"  # the ASGI scope entry naming the key that made the request
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def new_key() -> str:
    """A fresh random API key: 'dx_' and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key: its SHA-256, hex.

    A plain (unsalted, fast) hash is enough here, unlike for passwords: the key is 256 random bits,
    so no dictionary or brute-force search over the hash is feasible, and salts or scrypt's cost
    would only buy that at the price of a slow check on every request and no indexed lookup.
    """
    return hashlib.sha256(key.encode()).hexdigest()


def check_key_name(name: str) -> str:
    """The name of a client's key: 1-64 letters, digits, '.', '_' or '-' (it appears in the audit log)."""
    if not _NAME.match(name):
        raise InputError(f"a key name is 1 to 64 letters, digits, '.', '_' or '-' (starting with a letter or digit), not {name!r}")
    return name


def parse_rate_limit(text: str) -> int:
    """A rate limit as N or N/min: requests per minute, 1 to 100000."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:/\s*min)?\s*", text)
    if not m or not 1 <= int(m.group(1)) <= 100_000:
        raise InputError(f"a rate limit is N/min with N between 1 and 100000, not {text!r}")
    return int(m.group(1))


class RateLimiter:
    """A token bucket per key, in process memory: bursts up to a minute's allowance, refilled steadily."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        """Empty buckets; `clock` is for tests."""
        self._clock = clock or time.monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, name: str, per_minute: int) -> float:
        """Take one token; return 0 if allowed, else the seconds until one is available."""
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(name, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return 0.0
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / rate


def _presented_key(scope: Scope) -> str | None:
    bearer = api_key = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
        elif name == b"x-api-key" and value.strip():
            api_key = value.decode("latin-1").strip()
    return bearer or api_key


async def _send(send: Send, status: int, slug: str, title: str, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps(problem_body(status, slug, title, detail)).encode()
    head = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """Require a valid, unrevoked key on /v1 (401 otherwise) and hold each key to its rate limit (429)."""

    def __init__(self, app: ASGIApp, store: ConsultationStore, required: bool, default_rate_limit: int = DEFAULT_RATE_LIMIT) -> None:
        """Wrap an ASGI app; when not `required`, requests pass unchecked."""
        self.app = app
        self.store = store
        self.required = required
        self.default_rate_limit = default_rate_limit
        self.limiter = RateLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        path = scope.get("path", "")
        if not self.required or scope["type"] != "http" or not path.startswith("/v1/") or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        challenge = [(b"www-authenticate", b'Bearer realm="diagnostician"')]
        key = _presented_key(scope)
        if key is None:
            await _send(send, 401, "unauthorized", "Unauthorized", "send an API key: Authorization: Bearer <key> (or X-API-Key)", challenge)
            return
        try:
            found: ApiKey | None = await anyio.to_thread.run_sync(self.store.find_key, hash_key(key))
        except StoreError:
            await _send(send, 503, "store-unavailable", "Key storage unavailable", "the API key could not be checked; try again", [])
            return
        if found is None or found.revoked_at is not None:
            # One message for unknown and revoked keys: no hint about which keys exist.
            await _send(send, 401, "unauthorized", "Unauthorized", "the API key is not valid (unknown or revoked)", challenge)
            return
        wait = self.limiter.take(found.name, found.rate_limit or self.default_rate_limit)
        if wait > 0:
            retry = str(max(1, math.ceil(wait))).encode()
            await _send(send, 429, "rate-limited", "Too Many Requests", "this key's rate limit is exceeded; retry later", [(b"retry-after", retry)])
            return
        scope[SCOPE_KEY] = found.name
        await self.app(scope, receive, send)
