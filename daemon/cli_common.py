"""What every `ticketd` command shares: loading the settings, building the application, and
the exit codes a failure maps to. The command modules (cli.py, cli_outbox.py, cli_sla.py)
import from here, and none of them from another."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

import click
from sqlalchemy import exc as sa_exc

from config import EX_CONFIG, ConfigError, Settings, load_settings
from config.redact import secrets_of
from daemon import app as app_mod
from daemon import logs
from daemon.systemd import notify

__all__ = ["EX_CONFIG", "EX_TEMPFAIL", "app_when_database_answers", "app_or_exit",
           "settings_or_exit", "temp_failures_exit_75"]

EX_TEMPFAIL = 75  # sysexits.h: an MTA piping mail into `ticketd ingest` tries again later


def settings_or_exit(ctx: click.Context) -> Settings:
    """The checked settings of `--config`; exits 78 with every problem when there are any."""
    try:
        return load_settings(ctx.obj["config"])
    except ConfigError as err:
        click.echo(logs.for_stderr(f"ticketd: configuration error:\n{err}"), err=True)
        sys.exit(EX_CONFIG)


def app_or_exit(ctx: click.Context, *, check_schema: bool = True) -> app_mod.App:
    """The application of the settings, logging set up; exits 78 on a configuration error
    or a schema that is not this version's."""
    loaded = settings_or_exit(ctx)
    logs.setup(loaded.logging.level, loaded.logging.format, secrets_of(loaded))
    try:
        return app_mod.build(loaded, check_schema=check_schema,
                             source=ctx.obj["config"] or "environment")
    except ConfigError as err:
        click.echo(logs.for_stderr(f"ticketd: configuration error:\n{err}"), err=True)
        sys.exit(EX_CONFIG)
    except app_mod.db.SchemaError as err:
        click.echo(logs.for_stderr(f"ticketd: {err}"), err=True)
        sys.exit(EX_CONFIG)


def app_when_database_answers(ctx: click.Context) -> app_mod.App:
    """The daemon waits for a database that is down at start, telling systemd why."""
    delay = 1.0
    while True:
        try:
            return app_or_exit(ctx)
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as err:
            reason = str(err).splitlines()[0][:200]
            notify(f"STATUS=waiting for the database: {reason}")
            click.echo(logs.for_stderr(f"ticketd: database unavailable, retrying in {delay:.0f}s: "
                                       f"{reason}", logging.WARNING), err=True)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def temp_failures_exit_75(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A database that is down or locked is a temporary failure: an MTA will retry."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as err:
            click.echo(logs.for_stderr(f"ticketd: database unavailable: "
                                       f"{str(err).splitlines()[0]}"), err=True)
            sys.exit(EX_TEMPFAIL)

    return wrapper


def instant(text: str | None) -> datetime | None:
    """--now as an aware datetime; a time without an offset is UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("must be an ISO time, e.g. 2026-11-21T09:30:00Z",
                                 param_hint="--now") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
