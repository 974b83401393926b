"""PostgreSQL storage on a real server the tests start: migrations, and API processes sharing one database."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import httpx
import psycopg
import pytest
from servers import ServerProcess

from diagnostician.cli.main import main
from diagnostician.consult import Consultation
from diagnostician.consult.migrations import head_revision, sqlalchemy_url
from diagnostician.consult.service import question_id
from diagnostician.consult.store import LoggedAnswer, PostgresStore, StaleRevisionError, StoreError, open_store

TABLES = {"consultations", "answers", "audit", "api_keys", "members", "diary", "followups", "record_meta", "alembic_version"}


def _cli(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return int(done.value.code or 0)


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        return {r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_db_upgrade_migrates_an_empty_database_to_head(postgres_server, capsys) -> None:
    url = postgres_server.create_database("migrate_empty")
    with pytest.raises(StoreError, match="no diagnostician schema: run `diagnostician db upgrade"):
        open_store(url)  # the store never migrates by itself
    assert _tables(url) == set()
    assert _cli("db", "upgrade", "--url", url) == 0
    assert "schema at the newest revision" in capsys.readouterr().err
    assert _tables(url) == TABLES
    with psycopg.connect(url) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
    assert _cli("db", "upgrade", "--url", url) == 0  # a second run has nothing to do
    store = open_store(url)
    try:
        assert isinstance(store, PostgresStore) and store.list() == []
    finally:
        store.close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffff'")
    with pytest.raises(StoreError, match=f"at schema revision ffff, not {head_revision()}"):
        open_store(url)


def test_db_upgrade_reports_an_unreachable_server_in_one_line(capsys) -> None:
    assert _cli("db", "upgrade", "--url", "postgresql://nobody:pw@127.0.0.1:1/none") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot migrate postgresql://nobody:***@127.0.0.1:1/none") and "\n" not in err
    assert sqlalchemy_url("postgres://h/db") == "postgresql+psycopg://h/db"


def test_two_connections_race_on_the_revision(empty_postgres_url, pack) -> None:
    one, two = open_store(empty_postgres_url), open_store(empty_postgres_url)
    try:
        c = Consultation.begin(54, "M", {"E_53": True}, pack=pack)
        s = one.create(c.to_dict())
        q = c.next_question()
        c.answer(q.code, None)
        one.save_answer(s.id, 0, c.to_dict(), LoggedAnswer(question_id(q.code, 0), q.code, None, {}))
        with pytest.raises(StaleRevisionError):  # the other process read revision 0 before the first wrote
            two.save_answer(s.id, 0, c.to_dict(), LoggedAnswer("other@0", q.code, None, {}))
        assert [a.question_id for a in two.answers(s.id)] == [question_id(q.code, 0)]
    finally:
        one.close()
        two.close()


# ---------------------------------------------------------------- real servers


@pytest.fixture(scope="module")
def two_servers(postgres_server, tmp_path_factory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two `diagnostician serve` processes on different ports, one PostgreSQL database behind both."""
    url = postgres_server.create_database("shared_servers")
    assert _cli("db", "upgrade", "--url", url) == 0
    root = tmp_path_factory.mktemp("pg-servers")
    env = {"DIAGNOSTICIAN_DATABASE_URL": url}
    servers: list[ServerProcess] = []

    def start(i: int) -> None:
        servers.append(ServerProcess(["serve"], "/v1/health", None, root / f"server{i}.log", env=env))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]  # start both at once: half the wait
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(servers) == 2, "a server did not start (see its log under pytest's tmp folder)"
        assert f"consultations in {url}" in Path(servers[0].log).read_text()
        yield servers[0], servers[1]
    finally:
        for s in servers:
            s.stop()


def test_serve_with_postgresql_completes_a_consultation(two_servers) -> None:
    server, _ = two_servers
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/v1/consultations", json={"age": 54, "sex": "M", "findings": {"E_53": True}})
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        for _ in range(100):
            step = http.get(f"/v1/consultations/{cid}/question").json()
            if step["done"]:
                break
            q = step["question"]
            answer = {"question_id": q["id"], "value": None}
            first = http.post(f"/v1/consultations/{cid}/answers", json=answer)
            assert first.status_code == 200, first.text
            again = http.post(f"/v1/consultations/{cid}/answers", json=answer)  # a retry is replayed, not re-applied
            assert again.status_code == 200 and again.json() == first.json()
        else:
            raise AssertionError("the consultation did not end within 100 questions")
        audit = http.get(f"/v1/consultations/{cid}/audit")
        assert audit.status_code == 200 and audit.json()
        assert http.delete(f"/v1/consultations/{cid}").status_code in (200, 204)
        assert http.get(f"/v1/consultations/{cid}").status_code == 404


