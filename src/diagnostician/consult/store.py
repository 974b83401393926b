"""Durable storage of consultations: one interface, SQLite and PostgreSQL implementations, opened by URL.

A consultation is stored as its `Consultation.to_dict()` JSON plus bookkeeping (pack, timestamps, a
revision number). Every accepted answer also goes to an answer log keyed by (consultation id,
question id), which is what makes posting the same answer twice idempotent. Writes use optimistic
concurrency on the revision, so several server processes can share one database.

The same database holds the API keys (hashes only) and the audit log of decisions (codes and
levels only, never answer values or free text), written in the answer's own transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable
from urllib.parse import unquote, urlsplit, urlunsplit

from diagnostician.consult.crypto import PASSPHRASE_ENV, RecordCipher, RecordLockedError, new_salt, sealed
from diagnostician.errors import DiagnosticianError, InputError

DATA_DIR_ENV = "DIAGNOSTICIAN_DATA_DIR"
DB_FILENAME = "consultations.sqlite3"
SCHEMA_VERSION = 4  # 2: api_keys and audit tables; 3: the answer value in the audit log, the owning key of a consultation; 4: the household record (members, diary, follow-ups), encryption metadata


class StoreError(DiagnosticianError):
    """The consultation store cannot do what was asked."""


class ConsultationNotFoundError(StoreError):
    """No consultation with this id (never created, or deleted)."""


class StaleRevisionError(StoreError):
    """The consultation changed since it was read (another request wrote first)."""


class DuplicateAnswerError(StoreError):
    """The answer log already holds an answer to this question id."""


class KeyNameError(StoreError):
    """No API key with this name, or one already exists."""


@dataclass(frozen=True)
class StoredConsultation:
    """A consultation as stored: its saved form and bookkeeping."""

    id: str
    data: dict[str, Any]  # Consultation.to_dict()
    revision: int  # +1 on every write; question ids and optimistic concurrency use it
    pack_name: str
    pack_version: str
    created_at: datetime
    updated_at: datetime
    owner: str | None = None  # the API key (name) that created it: only that key reaches it; None: any caller
    member_id: str | None = None  # the household member it is about, if any


@dataclass(frozen=True)
class ConsultationSummary:
    """One line of a listing: no answers, only bookkeeping."""

    id: str
    pack_name: str
    pack_version: str
    revision: int
    created_at: datetime
    updated_at: datetime
    member_id: str | None = None


@dataclass(frozen=True)
class StoredMember:
    """A household member's profile as stored."""

    id: str
    data: dict[str, Any]  # household.Member.to_dict()
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredDiaryEntry:
    """One diary entry (a vital-sign reading or a symptom with its severity) as stored."""

    id: str
    member_id: str
    at: datetime  # when it was measured or felt (not when it was typed)
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class StoredFollowup:
    """A planned re-check of a consultation as stored."""

    id: str
    consultation_id: str
    member_id: str | None
    due_at: datetime
    status: str  # open | done | cancelled
    data: dict[str, Any]  # the plan, and once done the follow-up consultation's id
    created_at: datetime
    updated_at: datetime


FOLLOWUP_STATUSES = ("open", "done", "cancelled")


class MemberNotFoundError(StoreError):
    """No household member with this id (never created, or deleted)."""


class FollowupNotFoundError(StoreError):
    """No follow-up with this id."""


