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
DEFAULT_MAX_BODY_BYTES = 64 * 1024
# The chat endpoint is sent the whole history every turn (questions with long answer lists included).
DEFAULT_CHAT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Where consultations are stored, which pack is served, and request limits."""

    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None  # overrides the SQLite file in data_dir (PostgreSQL later)
    pack: str = "ddxplus"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    chat_max_body_bytes: int = DEFAULT_CHAT_MAX_BODY_BYTES

    @property
    def store_url(self) -> str:
        """The URL of the consultation store."""
        return self.database_url or sqlite_url(Path(self.data_dir) / DB_FILENAME)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from DIAGNOSTICIAN_DATA_DIR, _DATABASE_URL, _PACK, _MAX_BODY_BYTES and _CHAT_MAX_BODY_BYTES (defaults for the rest)."""
        env = os.environ if environ is None else environ
        data_dir = env.get(DATA_DIR_ENV, "").strip()
        return cls(
            data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
            database_url=env.get(DATABASE_URL_ENV, "").strip() or None,
            pack=env.get(PACK_ENV, "").strip() or "ddxplus",
            max_body_bytes=_byte_limit(env, MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES),
            chat_max_body_bytes=_byte_limit(env, CHAT_MAX_BODY_ENV, DEFAULT_CHAT_MAX_BODY_BYTES),
        )


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