def test_two_servers_share_one_database(two_servers) -> None:
    a, b = two_servers
    with httpx.Client(base_url=a.url, timeout=30) as on_a, httpx.Client(base_url=b.url, timeout=30) as on_b:
        cid = on_a.post("/v1/consultations", json={"age": 30, "sex": "F", "findings": {"E_53": True}}).json()["id"]
        assert on_b.get(f"/v1/consultations/{cid}").status_code == 200  # created on A, read on B
        q = on_b.get(f"/v1/consultations/{cid}/question").json()["question"]
        r = on_b.post(f"/v1/consultations/{cid}/answers", json={"question_id": q["id"], "value": None})
        assert r.status_code == 200, r.text
        # The same answer sent to A (a client retrying through the load balancer) is a replay, not a conflict.
        replay = on_a.post(f"/v1/consultations/{cid}/answers", json={"question_id": q["id"], "value": None})
        assert replay.status_code == 200 and replay.json() == r.json()
        assert replay.headers.get("idempotent-replayed") == "true"
        following = on_a.get(f"/v1/consultations/{cid}/question").json()["question"]
        assert following["id"] != q["id"]
        assert on_a.delete(f"/v1/consultations/{cid}").status_code in (200, 204)
        assert on_b.get(f"/v1/consultations/{cid}").status_code == 404


def test_db_current_and_downgrade(postgres_server, capsys, tmp_path) -> None:
    url = postgres_server.create_database("migrate_down")
    assert _cli("db", "current", "--url", url) == 0
    assert "revision none" in capsys.readouterr().out
    assert _cli("db", "upgrade", "--url", url) == 0
    capsys.readouterr()
    assert _cli("db", "current", "--url", url) == 0
    assert f"revision {head_revision()}, newest {head_revision()} (up to date)" in capsys.readouterr().out
    assert _cli("db", "downgrade", "--to", "0001", "--url", url) == 0
    with psycopg.connect(url) as db:
        columns = {r[0] for r in db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'audit'")}
    assert "value" not in columns
    with pytest.raises(StoreError, match="not " + head_revision()):
        open_store(url)  # the server refuses an old schema until it is upgraded again
    capsys.readouterr()
    assert _cli("db", "current", "--url", url) == 0
    assert "needs `diagnostician db upgrade`" in capsys.readouterr().out
    assert _cli("db", "upgrade", "--url", url) == 0
    open_store(url).close()
    # A SQLite file's schema belongs to the store: downgrading it is refused with one line.
    assert _cli("db", "downgrade", "--to", "0001", "--url", f"sqlite:///{tmp_path / 'x.sqlite3'}") == 2
    assert "downgrade works on PostgreSQL" in capsys.readouterr().err


def test_the_household_record_is_encrypted_on_postgresql_too(empty_postgres_url) -> None:
    """The same store code seals payloads on PostgreSQL: rows are unreadable without the passphrase."""
    from diagnostician.consult.crypto import RecordLockedError
    from diagnostician.consult.household import Household, history_item

    hh = Household(open_store(empty_postgres_url, passphrase="pg secret"))
    try:
        m = hh.add_member("Pat Postgres", "M", age=50, history=[history_item("condition", "diabetes")])
        hh.record_vital(m.id, "glucose", "7.2 mmol/L")
    finally:
        hh.store.close()
    with psycopg.connect(empty_postgres_url) as db:
        for table in ("members", "diary"):
            values = [r[0] for r in db.execute(f"SELECT data FROM {table}")]
            assert values and all(v.startswith("enc1:") and "Pat" not in v for v in values)
    with pytest.raises(RecordLockedError):
        open_store(empty_postgres_url)
    hh = Household(open_store(empty_postgres_url, passphrase="pg secret"))
    try:
        assert hh.member("Pat Postgres").history[0].text == "diabetes" and hh.diary(m.id)[0].value == 7.2
    finally:
        hh.store.close()
