"""The consultation store on a real SQLite file and a real PostgreSQL server, and the idempotent answering built on it."""

from __future__ import annotations

import socket
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Callable

import pytest

from diagnostician.consult import Consultation
from diagnostician.consult.service import AnswerConflictError, ConsultationService, NotPendingError, question_id
from diagnostician.consult.store import (
    DB_FILENAME,
    ConsultationNotFoundError,
    ConsultationStore,
    DuplicateAnswerError,
    LoggedAnswer,
    SQLiteStore,
    StaleRevisionError,
    StoreError,
    data_dir_from_env,
    default_data_dir,
    open_store,
    sqlite_url,
)
from diagnostician.errors import InputError, InvalidAnswerError, SessionError


@pytest.fixture(params=["sqlite", "postgresql"])
def reopen(request, tmp_path: Path) -> Callable[[], ConsultationStore]:
    """Opens (again) the same empty database of one backend: every store test runs on both."""
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / DB_FILENAME)
    url = request.getfixturevalue("empty_postgres_url")  # skips without a PostgreSQL server
    return lambda: open_store(url)


@pytest.fixture()
def store(reopen):
    s = reopen()
    yield s
    s.close()


@pytest.fixture()
def sqlite_store(tmp_path: Path):
    s = SQLiteStore(tmp_path / DB_FILENAME)
    yield s
    s.close()


def _count(store, table: str) -> int:
    return store._read(f"SELECT COUNT(*) FROM {table}", ())[0][0]


def _begin(pack) -> Consultation:
    return Consultation.begin(54, "M", {"E_53": True}, pack=pack)


def _answered(pack) -> tuple[Consultation, str, object]:
    """A consultation after answering its first question, the finding asked and the value given."""
    c = _begin(pack)
    q = c.next_question()
    c.answer(q.code, None)
    return c, q.code, None


# ---------------------------------------------------------------- store


def test_create_and_get_round_trip(store, pack) -> None:
    c = _begin(pack)
    s = store.create(c.to_dict())
    assert len(s.id) == 32 and int(s.id, 16) >= 0  # uuid4 hex
    assert s.revision == 0 and (s.pack_name, s.pack_version) == (pack.name, pack.version)
    got = store.get(s.id)
    assert got.data == c.to_dict() and got.revision == 0 and got.created_at == got.updated_at
    assert Consultation.from_dict(got.data, pack).to_dict() == c.to_dict()
    assert store.create(c.to_dict()).id != s.id


def test_wal_mode_and_private_file(tmp_path, sqlite_store) -> None:
    assert sqlite_store.journal_mode == "wal"
    with sqlite3.connect(tmp_path / DB_FILENAME) as other:  # WAL is a property of the file, not the connection
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE((tmp_path / DB_FILENAME).stat().st_mode) == 0o600


def test_save_answer_survives_reopening(reopen, store, pack) -> None:
    s = store.create(_begin(pack).to_dict())
    c, code, value = _answered(pack)
    log = LoggedAnswer(question_id(code, 0), code, value, {"reply": 1})
    saved = store.save_answer(s.id, 0, c.to_dict(), log)
    assert saved.revision == 1 and saved.updated_at >= s.created_at
    store.close()
    again = reopen()
    try:
        got = again.get(s.id)
        assert got.revision == 1 and got.data == c.to_dict() and got.created_at == s.created_at
        logged = again.get_answer(s.id, question_id(code, 0))
        assert logged is not None and logged.result == {"reply": 1} and logged.finding == code and not logged.undone
        assert Consultation.from_dict(got.data, pack).questions_asked == 1
    finally:
        again.close()


def test_answer_log_is_keyed_by_question_id(store, pack) -> None:
    s = store.create(_begin(pack).to_dict())
    c, code, value = _answered(pack)
    log = LoggedAnswer("Q@0", code, value, {})
    store.save_answer(s.id, 0, c.to_dict(), log)
    with pytest.raises(DuplicateAnswerError):
        store.save_answer(s.id, 1, c.to_dict(), log)
    assert store.get(s.id).revision == 1  # the refused write changed nothing
    assert [a.question_id for a in store.answers(s.id)] == ["Q@0"]


def test_stale_revision_is_refused_and_nothing_logged(store, pack) -> None:
    s = store.create(_begin(pack).to_dict())
    c, code, value = _answered(pack)
    with pytest.raises(StaleRevisionError):
        store.save_answer(s.id, 5, c.to_dict(), LoggedAnswer("Q@5", code, value, {}))
    assert store.get_answer(s.id, "Q@5") is None and store.get(s.id).revision == 0


def test_undo_marks_the_latest_answer(store, pack) -> None:
    s = store.create(_begin(pack).to_dict())
    c, code, value = _answered(pack)
    store.save_answer(s.id, 0, c.to_dict(), LoggedAnswer("Q@0", code, value, {}))
    c.undo()
    after = store.save_undo(s.id, 1, c.to_dict(), code)
    assert after.revision == 2 and store.get_answer(s.id, "Q@0").undone


def test_delete_removes_consultation_and_answers(store, pack) -> None:
    s = store.create(_begin(pack).to_dict())
    c, code, value = _answered(pack)
    store.save_answer(s.id, 0, c.to_dict(), LoggedAnswer("Q@0", code, value, {}))
    store.delete(s.id)
    with pytest.raises(ConsultationNotFoundError):
        store.get(s.id)
    with pytest.raises(ConsultationNotFoundError):
        store.delete(s.id)
    with pytest.raises(ConsultationNotFoundError):
        store.save_answer(s.id, 1, c.to_dict(), LoggedAnswer("Q@1", code, value, {}))
    assert store.get_answer(s.id, "Q@0") is None
    assert _count(store, "answers") == 0