@dataclass(frozen=True)
class LoggedAnswer:
    """One accepted answer in the log, with the reply that was sent for it."""

    question_id: str
    finding: str
    value: Any  # canonical JSON value (true/false, a value code, a list of codes, or null)
    result: dict[str, Any]  # the reply sent when the answer was accepted, replayed on a retry
    undone: bool = False
    created_at: datetime | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One decision in the audit log: the question's code, the coded answer and the triage after it; never free text."""

    action: str  # "answer" or "undo"
    finding: str  # the finding code asked (or taken back)
    triage_level: str  # the triage level after the decision
    pack_version: str
    key_name: str | None = None  # the API key that made the request, when keys are in use
    created_at: datetime | None = None
    value: Any = None  # the answer as coded JSON (true/false, value codes, null = don't know); None for an undo


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: its name and state, never the key itself."""

    name: str
    created_at: datetime
    revoked_at: datetime | None
    rate_limit: int | None  # requests per minute; None: the server's default


@runtime_checkable
class ConsultationStore(Protocol):
    """Storage of consultations; every method is one transaction, committed before it returns."""

    def create(self, data: Mapping[str, Any], owner: str | None = None) -> StoredConsultation:
        """Store a new consultation (a Consultation.to_dict() form) under a fresh random id, owned by API key `owner` if any."""
        ...

    def get(self, consultation_id: str) -> StoredConsultation:
        """The stored consultation, or ConsultationNotFoundError."""
        ...

    def save_answer(
        self, consultation_id: str, expected_revision: int, data: Mapping[str, Any], answer: LoggedAnswer, audit: AuditEntry | None = None
    ) -> StoredConsultation:
        """Save the consultation after an answer, log the answer and the audit entry, atomically.

        Raises DuplicateAnswerError if the question id is already logged, StaleRevisionError if the
        stored revision is not `expected_revision`, ConsultationNotFoundError if it is gone.
        """
        ...

    def save_undo(
        self, consultation_id: str, expected_revision: int, data: Mapping[str, Any], finding: str, audit: AuditEntry | None = None
    ) -> StoredConsultation:
        """Save the consultation after an undo, mark the latest logged answer to `finding` as undone, and audit it."""
        ...

    def audit_log(self, consultation_id: str) -> list[AuditEntry]:
        """The audit entries of a consultation, oldest first (ConsultationNotFoundError if it is gone)."""
        ...

    def create_key(self, name: str, key_hash: str, rate_limit: int | None = None) -> ApiKey:
        """Store a new API key's hash under a unique name (KeyNameError if the name is taken, revoked keys included)."""
        ...

    def find_key(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not, or None."""
        ...

    def list_keys(self) -> list[ApiKey]:
        """Every API key, oldest first."""
        ...

    def revoke_key(self, name: str) -> ApiKey:
        """Revoke a key by name for good (KeyNameError if there is none)."""
        ...

    def get_answer(self, consultation_id: str, question_id: str) -> LoggedAnswer | None:
        """The logged answer to this question id, if any (undone ones included)."""
        ...

    def delete(self, consultation_id: str) -> None:
        """Delete a consultation and its answer log for good, or ConsultationNotFoundError."""
        ...

    def list(self, limit: int = 100, offset: int = 0) -> list[ConsultationSummary]:
        """Consultations, most recently updated first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# ---------------------------------------------------------------- locations


def default_data_dir() -> Path:
    """The per-user data folder: $XDG_DATA_HOME/diagnostician, or the platform's equivalent."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "diagnostician"


def data_dir_from_env() -> Path:
    """$DIAGNOSTICIAN_DATA_DIR if set, else the per-user data folder."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else default_data_dir()


def sqlite_url(path: str | Path) -> str:
    """The store URL of a SQLite file."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def passphrase_from_env() -> str | None:
    """$DIAGNOSTICIAN_PASSPHRASE, if set and not empty."""
    return os.environ.get(PASSPHRASE_ENV) or None


def open_store(url: str, passphrase: str | None = None) -> ConsultationStore:
    """Open the store a URL names: sqlite:///RELATIVE or sqlite:////ABSOLUTE path, or postgresql://USER@HOST/DB.

    An encrypted record needs its passphrase (`passphrase`, else $DIAGNOSTICIAN_PASSPHRASE); a plain
    one given a passphrase is encrypted then and there.
    """
    passphrase = passphrase if passphrase is not None else passphrase_from_env()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        # SQLAlchemy's convention: everything after "sqlite:///" is the file path.
        if not url.lower().startswith("sqlite:///"):
            raise InputError(f"a sqlite URL names a local file: sqlite:///path, not {url!r}")
        path = unquote(url[len("sqlite:///") :])
        if not path.strip() or path.endswith("/"):
            raise InputError(f"the sqlite URL {url!r} names no file")
        return SQLiteStore(path, passphrase=passphrase)
    if scheme in POSTGRES_SCHEMES:
        return PostgresStore(url, passphrase=passphrase)
    raise InputError(f"unsupported store URL {url!r} (expected sqlite:///PATH or postgresql://USER@HOST/DB)")


# ---------------------------------------------------------------- shared SQL

# The schema of a SQLite file that SQLiteStore creates itself. Migration 0001
# (diagnostician/consult/migrations/versions/) creates the same tables, IF NOT EXISTS, on SQLite and on
# PostgreSQL, so `diagnostician db upgrade` on a SQLite file made here only stamps it; PostgreSQL gets
# its schema from the migrations alone. A change to the schema is a new migration plus a change here.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS consultations (
    id           TEXT PRIMARY KEY,
    pack_name    TEXT NOT NULL,
    pack_version TEXT NOT NULL,
    data         TEXT NOT NULL,             -- Consultation.to_dict() as JSON
    revision     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,             -- ISO 8601, UTC
    updated_at   TEXT NOT NULL,
    owner        TEXT,                      -- name of the API key that created it, NULL when keys are not in use
    member_id    TEXT                       -- the household member it is about, NULL for anonymous consultations
);
CREATE INDEX IF NOT EXISTS consultations_updated ON consultations (updated_at);
CREATE TABLE IF NOT EXISTS answers (
    consultation_id TEXT NOT NULL REFERENCES consultations (id) ON DELETE CASCADE,
    question_id     TEXT NOT NULL,
    finding         TEXT NOT NULL,
    value           TEXT NOT NULL,          -- canonical answer value as JSON
    result          TEXT NOT NULL,          -- the reply sent, as JSON
    undone          INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (consultation_id, question_id)
);
CREATE TABLE IF NOT EXISTS audit (
    consultation_id TEXT NOT NULL REFERENCES consultations (id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL,
    pack_version    TEXT NOT NULL,
    action          TEXT NOT NULL,          -- answer | undo
    finding         TEXT NOT NULL,          -- a finding code
    triage_level    TEXT NOT NULL,
    key_name        TEXT,
    value           TEXT                    -- the coded answer as JSON, never free text, NULL for an undo
);
CREATE INDEX IF NOT EXISTS audit_consultation ON audit (consultation_id);
CREATE TABLE IF NOT EXISTS members (
    id         TEXT PRIMARY KEY,
    data       TEXT NOT NULL,               -- household.Member.to_dict() as JSON (sealed when the record is encrypted)
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS diary (
    id         TEXT PRIMARY KEY,
    member_id  TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    at         TEXT NOT NULL,               -- when measured or felt, ISO 8601 UTC
    data       TEXT NOT NULL,               -- the reading or symptom as JSON (sealed when encrypted)
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS diary_member ON diary (member_id, at);
CREATE TABLE IF NOT EXISTS followups (
    id              TEXT PRIMARY KEY,
    consultation_id TEXT NOT NULL REFERENCES consultations (id) ON DELETE CASCADE,
    member_id       TEXT REFERENCES members (id) ON DELETE CASCADE,
    due_at          TEXT NOT NULL,
    status          TEXT NOT NULL,          -- open | done | cancelled
    data            TEXT NOT NULL,          -- the plan as JSON (sealed when encrypted)
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS followups_due ON followups (status, due_at);
CREATE TABLE IF NOT EXISTS record_meta (
    key   TEXT PRIMARY KEY,                 -- cipher_salt, cipher_check: present only when the record is encrypted
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    name       TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL UNIQUE,        -- sha256 hex of the key (never the key itself)
    rate_limit INTEGER,                     -- requests per minute, NULL for the server default
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""


# The health payloads an encrypted record seals: (table, row key, columns).
_SEALED = (
    ("consultations", "id", ("data",)),
    ("answers", "consultation_id || '/' || question_id", ("value", "result")),
    ("audit", "{seq}", ("value",)),
    ("members", "id", ("data",)),
    ("diary", "id", ("data",)),
    ("followups", "id", ("data",)),
)


def _as_read(data: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as a read would give it back (a JSON round trip: tuples become lists, nothing shared with the caller)."""
    return json.loads(json.dumps(data))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _pack_of(data: Mapping[str, Any]) -> tuple[str, str]:
    pack = data.get("pack") if isinstance(data, Mapping) else None
    if not isinstance(pack, Mapping) or not isinstance(pack.get("name"), str) or not isinstance(pack.get("version"), str):
        raise InputError("a stored consultation needs its pack name and version (Consultation.to_dict() form)")
    return pack["name"], pack["version"]


def _api_key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(row[0], _time(row[1]), _time(row[2]) if row[2] else None, row[3])




class _SQLStore:
    """The store's logic in SQL both databases accept; subclasses bring the driver and its transactions.

    Statements are written with `?` placeholders (turned into `%s` for psycopg) and name the column
    that orders answer and audit rows as {seq}: SQLite's implicit rowid, PostgreSQL's identity column.
    Timestamps are ISO 8601 UTC text and JSON is text in both, so both read back the same values.
    """

    _SEQ = "rowid"
    _driver_error: type[Exception] = sqlite3.Error
    _integrity_error: type[Exception] = sqlite3.IntegrityError
    _close_errors: tuple[type[Exception], ...] = (sqlite3.Error,)  # what closing a connection may raise and close() ignores

    # One connection per thread: neither driver's connections may run two statements at once, and the
    # API runs its handlers in a thread pool. _all keeps every connection so close() reaches them all.
    def _init_connections(self) -> None:
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def _keep(self, db: Any) -> Any:
        """Make db this thread's connection and remember it for close()."""
        self._local.db = db
        with self._lock:
            self._all.append(db)
        return db

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._lock:
            conns, self._all = self._all, []
        for db in conns:
            try:
                db.close()
            except self._close_errors:
                pass
        self._local = threading.local()
    where = "consultation database"  # names the database in error messages (never a password)

    def _sql(self, sql: str) -> str:
        return sql.replace("{seq}", self._SEQ)

    def _transaction(self) -> Any:  # a context manager yielding a connection inside BEGIN ... COMMIT
        raise NotImplementedError

    def _connection(self) -> Any:
        raise NotImplementedError

    def _exec(self, db: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return db.execute(self._sql(sql), params)

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return list(self._exec(self._connection(), sql, params).fetchall())
        except self._driver_error as exc:
            raise StoreError(f"{self.where}: {exc}") from exc

    # ------------------------------------------------------------ payloads (sealed when the record is encrypted)

    _cipher: RecordCipher | None = None

    def _dump(self, obj: Any) -> str:
        text = json.dumps(obj, separators=(",", ":"))
        return self._cipher.seal(text) if self._cipher is not None else text

    def _load(self, text: str) -> Any:
        if sealed(text):
            if self._cipher is None:
                raise RecordLockedError(f"{self.where} holds encrypted entries: give the passphrase ({PASSPHRASE_ENV} or --passphrase-file)")
            text = self._cipher.open(text)
        return json.loads(text)

    def _logged(self, row: Sequence[Any]) -> LoggedAnswer:
        return LoggedAnswer(row[0], row[1], self._load(row[2]), self._load(row[3]), bool(row[4]), _time(row[5]))

    @property
    def encrypted(self) -> bool:
        """Whether this record is encrypted with a passphrase."""
        return bool(self._read("SELECT 1 FROM record_meta WHERE key = 'cipher_salt'", ()))

    def _init_cipher(self, passphrase: str | None) -> None:
        """Unlock an encrypted record, or encrypt a plain one the first time a passphrase is given."""
        meta = dict(self._read("SELECT key, value FROM record_meta", ()))
        if "cipher_salt" in meta:
            if not passphrase:
                raise RecordLockedError(f"{self.where} is encrypted: give its passphrase ({PASSPHRASE_ENV} or --passphrase-file)")
            cipher = RecordCipher(passphrase, bytes.fromhex(meta["cipher_salt"]))
            cipher.verify(meta.get("cipher_check", ""))
            self._cipher = cipher
            return
        if not passphrase:
            return
        salt = new_salt()
        cipher = RecordCipher(passphrase, salt)
        with self._transaction() as db:
            if self._exec(db, "SELECT 1 FROM record_meta WHERE key = 'cipher_salt'", ()).fetchone():
                raise StoreError(f"{self.where} was encrypted by another process meanwhile; open it again")
            # Every existing health payload is sealed in the same transaction that marks the record encrypted.
            for table, key, cols in _SEALED:
                rows = self._exec(db, f"SELECT {key}, {', '.join(cols)} FROM {table}", ()).fetchall()
                for row in rows:
                    values = [v if v is None or sealed(v) else cipher.seal(v) for v in row[1:]]
                    self._exec(db, f"UPDATE {table} SET {', '.join(c + ' = ?' for c in cols)} WHERE {key} = ?", (*values, row[0]))
            self._exec(db, "INSERT INTO record_meta (key, value) VALUES ('cipher_salt', ?)", (salt.hex(),))
            self._exec(db, "INSERT INTO record_meta (key, value) VALUES ('cipher_check', ?)", (cipher.check_value(),))
        self._cipher = cipher

    def create(self, data: Mapping[str, Any], owner: str | None = None, member_id: str | None = None) -> StoredConsultation:
        """Store a new consultation under a fresh random id (owned by the API key `owner`, about household member `member_id`, if any)."""
        name, version = _pack_of(data)
        now = _now()
        cid = uuid.uuid4().hex
        body = self._dump(data)
        with self._transaction() as db:
            if member_id is not None and not self._exec(db, "SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone():
                raise MemberNotFoundError(f"no household member {member_id!r}")
            self._exec(
                db,
                "INSERT INTO consultations (id, pack_name, pack_version, data, revision, created_at, updated_at, owner, member_id)"
                " VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
                (cid, name, version, body, now.isoformat(), now.isoformat(), owner, member_id),
            )
        return StoredConsultation(cid, _as_read(data), 0, name, version, now, now, owner, member_id)

    def get(self, consultation_id: str) -> StoredConsultation:
        """The stored consultation, or ConsultationNotFoundError."""
        rows = self._read(
            "SELECT id, data, revision, pack_name, pack_version, created_at, updated_at, owner, member_id FROM consultations WHERE id = ?",
            (consultation_id,),
        )
        row = rows[0] if rows else None
        if row is None:
            raise ConsultationNotFoundError(f"no consultation {consultation_id!r}")
        return StoredConsultation(row[0], self._load(row[1]), row[2], row[3], row[4], _time(row[5]), _time(row[6]), row[7], row[8])

    def _update(self, db: Any, consultation_id: str, expected_revision: int, data: Mapping[str, Any]) -> StoredConsultation:
        name, version = _pack_of(data)
        now = _now()
        body = self._dump(data)
        # The revision check is in the UPDATE itself: on PostgreSQL a concurrent writer waits for the row
        # lock, then finds the revision moved on and updates nothing (read committed re-checks the WHERE).
        cur = self._exec(
            db,
            "UPDATE consultations SET data = ?, revision = revision + 1, pack_name = ?, pack_version = ?, updated_at = ? WHERE id = ? AND revision = ?",
            (body, name, version, now.isoformat(), consultation_id, expected_revision),
        )
        if cur.rowcount == 0:
            row = self._exec(db, "SELECT revision FROM consultations WHERE id = ?", (consultation_id,)).fetchone()
            if row is None:
                raise ConsultationNotFoundError(f"no consultation {consultation_id!r}")
            raise StaleRevisionError(f"consultation {consultation_id} is at revision {row[0]}, not {expected_revision}")
        created, owner, member = self._exec(db, "SELECT created_at, owner, member_id FROM consultations WHERE id = ?", (consultation_id,)).fetchone()
        return StoredConsultation(consultation_id, _as_read(data), expected_revision + 1, name, version, _time(created), now, owner, member)

    def save_answer(
        self, consultation_id: str, expected_revision: int, data: Mapping[str, Any], answer: LoggedAnswer, audit: AuditEntry | None = None
    ) -> StoredConsultation:
        """Save the consultation after an answer and log the answer and the audit entry, in one transaction."""
        duplicate = DuplicateAnswerError(f"question {answer.question_id} of {consultation_id} is already answered")
        with self._transaction() as db:
            if self._exec(
                db, "SELECT 1 FROM answers WHERE consultation_id = ? AND question_id = ?", (consultation_id, answer.question_id)
            ).fetchone():
                raise duplicate
            stored = self._update(db, consultation_id, expected_revision, data)
            try:
                self._exec(
                    db,
                    "INSERT INTO answers (consultation_id, question_id, finding, value, result, undone, created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
                    (
                        consultation_id,
                        answer.question_id,
                        answer.finding,
                        self._dump(answer.value),
                        self._dump(answer.result),
                        stored.updated_at.isoformat(),
                    ),
                )
            except self._integrity_error as exc:  # the key is the last word, whatever the check above saw
                raise duplicate from exc
            self._audit(db, consultation_id, stored.updated_at, audit)
        return stored

    def _audit(self, db: Any, consultation_id: str, at: datetime, audit: AuditEntry | None) -> None:
        if audit is not None:
            self._exec(
                db,
                "INSERT INTO audit (consultation_id, created_at, pack_version, action, finding, triage_level, key_name, value)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    consultation_id, at.isoformat(), audit.pack_version, audit.action, audit.finding, audit.triage_level, audit.key_name,
                    None if audit.action != "answer" else self._dump(audit.value),
                ),  # fmt: skip
            )

    def save_undo(
        self, consultation_id: str, expected_revision: int, data: Mapping[str, Any], finding: str, audit: AuditEntry | None = None
    ) -> StoredConsultation:
        """Save the consultation after an undo, mark the latest logged answer to `finding` as undone, and audit it."""
        with self._transaction() as db:
            stored = self._update(db, consultation_id, expected_revision, data)
            # Initial findings are never logged, so there may be nothing to mark.
            self._exec(
                db,
                "UPDATE answers SET undone = 1 WHERE {seq} = "
                "(SELECT {seq} FROM answers WHERE consultation_id = ? AND finding = ? AND undone = 0 ORDER BY {seq} DESC LIMIT 1)",
                (consultation_id, finding),
            )
            self._audit(db, consultation_id, stored.updated_at, audit)
        return stored

    def audit_log(self, consultation_id: str) -> list[AuditEntry]:
        """The audit entries of a consultation, oldest first."""
        self.get(consultation_id)  # 404 rather than an empty log for an unknown id
        rows = self._read(
            "SELECT action, finding, triage_level, pack_version, key_name, created_at, value FROM audit WHERE consultation_id = ? ORDER BY {seq}",
            (consultation_id,),
        )
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], _time(r[5]), None if r[6] is None else self._load(r[6])) for r in rows]

    # ------------------------------------------------------------ API keys

    def create_key(self, name: str, key_hash: str, rate_limit: int | None = None) -> ApiKey:
        """Store a new API key's hash under a unique name (revoked names stay taken, so audit rows stay unambiguous)."""
        now = _now()
        taken = KeyNameError(f"an API key named {name!r} already exists (revoked keys keep their names)")
        with self._transaction() as db:
            if self._exec(db, "SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone():
                raise taken
            try:
                self._exec(
                    db,
                    "INSERT INTO api_keys (name, key_hash, rate_limit, created_at) VALUES (?, ?, ?, ?)",
                    (name, key_hash, rate_limit, now.isoformat()),
                )
            except self._integrity_error as exc:  # created meanwhile by another process
                raise taken from exc
        return ApiKey(name, now, None, rate_limit)

    def find_key(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not, or None."""
        rows = self._read("SELECT name, created_at, revoked_at, rate_limit FROM api_keys WHERE key_hash = ?", (key_hash,))
        return _api_key(rows[0]) if rows else None

    def list_keys(self) -> list[ApiKey]:
        """Every API key, oldest first."""
        return [_api_key(r) for r in self._read("SELECT name, created_at, revoked_at, rate_limit FROM api_keys ORDER BY created_at, name", ())]

    def revoke_key(self, name: str) -> ApiKey:
        """Revoke a key by name (revoking it again keeps the first time)."""
        with self._transaction() as db:
            self._exec(db, "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (_now().isoformat(), name))
            row = self._exec(db, "SELECT name, created_at, revoked_at, rate_limit FROM api_keys WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyNameError(f"no API key named {name!r}")
        return _api_key(row)

    def get_answer(self, consultation_id: str, question_id: str) -> LoggedAnswer | None:
        """The logged answer to this question id, if any (undone ones included)."""
        rows = self._read(
            "SELECT question_id, finding, value, result, undone, created_at FROM answers WHERE consultation_id = ? AND question_id = ?",
            (consultation_id, question_id),
        )
        return self._logged(rows[0]) if rows else None

    def answers(self, consultation_id: str) -> list[LoggedAnswer]:
        """The whole answer log of a consultation, oldest first (undone answers included)."""
        rows = self._read(
            "SELECT question_id, finding, value, result, undone, created_at FROM answers WHERE consultation_id = ? ORDER BY {seq}",
            (consultation_id,),
        )
        return [self._logged(r) for r in rows]

    def _delete_consultations(self, db: Any, where: str, param: str) -> int:
        ids = f"SELECT id FROM consultations WHERE {where}"
        # "For good": the audit rows name the questions asked, so they go too; follow-ups point at the consultation.
        for table in ("audit", "answers", "followups"):
            self._exec(db, f"DELETE FROM {table} WHERE consultation_id IN ({ids})", (param,))
        return int(self._exec(db, f"DELETE FROM consultations WHERE {where}", (param,)).rowcount)

    def delete(self, consultation_id: str) -> None:
        """Delete a consultation, its answer log, audit rows and follow-ups for good."""
        with self._transaction() as db:
            if self._delete_consultations(db, "id = ?", consultation_id) == 0:
                raise ConsultationNotFoundError(f"no consultation {consultation_id!r}")

    def list(self, limit: int = 100, offset: int = 0, member_id: str | None = None) -> list[ConsultationSummary]:
        """Consultations (of one household member if given), most recently updated first."""
        where, params = ("WHERE member_id = ? ", (member_id,)) if member_id is not None else ("", ())
        rows = self._read(
            "SELECT id, pack_name, pack_version, revision, created_at, updated_at, member_id FROM consultations "
            + where
            + "ORDER BY updated_at DESC, id LIMIT ? OFFSET ?",
            (*params, max(0, int(limit)), max(0, int(offset))),
        )
        return [ConsultationSummary(r[0], r[1], r[2], r[3], _time(r[4]), _time(r[5]), r[6]) for r in rows]

    # ------------------------------------------------------------ household record

    def create_member(self, data: Mapping[str, Any]) -> StoredMember:
        """Store a new household member's profile under a fresh random id."""
        now = _now()
        mid = uuid.uuid4().hex[:12]
        with self._transaction() as db:
            self._exec(db, "INSERT INTO members (id, data, created_at, updated_at) VALUES (?, ?, ?, ?)", (mid, self._dump(data), now.isoformat(), now.isoformat()))
        return StoredMember(mid, _as_read(data), now, now)

    def get_member(self, member_id: str) -> StoredMember:
        """The member's stored profile, or MemberNotFoundError."""
        rows = self._read("SELECT id, data, created_at, updated_at FROM members WHERE id = ?", (member_id,))
        if not rows:
            raise MemberNotFoundError(f"no household member {member_id!r}")
        r = rows[0]
        return StoredMember(r[0], self._load(r[1]), _time(r[2]), _time(r[3]))

    def list_members(self) -> list[StoredMember]:
        """Every household member, oldest first."""
        rows = self._read("SELECT id, data, created_at, updated_at FROM members ORDER BY created_at, id", ())
        return [StoredMember(r[0], self._load(r[1]), _time(r[2]), _time(r[3])) for r in rows]

    def update_member(self, member_id: str, data: Mapping[str, Any]) -> StoredMember:
        """Replace a member's profile."""
        now = _now()
        with self._transaction() as db:
            cur = self._exec(db, "UPDATE members SET data = ?, updated_at = ? WHERE id = ?", (self._dump(data), now.isoformat(), member_id))
            if cur.rowcount == 0:
                raise MemberNotFoundError(f"no household member {member_id!r}")
            created = self._exec(db, "SELECT created_at FROM members WHERE id = ?", (member_id,)).fetchone()[0]
        return StoredMember(member_id, _as_read(data), _time(created), now)

    def delete_member(self, member_id: str) -> None:
        """Delete a member and all their data (consultations, answers, audit rows, diary, follow-ups) for good."""
        with self._transaction() as db:
            self._delete_consultations(db, "member_id = ?", member_id)
            self._exec(db, "DELETE FROM followups WHERE member_id = ?", (member_id,))
            self._exec(db, "DELETE FROM diary WHERE member_id = ?", (member_id,))
            if self._exec(db, "DELETE FROM members WHERE id = ?", (member_id,)).rowcount == 0:
                raise MemberNotFoundError(f"no household member {member_id!r}")

    def add_diary(self, member_id: str, at: datetime, data: Mapping[str, Any]) -> StoredDiaryEntry:
        """Add a diary entry (a reading or a symptom) for a member."""
        now = _now()
        eid = uuid.uuid4().hex[:12]
        at_utc = at.astimezone(timezone.utc)
        with self._transaction() as db:
            if not self._exec(db, "SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone():
                raise MemberNotFoundError(f"no household member {member_id!r}")
            self._exec(
                db, "INSERT INTO diary (id, member_id, at, data, created_at) VALUES (?, ?, ?, ?, ?)",
                (eid, member_id, at_utc.isoformat(), self._dump(data), now.isoformat()),
            )  # fmt: skip
        return StoredDiaryEntry(eid, member_id, at_utc, _as_read(data), now)

    def diary(self, member_id: str) -> list[StoredDiaryEntry]:
        """A member's diary, oldest entry first (MemberNotFoundError for an unknown member)."""
        self.get_member(member_id)
        rows = self._read("SELECT id, member_id, at, data, created_at FROM diary WHERE member_id = ? ORDER BY at, created_at, id", (member_id,))
        return [StoredDiaryEntry(r[0], r[1], _time(r[2]), self._load(r[3]), _time(r[4])) for r in rows]

    def create_followup(self, consultation_id: str, due_at: datetime, data: Mapping[str, Any], member_id: str | None = None) -> StoredFollowup:
        """Store an open follow-up of a consultation, due at `due_at`."""
        now = _now()
        fid = uuid.uuid4().hex[:12]
        due = due_at.astimezone(timezone.utc)
        with self._transaction() as db:
            if not self._exec(db, "SELECT 1 FROM consultations WHERE id = ?", (consultation_id,)).fetchone():
                raise ConsultationNotFoundError(f"no consultation {consultation_id!r}")
            self._exec(
                db,
                "INSERT INTO followups (id, consultation_id, member_id, due_at, status, data, created_at, updated_at) VALUES (?, ?, ?, ?, 'open', ?, ?, ?)",
                (fid, consultation_id, member_id, due.isoformat(), self._dump(data), now.isoformat(), now.isoformat()),
            )
        return StoredFollowup(fid, consultation_id, member_id, due, "open", _as_read(data), now, now)

    def _followup(self, r: Sequence[Any]) -> StoredFollowup:
        return StoredFollowup(r[0], r[1], r[2], _time(r[3]), r[4], self._load(r[5]), _time(r[6]), _time(r[7]))

    _FOLLOWUP_COLUMNS = "id, consultation_id, member_id, due_at, status, data, created_at, updated_at"

    def get_followup(self, followup_id: str) -> StoredFollowup:
        """A follow-up by id, or FollowupNotFoundError."""
        rows = self._read(f"SELECT {self._FOLLOWUP_COLUMNS} FROM followups WHERE id = ?", (followup_id,))
        if not rows:
            raise FollowupNotFoundError(f"no follow-up {followup_id!r}")
        return self._followup(rows[0])

    def list_followups(self, status: str | None = "open", due_before: datetime | None = None, member_id: str | None = None) -> list[StoredFollowup]:
        """Follow-ups (open ones by default; due before a time, of a member, if given), soonest due first."""
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if due_before is not None:
            clauses.append("due_at <= ?")
            params.append(due_before.astimezone(timezone.utc).isoformat())
        if member_id is not None:
            clauses.append("member_id = ?")
            params.append(member_id)
        where = ("WHERE " + " AND ".join(clauses) + " ") if clauses else ""
        rows = self._read(f"SELECT {self._FOLLOWUP_COLUMNS} FROM followups {where}ORDER BY due_at, id", tuple(params))
        return [self._followup(r) for r in rows]

    def close_followup(self, followup_id: str, status: str, data: Mapping[str, Any]) -> StoredFollowup:
        """Mark a follow-up done or cancelled and store what came of it."""
        if status not in FOLLOWUP_STATUSES:
            raise InputError(f"a follow-up status is one of {', '.join(FOLLOWUP_STATUSES)}, not {status!r}")
        now = _now()
        with self._transaction() as db:
            cur = self._exec(db, "UPDATE followups SET status = ?, data = ?, updated_at = ? WHERE id = ?", (status, self._dump(data), now.isoformat(), followup_id))
            if cur.rowcount == 0:
                raise FollowupNotFoundError(f"no follow-up {followup_id!r}")
        return self.get_followup(followup_id)


# ---------------------------------------------------------------- SQLite


class SQLiteStore(_SQLStore):
    """Consultations in one SQLite file (WAL journal, full sync: an answer is on disk when save returns)."""

    def __init__(self, path: str | Path, timeout_s: float = 10.0, passphrase: str | None = None) -> None:
        """Open (and create if needed) the database file and its schema; unlock (or first encrypt) it with `passphrase`."""
        self.path = Path(path).expanduser()
        self.where = f"consultation database {self.path}"
        self.timeout_s = timeout_s
        self._init_connections()
        self._write_lock = threading.Lock()
        try:
            # Patient answers: a private folder and file (SQLite gives its -wal and -shm files the file's mode).
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            with self._transaction() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{self.path} has schema version {version}; this program knows up to {SCHEMA_VERSION}")
                if version < SCHEMA_VERSION:
                    # Every statement is IF NOT EXISTS, so a version-1 file just gains the new tables.
                    # Statement by statement: executescript() would commit the open transaction first.
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    # A version-2 file predates the audit value and the owner columns.
                    if "value" not in {row[1] for row in db.execute("PRAGMA table_info(audit)")}:
                        db.execute("ALTER TABLE audit ADD COLUMN value TEXT")
                    columns = {row[1] for row in db.execute("PRAGMA table_info(consultations)")}
                    if "owner" not in columns:
                        db.execute("ALTER TABLE consultations ADD COLUMN owner TEXT")
                    if "member_id" not in columns:  # a version-3 file predates the household record
                        db.execute("ALTER TABLE consultations ADD COLUMN member_id TEXT")
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._init_cipher(passphrase)
        except (StoreError, RecordLockedError):
            self.close()
            raise
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"cannot open the consultation database {self.path}: {exc}") from exc
        except OSError as exc:
            self.close()
            raise StoreError(f"cannot create the consultation database {self.path}: {exc}") from exc

    # One connection per thread: sqlite3 connections must not be shared between threads mid-use,
    # and the API runs its handlers in a thread pool.
    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")  # WAL's default (NORMAL) may lose the last commits on power loss
                db.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error:
                db.close()
                raise
            self._keep(db)
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # Writers of this process queue on a fair in-process lock first: left to SQLite's busy handler,
        # waiting threads sleep with uneven back-off and a few wait seconds (load benchmark p99).
        # BEGIN IMMEDIATE then takes the file's write lock up front (other processes still wait on it),
        # so two writers never both read then fail to upgrade.
        with self._write_lock:
            yield from self._immediate_transaction()

    def _immediate_transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.where}: {exc}") from exc
        try:
            yield db
        except BaseException as exc:
            if db.in_transaction:  # SQLite may already have rolled back after some errors
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.where}: {exc}") from exc
            raise
        else:
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreError(f"{self.where}: cannot commit: {exc}") from exc

    @property
    def journal_mode(self) -> str:
        """The journal mode in force ('wal')."""
        return str(self._read("PRAGMA journal_mode", ())[0][0])



