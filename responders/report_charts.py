"""The report's charts, drawn with matplotlib's Agg backend (no display, no GUI toolkit).

Each chart is a function of the report's figures returning a Figure; `svg` and `png` turn
one into bytes. SVGs carry their text as paths and no date, so a page that inlines them
needs no font or other resource, and the same figures give the same bytes.
"""

from __future__ import annotations

import atexit
import io
import os
import re
import shutil
import tempfile
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from storage.reports import Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_SIZE = (7.5, 3.4)  # inches; the page shows them 100% wide
_IN_TIME, _LATE = "#2e7d32", "#c62828"
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)  # RDF naming its maker: not needed
_BINS_HOURS = (0, 1, 4, 8, 24, 48, 72, 168, 336, 672, 1344)  # up to 8 weeks


def weekly_by_category(report: Report) -> Figure:
    """Complaints received per ISO week, stacked by category."""
    figure, axes = _figure("Complaints received per week (UTC), by category")
    weeks = sorted({monday for monday, _ in report.weekly})
    categories = sorted({category for _, category in report.weekly})
    labels = [_week_label(monday) for monday in weeks]
    bottom = [0] * len(weeks)
    for category in categories:
        counts = [report.weekly.get((monday, category), 0) for monday in weeks]
        axes.bar(labels, counts, bottom=bottom, label=category)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    if categories:
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        _nothing(axes)
    axes.set_ylabel("complaints")
    axes.yaxis.get_major_locator().set_params(integer=True)
    return figure


def answer_histogram(report: Report) -> Figure:
    """How long players waited for a first answer, in bands of hours."""
    figure, axes = _figure("Time to first answer (hours)")
    hours = report.total.first_answer_hours
    bands = list(zip(_BINS_HOURS, _BINS_HOURS[1:], strict=False))
    counts = [sum(low <= h < high for h in hours) for low, high in bands]
    counts[-1] += sum(h >= _BINS_HOURS[-1] for h in hours)  # the last band is open
    labels = [f"{low}-{high}" for low, high in bands[:-1]] + [f"{bands[-1][0]}+"]
    axes.bar(labels, counts, color="#1565c0")
    axes.set_xlabel("hours from receipt to the first answer")
    axes.set_ylabel("complaints")
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.tick_params(axis="x", labelsize=8)
    if not hours:
        _nothing(axes)
    return figure


def deadline_compliance(report: Report) -> Figure:
    """Acknowledgements and final decisions: within their deadline, or not."""
    figure, axes = _figure("Deadline compliance")
    total = report.total
    names = ["acknowledgement", "final decision"]
    in_time = [total.acknowledged_in_time, total.final_in_time]
    late = [total.complaints - total.acknowledged_in_time,
            total.final_decisions - total.final_in_time]
    axes.barh(names, in_time, color=_IN_TIME, label="in time")
    axes.barh(names, late, left=in_time, color=_LATE, label="late or missing")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_xlabel("complaints")
    axes.xaxis.get_major_locator().set_params(integer=True)
    return figure


def svg(figure: Figure) -> str:
    """The figure as an SVG element (no XML prolog, no DOCTYPE), ready to inline."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return _METADATA.sub("", text[text.index("<svg"):])


def png(figure: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _figure(title: str) -> tuple[Figure, Axes]:
    # Figure() rather than pyplot: no global state, nothing to close, thread-safe enough.
    figure = _figure_class()(figsize=_SIZE, layout="constrained")
    axes = figure.subplots()
    axes.set_title(title, fontsize=11)
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _nothing(axes: Axes) -> None:
    axes.text(0.5, 0.5, "nothing in this period", transform=axes.transAxes,
              ha="center", va="center", color="#777777")


def _week_label(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


# --- matplotlib, loaded when the first chart is drawn ---------------------------------

@cache
def _figure_class() -> type[Figure]:
    """matplotlib's Figure, imported here and not with this module: the daemon imports this
    module (the digest) at start and should not pay for matplotlib until a digest is due."""
    _choose_config_dir()
    import matplotlib

    matplotlib.use("Agg")  # before pyplot is imported anywhere: a daemon has no display
    from matplotlib.figure import Figure

    return Figure


def _choose_config_dir() -> None:
    """Where matplotlib keeps its font cache, when MPLCONFIGDIR does not say: under systemd
    the service's cache or state directory, kept across restarts; else its own default in
    the home when that is writable; else a private temporary directory. Left to itself,
    matplotlib logs a warning and rebuilds the cache when the home is not writable (the
    unit's ProtectHome, or the admin wrapper running as ticketd with root's HOME)."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    service = os.environ.get("CACHE_DIRECTORY") or os.environ.get("STATE_DIRECTORY")
    if service:  # systemd's list of directories: the first is the service's own
        os.environ["MPLCONFIGDIR"] = str(Path(service.split(":")[0]) / "matplotlib")
        return
    if all(_writable(base, "matplotlib") for base in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME")):
        return
    private = tempfile.mkdtemp(prefix="ticketd-matplotlib-")  # mode 0700
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    os.environ["MPLCONFIGDIR"] = private


def _writable(xdg_variable: str, name: str) -> bool:
    """Whether matplotlib's default directory under $XDG_... (or ~/.config, ~/.cache) can be
    made and written, as matplotlib itself tries it."""
    default = ".config" if xdg_variable == "XDG_CONFIG_HOME" else ".cache"
    try:
        base = Path(os.environ.get(xdg_variable) or Path.home() / default)
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home at all
        return False
    return os.access(folder, os.W_OK)
