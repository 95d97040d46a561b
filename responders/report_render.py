"""A report as JSON, CSV, HTML (with its charts inline) or plain text (the digest's).

Pure: a Report (storage.reports) in, text out. The HTML comes from a Jinja2 template with
autoescaping on, so a category or subject from mail cannot write markup; the only markup
let through unescaped is the SVG matplotlib drew.
"""

from __future__ import annotations

import csv
import io
import json
from importlib.resources import files
from typing import Any

from jinja2 import Environment, FunctionLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from responders import report_charts as charts
from storage.reports import FIGURES, Figures, Report, regulator_layout

_TEMPLATES = files("responders") / "report_templates"
DURATION_COLUMNS = ("first_answer_count", "first_answer_median_hours", "first_answer_p90_hours",
                    "final_count", "final_median_hours", "final_p90_hours")


def as_json(report: Report, profile: str | None = None) -> str:
    doc = report.as_dict()
    if profile:
        doc["regulator"] = regulator_layout(report, profile)
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


# --- CSV -----------------------------------------------------------------------------

def as_csv(report: Report, profile: str | None = None) -> str:
    """One row per slice ("all", then each category); with a profile, its layout instead."""
    if profile:
        return _layout_csv(regulator_layout(report, profile))
    outcomes = list(report.total.as_dict()["adr_outcomes"])
    header = ["category", *FIGURES, "deadline_extensions",
              *(f"adr_{name}" for name in outcomes), *DURATION_COLUMNS]
    rows = [_csv_row("all", report.total, outcomes)]
    rows += [_csv_row(name, figures, outcomes)
             for name, figures in sorted(report.by_category.items())
             if figures.counts_anything()]
    return _write([header, *rows])


def _csv_row(name: str, figures: Figures, outcomes: list[str]) -> list[Any]:
    doc = figures.as_dict()
    first, final = doc["time_to_first_answer"], doc["time_to_final"]
    return [name, *(doc[f] for f in FIGURES), doc["deadline_extensions"],
            *(figures.adr_outcomes.get(o, 0) for o in outcomes),
            first["count"], _blank(first["median_hours"]), _blank(first["p90_hours"]),
            final["count"], _blank(final["median_hours"]), _blank(final["p90_hours"])]


def _layout_csv(layout: dict[str, Any]) -> str:
    """The MGA list is a table of cases; the other layouts are `figure,value` lines."""
    if layout["profile"] == "mga":
        columns = ["player_id", "ticket", "subject", "category", "entity", "reference",
                   "referred_at", "outcome", "concluded_at"]
        return _write([columns, *([_blank(case[c]) for c in columns]
                                  for case in layout["disputes"])])
    return _write([["figure", "value"], *_flat(layout, "")])


def _flat(doc: dict[str, Any], prefix: str) -> list[list[Any]]:
    lines: list[list[Any]] = []
    for key, value in doc.items():
        if key == "profile":
            continue
        if isinstance(value, dict):
            lines += _flat(value, f"{prefix}{key}.")
        else:
            lines.append([f"{prefix}{key}", value])
    return lines


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _write(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    # RFC 4180's CRLF: with "\n" alone the writer leaves a lone CR in a cell unquoted, and a
    # spreadsheet starts a new row there (one that may start with a formula).
    csv.writer(buffer, lineterminator="\r\n").writerows([_inert(c) for c in row]
                                                        for row in rows)
    return buffer.getvalue()


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV
# Injection"); subjects and categories come from players' mail.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert(cell: Any) -> Any:
    """A text cell a spreadsheet shows as text: a leading quote before a formula's start.
    Numbers are ours and stay numbers."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


# --- HTML and text -------------------------------------------------------------------

def _load(name: str) -> str:
    return (_TEMPLATES / name).read_text(encoding="utf-8")


# HTML escaped, text parts not (a text part with &amp; in it would be wrong), anything else
# escaped to be safe.
_ENV = Environment(loader=FunctionLoader(_load),
                   autoescape=select_autoescape(enabled_extensions=("html.j2",),
                                                disabled_extensions=("txt.j2",), default=True),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def as_html(report: Report, profile: str | None = None) -> str:
    """A page with no external resource and no script: figures, three charts, tables."""
    doc = report.as_dict()
    # Markup: the SVG is matplotlib's, and matplotlib escapes the labels it writes into it.
    pictures = {
        "weekly": Markup(charts.svg(charts.weekly_by_category(report))),
        "histogram": Markup(charts.svg(charts.answer_histogram(report))),
        "compliance": Markup(charts.svg(charts.deadline_compliance(report))),
    }
    layout = regulator_layout(report, profile) if profile else None
    return _ENV.get_template("report.html.j2").render(
        doc=doc, figures=FIGURES, charts=pictures, layout=layout, profile=profile)


def as_text(report: Report) -> str:
    """The figures as lines of text: the digest's text part."""
    return _ENV.get_template("digest.txt.j2").render(doc=report.as_dict(), figures=FIGURES)