# ---------------------------------------------------------------- PostgreSQL

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def libpq_url(url: str) -> str:
    """The URL as libpq reads it: SQLAlchemy's postgresql+psycopg:// spelling becomes postgresql://."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.lower() in POSTGRES_SCHEMES else url


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class PostgresStore(_SQLStore):
    """Consultations in a PostgreSQL database shared by any number of server processes.

    The schema comes from the Alembic migrations (`diagnostician db upgrade`); opening checks that the
    database is at the head revision rather than migrating it, so that several processes starting at
    once never race to change the schema, and a deployment upgrades its database as one explicit step.
    """

    _SEQ = "seq"  # PostgreSQL has no rowid: migration 0001 gives answers and audit an identity column
    _close_errors = (Exception,)  # closing a broken connection must not hide the real error

    def __init__(self, url: str, connect_timeout_s: int = 10, passphrase: str | None = None) -> None:
        """Connect, check that the schema is at the migrations' head (StoreError otherwise), unlock with `passphrase`."""
        import psycopg

        self.url = libpq_url(url)
        self.where = f"consultation database {redact_url(self.url)}"
        self.connect_timeout_s = connect_timeout_s
        self._psycopg = psycopg
        self._driver_error = psycopg.Error
        self._integrity_error = psycopg.IntegrityError
        self._init_connections()
        try:
            self._check_schema()
            self._init_cipher(passphrase)
        except BaseException:
            self.close()
            raise

    def _check_schema(self) -> None:
        from diagnostician.consult.migrations import head_revision

        head = head_revision()
        table = self._read("SELECT to_regclass('alembic_version')", ())[0][0]
        found = self._read("SELECT version_num FROM alembic_version", ()) if table else []
        version = found[0][0] if found else None
        if version != head:
            state = "has no diagnostician schema" if version is None else f"is at schema revision {version}, not {head}"
            raise StoreError(f"{self.where} {state}: run `diagnostician db upgrade --url URL` first")

    # One connection per thread, as for SQLite: a psycopg connection runs one statement at a time,
    # and the API's handler threads must not queue behind each other's transactions.
    def _connection(self) -> Any:
        db = getattr(self._local, "db", None)
        if db is not None and (db.closed or db.broken):
            db = None  # the server restarted or the network dropped: connect again instead of failing forever
        if db is None:
            try:
                db = self._psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout_s)
            except self._psycopg.Error as exc:
                raise StoreError(f"cannot connect to the {self.where}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from exc
            self._keep(db)
        return db

    def _sql(self, sql: str) -> str:
        return super()._sql(sql).replace("?", "%s")

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        # autocommit connection + transaction(): BEGIN here, COMMIT on leaving (before the reply), ROLLBACK on any exception.
        db = self._connection()
        try:
            with db.transaction():
                yield db
        except self._psycopg.Error as exc:
            raise StoreError(f"{self.where}: {exc}") from exc


