"""Settings of the HTTP service, from arguments or DIAGNOSTICIAN_* environment variables."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from diagnostician.consult.store import DATA_DIR_ENV, DB_FILENAME, default_data_dir, sqlite_url
from diagnostician.errors import InputError

DATABASE_URL_ENV = "DIAGNOSTICIAN_DATABASE_URL"
PACK_ENV = "DIAGNOSTICIAN_PACK"
MAX_BODY_ENV = "DIAGNOSTICIAN_MAX_BODY_BYTES"
CHAT_MAX_BODY_ENV = "DIAGNOSTICIAN_CHAT_MAX_BODY_BYTES"
REQUIRE_KEYS_ENV = "DIAGNOSTICIAN_REQUIRE_KEYS"
RATE_LIMIT_ENV = "DIAGNOSTICIAN_RATE_LIMIT"
CORS_ORIGINS_ENV = "DIAGNOSTICIAN_CORS_ORIGINS"
DEFAULT_RATE_LIMIT = 120  # requests per minute per key, unless the key has its own
DEFAULT_MAX_BODY_BYTES = 64 * 1024
# The chat endpoint is sent the whole history every turn (questions with long answer lists included).
DEFAULT_CHAT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Where consultations are stored, which pack is served, and request limits."""

    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None  # overrides the SQLite file in data_dir: sqlite:///PATH or postgresql://...
    pack: str = "ddxplus"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    chat_max_body_bytes: int = DEFAULT_CHAT_MAX_BODY_BYTES
    require_keys: bool = False  # `serve` forces it on for a non-loopback host
    rate_limit: int = DEFAULT_RATE_LIMIT
    cors_origins: tuple[str, ...] = ()  # none: no CORS headers at all

    @property
    def store_url(self) -> str:
        """The URL of the consultation store."""
        return self.database_url or sqlite_url(Path(self.data_dir) / DB_FILENAME)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from DIAGNOSTICIAN_DATA_DIR, _DATABASE_URL, _PACK, _MAX_BODY_BYTES, _CHAT_MAX_BODY_BYTES, _REQUIRE_KEYS, _RATE_LIMIT, _CORS_ORIGINS."""
        env = os.environ if environ is None else environ
        data_dir = env.get(DATA_DIR_ENV, "").strip()
        return cls(
            data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
            database_url=env.get(DATABASE_URL_ENV, "").strip() or None,
            pack=env.get(PACK_ENV, "").strip() or "ddxplus",
            max_body_bytes=_byte_limit(env, MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES),
            chat_max_body_bytes=_byte_limit(env, CHAT_MAX_BODY_ENV, DEFAULT_CHAT_MAX_BODY_BYTES),
            require_keys=env.get(REQUIRE_KEYS_ENV, "").strip().lower() in ("1", "true", "yes", "on"),
            rate_limit=_rate_limit(env),
            # Comma- or space-separated origins, e.g. "https://app.example.org,http://localhost:3000".
            cors_origins=tuple(o for o in env.get(CORS_ORIGINS_ENV, "").replace(",", " ").split() if o),
        )


def _rate_limit(env: Mapping[str, str]) -> int:
    """The default per-key rate limit from the environment (N or N/min)."""
    from diagnostician.api.auth import parse_rate_limit

    text = env.get(RATE_LIMIT_ENV, "").strip()
    return parse_rate_limit(text) if text else DEFAULT_RATE_LIMIT


def _byte_limit(env: Mapping[str, str], name: str, default: int) -> int:
    """A body size limit from the environment: a number of bytes, at least 1024."""
    limit = env.get(name, "").strip()
    try:
        value = int(limit) if limit else default
    except ValueError as exc:
        raise InputError(f"{name} must be a number of bytes, got {limit!r}") from exc
    if value < 1024:
        raise InputError(f"{name} must be at least 1024 bytes")
    return value


def is_loopback(host: str) -> bool:
    """Whether a listen address only accepts connections from this machine."""
    h = host.strip().strip("[]")
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False