def test_list_most_recent_first(store, pack) -> None:
    first = store.create(_begin(pack).to_dict())
    second = store.create(_begin(pack).to_dict())
    c, code, value = _answered(pack)
    store.save_answer(first.id, 0, c.to_dict(), LoggedAnswer("Q@0", code, value, {}))
    listed = store.list()
    assert [x.id for x in listed] == [first.id, second.id] and listed[0].revision == 1
    assert [x.id for x in store.list(limit=1, offset=1)] == [second.id]


def test_store_refuses_bad_data_and_newer_schema(tmp_path, store) -> None:
    with pytest.raises(InputError):
        store.create({"format": "x"})  # no pack: not a Consultation.to_dict() form
    path = tmp_path / "newer.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        SQLiteStore(path)


def test_open_store_by_url(tmp_path) -> None:
    s = open_store(sqlite_url(tmp_path / "x.sqlite3"))
    try:
        assert isinstance(s, SQLiteStore) and isinstance(s, ConsultationStore)
        assert s.path == (tmp_path / "x.sqlite3").resolve()
    finally:
        s.close()
    for url in ("mysql://host/db", "sqlite://", "sqlite:///", "nonsense"):
        with pytest.raises(InputError):
            open_store(url)
    with socket.socket() as s:  # a port nobody listens on: refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match="cannot connect") as refused:
        open_store(f"postgresql://user:secret@127.0.0.1:{port}/db")
    assert "secret" not in str(refused.value) and "user:***@" in str(refused.value)


def test_data_dir_from_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DIAGNOSTICIAN_DATA_DIR", str(tmp_path))
    assert data_dir_from_env() == tmp_path
    monkeypatch.delenv("DIAGNOSTICIAN_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir_from_env() == default_data_dir()
    assert default_data_dir().name == "diagnostician"


# ---------------------------------------------------------------- idempotent answering over the store


@pytest.fixture()
def service(store, pack) -> ConsultationService:
    return ConsultationService(store, pack)


def test_service_answer_is_idempotent(service) -> None:
    loaded = service.create(54, "M", {"E_53": True})
    q = service.question(loaded)["question"]
    first, replayed = service.answer(loaded.id, q["id"], "?")
    assert not replayed and first["value"] is None
    again, replayed = service.answer(loaded.id, q["id"], None)  # the same answer, written differently
    assert replayed and again == first
    with pytest.raises(AnswerConflictError):
        service.answer(loaded.id, q["id"], [q["answers"][1]["value"]])
    with pytest.raises(InvalidAnswerError):
        service.answer(loaded.id, q["id"], {"not": "a value"})
    assert service.load(loaded.id).consultation.questions_asked == 1


def test_service_refuses_stale_and_undone_question_ids(service) -> None:
    loaded = service.create(30, "F", {"E_53": True})
    q = service.question(loaded)["question"]
    with pytest.raises(NotPendingError):
        service.answer(loaded.id, "E_1@0", True)
    service.answer(loaded.id, q["id"], None)
    undone = service.undo(loaded.id)
    assert undone["undone"]["finding"] == q["finding"]
    with pytest.raises(AnswerConflictError, match="taken back"):
        service.answer(loaded.id, q["id"], None)
    again = service.question(service.load(loaded.id))["question"]
    assert again["finding"] == q["finding"] and again["id"] != q["id"]
    with pytest.raises(SessionError, match="nothing to undo"):
        service.undo(loaded.id)


def test_concurrent_retries_record_one_answer(service, store) -> None:
    loaded = service.create(54, "M", {"E_53": True})
    q = service.question(loaded)["question"]
    results: list[tuple[dict, bool]] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            results.append(service.answer(loaded.id, q["id"], None))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(not replayed for _, replayed in results) == 1
    assert all(r == results[0][0] for r, _ in results)
    assert len(store.answers(loaded.id)) == 1 and store.get(loaded.id).revision == 1


def test_a_version_2_sqlite_file_gains_the_audit_value_column(tmp_path) -> None:
    """A database written before the audit log kept answers is upgraded in place; its old rows keep a null value."""
    import sqlite3

    from diagnostician.consult.store import SQLiteStore

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE consultations (id TEXT PRIMARY KEY, pack_name TEXT NOT NULL, pack_version TEXT NOT NULL, data TEXT NOT NULL,"
            " revision INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"
            "CREATE TABLE audit (consultation_id TEXT NOT NULL, created_at TEXT NOT NULL, pack_version TEXT NOT NULL,"
            " action TEXT NOT NULL, finding TEXT NOT NULL, triage_level TEXT NOT NULL, key_name TEXT);"
            "INSERT INTO consultations VALUES ('c1', 'ddxplus', '1.0.0', '{}', 0, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00');"
            "INSERT INTO audit VALUES ('c1', '2026-01-01T00:00:00+00:00', '1.0.0', 'answer', 'E_91', 'see_doctor', NULL);"
            "PRAGMA user_version = 2;"
        )
    store = SQLiteStore(path)
    try:
        (entry,) = store.audit_log("c1")
        assert entry.finding == "E_91" and entry.value is None
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 4
        assert "member_id" in {row[1] for row in db.execute("PRAGMA table_info(consultations)")}
        assert {"members", "diary", "followups", "record_meta"} <= {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
