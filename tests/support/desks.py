"""A whole desk (daemon.app.App) made from a configuration text, as `ticketd run` makes it:
the file written and loaded, the runtime built from it. For tests of several brands, whose
configuration is the point of the test and is best read whole."""

from __future__ import annotations

from pathlib import Path

from config import load_settings
from daemon import runtime
from daemon.app import App
from daemon.runtime import Current
from storage import db
from storage.blobs import BlobStore

# The desk's own part: its address, the database, an SMTP server that is never reached (the
# outbox only queues) and no clamd. A test appends its brands, team and limits; `{url}` is
# the database's and literal braces are doubled, as for str.format.
DESK = """
[support]
address = "desk@ops.test"
name = "Operations Desk"

[database]
url = "{url}"

[smtp]
host = "127.0.0.1"
tls = "none"

[scan]
enabled = false
"""


def desk_from(text: str, tmp_path: Path, secret: str) -> App:
    """The desk of this configuration text, its files under `tmp_path`."""
    path = tmp_path / "ticketd.toml"
    path.write_text(text)
    settings = load_settings(path, {"TICKETD_SECURITY__SECRET": secret})
    engine = db.make_engine(settings.database.url)
    return App(engine, db.session_factory(engine), BlobStore(tmp_path / "files"),
               Current(runtime.build(settings)))
