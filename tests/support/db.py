"""Databases for tests: every storage test runs on SQLite and on PostgreSQL.

Each test gets a fresh, migrated database: on SQLite a copy of a migrated
template file, on PostgreSQL `CREATE DATABASE ... TEMPLATE` of a migrated
template database (fast, and the real server). PostgreSQL is found at
TICKETD_TEST_PG_URL (default: the local server on 127.0.0.1:5432, user postgres).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from storage import db

PG_ADMIN_URL = os.environ.get(
    "TICKETD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _admin():  # noqa: ANN202
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _pg_url(name: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    name = f"ticketd_tpl_{uuid.uuid4().hex[:10]}"
    admin = _admin()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as err:  # noqa: BLE001 - any failure means no server
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {err}")
        pytest.skip(f"PostgreSQL is not reachable: {err}")
    engine = db.make_engine(_pg_url(name))
    db.upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def fresh_sqlite(template: Path, where: Path) -> str:
    target = where / "ticketd.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield fresh_sqlite(request.getfixturevalue("_sqlite_template"), tmp_path)
        return
    yield from _fresh_pg(request)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh migrated PostgreSQL database, for what only PostgreSQL does (several daemons)."""
    yield from _fresh_pg(request)


def _fresh_pg(request: pytest.FixtureRequest) -> Iterator[str]:
    template = request.getfixturevalue("_pg_template")
    name = f"ticketd_t_{uuid.uuid4().hex[:12]}"
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _pg_url(name)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh migrated SQLite database, for tests that are about something else."""
    return fresh_sqlite(_sqlite_template, tmp_path)
