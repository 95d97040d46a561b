"""Readable plain text from an HTML mail body, with the standard library only.

``html.parser`` rescans the rest of the input for every ``<`` it cannot
close (``"<a " * 20000`` takes about 20 s on Python 3.11), so the input is
first cut into text and complete tags by one linear pass; a stray ``<`` is
escaped and an unclosed comment ends the document, as it does in browsers.
"""

from __future__ import annotations

import functools
import re
from html.parser import HTMLParser

# A tag must close before the next "<": each failed attempt then scans only
# up to that "<", which keeps the whole pass linear.
_TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
_SPACES = re.compile(r"[ \t\r\n\f\v\xa0\u200b]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")

_SKIP = frozenset({"script", "style", "title", "template", "noscript", "object"})
_PARAGRAPH = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl"}
)
_LINE = frozenset(
    {
        "div",
        "tr",
        "li",
        "dt",
        "dd",
        "section",
        "article",
        "header",
        "footer",
        "nav",
        "aside",
        "address",
        "form",
        "fieldset",
        "figure",
        "figcaption",
        "main",
        "hr",
        "caption",
        "center",
        "tbody",
        "thead",
        "tfoot",
    }
)
_MAX_INDENT = 6


@functools.lru_cache(maxsize=1)  # parse() and then visible_text() render the same HTML
def html_to_text(html: str) -> str:
    """Block elements become line breaks, list items "- ", links keep their target."""
    parser = _TextParser()
    parser.feed(_tidy(html))
    parser.close()
    return parser.text()


def _tidy(html: str) -> str:
    """Drop comments, keep complete tags, escape every other "<"."""
    out: list[str] = []
    pos = 0
    while (start := html.find("<", pos)) >= 0:
        out.append(html[pos:start])
        if html.startswith("<!--", start):
            end = html.find("-->", start + 4)
            if end < 0:
                return "".join(out)
            pos = end + 3
            continue
        match = _TAG.match(html, start)
        if match:
            out.append(match.group())
            pos = match.end()
        else:
            out.append("&lt;")
            pos = start + 1
    out.append(html[pos:])
    return "".join(out)


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._newlines = 0  # line breaks owed before the next text
        self._skip = 0
        self._head = False  # ends at </head> or at <body>, which mail often omits
        self._pre = 0
        self._lists = 0
        self._link: tuple[int, str] | None = None  # (output position, href)

    def text(self) -> str:
        text = _TRAILING_SPACE.sub("\n", "".join(self._out))
        return _BLANK_LINES.sub("\n\n", text).strip()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in ("head", "body"):
            self._head = tag == "head"
        elif tag == "br":
            self._line_break()
        elif tag == "li":
            self._break(1)
            self._emit("  " * min(max(self._lists - 1, 0), _MAX_INDENT) + "- ", indent=True)
        elif tag == "a":
            self._end_link()  # HTML forbids nested links; close the open one
            self._link = (len(self._out), dict(attrs).get("href") or "")
        else:
            self._lists += tag in ("ul", "ol")  # counted first: _block asks for nesting
            self._block(tag)
            self._pre += tag == "pre"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._line_break()
        elif tag in _LINE or tag in _PARAGRAPH:
            self._block(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "head":
            self._head = False
        elif tag == "a":
            self._end_link()
        elif tag in ("td", "th"):
            self._emit(" ")
        self._block(tag)
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        elif tag in ("ul", "ol"):
            self._lists = max(0, self._lists - 1)

    def handle_data(self, data: str) -> None:
        if self._skip or self._head:
            return
        if not self._pre:
            data = _SPACES.sub(" ", data)
            if data == " " and (not self._out or self._out[-1].endswith((" ", "\n"))):
                return
        self._emit(data)

    def _block(self, tag: str) -> None:
        if tag in ("ul", "ol") and self._lists > 1:
            self._break(1)  # a nested list continues its parent item
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _LINE:
            self._break(1)

    def _break(self, count: int) -> None:
        self._newlines = max(self._newlines, count)

    def _line_break(self) -> None:
        """<br> always adds a line, even several in a row, unlike block edges."""
        if not self._skip and not self._head:
            self._flush()
            self._out.append("\n")

    def _emit(self, text: str, indent: bool = False) -> None:
        if self._skip or self._head or not text:
            return
        self._flush()
        if not indent and not self._pre and self._out and self._out[-1].endswith("\n"):
            text = text.lstrip(" ")
        if text:
            self._out.append(text)

    def _flush(self) -> None:
        if self._newlines and self._out:
            self._out.append("\n" * self._newlines)
        self._newlines = 0

    def _end_link(self) -> None:
        if self._link is None:
            return
        start, href = self._link
        self._link = None
        label = "".join(self._out[start:]).strip()
        target = href.strip()
        if target.lower().startswith("mailto:"):
            target = target[7:]
        if target and not target.startswith(("#", "javascript:")) and target != label:
            self._emit(f" ({target})" if label else target)
