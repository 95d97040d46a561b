"""The HTML report in a real browser engine: it loads without console errors, needs no
other resource, and its three charts are drawn; text from mail is escaped."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from matplotlib import image

from daemon.cli import main
from responders.report_render import as_html
from storage import db, queries
from storage.models import Event
from storage.reports import Period, build_report
from tests.reports import desk50
from tests.reports.browser import render
from tests.support.configs import write_config

CHARTS = ("chart-weekly", "chart-histogram", "chart-compliance")
# The colours of the compliance chart (in time, late) and of the histogram's bars.
GREEN, RED, BLUE = (0x2E, 0x7D, 0x32), (0xC6, 0x28, 0x28), (0x15, 0x65, 0xC0)


def _pixels_of(picture: np.ndarray, colour: tuple[int, int, int]) -> int:
    rgb = (picture[..., :3] * 255).round().astype(int)
    return int(np.all(np.abs(rgb - np.array(colour)) <= 3, axis=-1).sum())


def _figure(dom: str, element_id: str) -> str:
    start = dom.index(f'id="{element_id}"')
    return dom[start:dom.index("</figure>", start)]


def test_the_report_opens_in_chromium_and_shows_its_charts(sqlite_url: str,
                                                           tmp_path: Path) -> None:
    engine = db.make_engine(sqlite_url)
    with db.session_factory(engine).begin() as session:
        desk50.load(session)
    engine.dispose()
    page = tmp_path / "report.html"
    result = CliRunner().invoke(main, [
        "--config", str(write_config(tmp_path / "etc", sqlite_url)), "report",
        "--from", "2026-11-02", "--to", "2026-11-15", "--format", "html", "--profile", "mga",
        "--out", str(page)])
    assert result.exit_code == 0, result.output

    shown = render(page, tmp_path)

    assert shown.console == []
    for chart in CHARTS:  # each chart is an SVG the engine parsed, with drawn shapes in it
        drawn = _figure(shown.dom, chart)
        assert "<svg" in drawn and drawn.count("<path") > 10, chart
    assert "<script" not in shown.dom
    # Nothing to fetch: the SVG namespaces (xmlns) are names, not resources, and url(#...)
    # is a clip path within the page.
    assert not re.search(r"""(src|href)=["']?(https?:|//)|url\((?!#)""", shown.dom)
    assert 'id="tile-complaints"><b>44</b>' in shown.dom
    picture = image.imread(shown.screenshot)
    assert _pixels_of(picture, GREEN) > 2000  # painted, not just present in the DOM
    assert _pixels_of(picture, RED) > 500
    assert _pixels_of(picture, BLUE) > 2000


def test_text_from_mail_is_escaped(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    sessions = db.session_factory(engine)
    at = datetime(2026, 11, 3, 10, tzinfo=UTC)
    with sessions.begin() as session:
        who = queries.contact_id(session, "player@players.test")
        ticket_id, _ = queries.insert_ticket(
            session, subject="<b>bold</b> & co", requester_id=who,
            category="<script>alert(1)</script>", priority="normal", language="en")
        session.add(Event(ticket_id=ticket_id, kind="created", data={}, created_at=at))
        session.add(Event(ticket_id=ticket_id, kind="adr_referral", created_at=at,
                          data={"entity": '<img src=x onerror="alert(2)">', "reference": "R"}))
    with sessions() as session:
        page = as_html(build_report(session, Period(date(2026, 11, 2), date(2026, 11, 8))),
                       "mga")
    engine.dispose()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page
