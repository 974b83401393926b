"""Alembic migrations of the consultation database, run programmatically (no alembic.ini needed).

`diagnostician db upgrade` calls `upgrade(url)`. The environment (env.py) and the revisions
(versions/) ship inside the package, so an installed wheel can migrate a database by itself.
"""

from __future__ import annotations

from pathlib import Path

from diagnostician.errors import InputError

SCRIPT_LOCATION = Path(__file__).resolve().parent


def sqlalchemy_url(url: str) -> str:
    """The store URL as SQLAlchemy reads it: PostgreSQL through psycopg 3 (SQLAlchemy's default driver is psycopg2)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InputError(f"unsupported store URL {url!r}")
    if scheme.lower() in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme.lower() == "sqlite":
        return url
    raise InputError(f"unsupported store URL {url!r} (expected sqlite:///PATH or postgresql://USER@HOST/DB)")


def alembic_config(url: str | None = None):  # -> alembic.config.Config (imported lazily: only migrations need alembic)
    """An Alembic configuration pointing at the shipped migrations, and at `url` when given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url is not None:
        # Through attributes, not the ini option: configparser would read a '%' in a password as interpolation.
        config.attributes["url"] = sqlalchemy_url(url)
    return config


def head_revision() -> str:
    """The newest revision of the shipped migrations."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None  # the package ships at least revision 0001
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (each migration in its own transaction)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at (None when it has no diagnostician schema)."""
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Migrate the PostgreSQL database at `url` back to `revision` (SQLite files are versioned by the store itself)."""
    from alembic import command

    if url.lower().startswith("sqlite:"):
        raise InputError("downgrade works on PostgreSQL; a SQLite file's schema belongs to the store (keep a copy of the file instead)")
    command.downgrade(alembic_config(url), revision)
