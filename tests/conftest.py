"""Shared fixtures: the shipped pack, the shared data folder (tests that need it skip without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EN_DEV = SHARED / "ddxplus" / "patients_test_en_dev.csv"
FR_TEST = SHARED / "ddxplus-fr" / "patients_test_19.csv"

needs_shared = pytest.mark.skipif(
    not EN_DEV.exists(), reason="../shared/data (DDXPlus files) is absent: this clone is outside the workspace"
)


@pytest.fixture(scope="session")
def pack():
    """The shipped DDXPlus pack."""
    from diagnostician.knowledge.schema import load_pack

    return load_pack("ddxplus")


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the whole run (skipped when the Debian package `postgresql` is absent)."""
    import tempfile

    from pgserver import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install the Debian package `postgresql`")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed")
    # A fresh folder of its own under the system tmp (world-traversable), handed to the server's user.
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="diagnostician-pg-")), bindir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """The URL of a database on the test server, migrated to the newest schema once for the run."""
    from diagnostician.consult.migrations import upgrade

    url = postgres_server.create_database("diagnostician_tests")
    upgrade(url)
    return url


@pytest.fixture()
def empty_postgres_url(postgres_url) -> str:
    """The migrated test database with every table emptied (cheaper than a database per test)."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("TRUNCATE consultations, answers, audit, api_keys, members, diary, followups, record_meta")
    return postgres_url


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    """A `diagnostician serve` process of the test module's own (fresh data folder), stopped after it."""
    from servers import ApiServer

    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    srv = ApiServer(root / "data", root / "server.log")
    yield srv
    srv.stop()


@pytest.fixture()
def http(server):
    """An httpx client on the module's server."""
    import httpx

    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
