"""The new part of a player's reply: what is left after quotes and client signatures.

Players answer from phones, webmail and Outlook and quote everything. The agent
should see only what the player just wrote (the full text is stored elsewhere),
so ``visible_text`` cuts, in this order:

1. our own marker line and everything below it, also when quoted or re-wrapped;
2. client quote headers ("On ... wrote:", "... пишет:", Yandex and Mail.ru date
   lines, Outlook "From:/Sent:" and "От:/Отправлено:" blocks, "Original Message"
   and forward separators) together with what they introduce;
3. ``>``-quoted blocks, keeping the player's own lines written between them;
4. client signatures ("-- ", "Sent from my iPhone", "Отправлено с iPhone", ...).

Everything is line by line with bounded look-ahead, and header patterns only
see the first ``LINE_CAP`` characters of a line: no pattern can backtrack over
the whole text, so hostile input stays linear.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from parsers.html import html_to_text

# The line above which a reply to our mail is the player's: one per language we write in.
REPLY_MARKER_BY_LANGUAGE: dict[str, str] = {
    "en": "##- Please type your reply above this line -##",
    "ru": "##- Пожалуйста, пишите ответ выше этой строки -##",
    "uk": "##- Будь ласка, пишіть відповідь над цим рядком -##",
    "kk": "##- Жауабыңызды осы жолдың үстіне жазыңыз -##",
    "uz": "##- Iltimos, javobingizni shu qatordan yuqoriga yozing -##",
    "az": "##- Zəhmət olmasa, cavabınızı bu sətirdən yuxarıda yazın -##",
    "tr": "##- Lütfen yanıtınızı bu satırın üstüne yazın -##",
    "de": "##- Bitte schreiben Sie Ihre Antwort über dieser Zeile -##",
    "es": "##- Por favor, escriba su respuesta encima de esta línea -##",
    "pt": "##- Por favor, escreva sua resposta acima desta linha -##",
}
# Every marker is looked for in every reply: a player may answer from another language's mail.
REPLY_MARKERS: tuple[str, ...] = tuple(REPLY_MARKER_BY_LANGUAGE.values())  # en, ru first


def reply_marker(language: str) -> str:
    """The marker we put at the top of a mail in `language` (English for one we lack)."""
    return REPLY_MARKER_BY_LANGUAGE.get(language, REPLY_MARKER_BY_LANGUAGE["en"])

LINE_CAP = 300  # real quote headers are far shorter; longer text is never one
_HEADER_LINES = 5  # a quote header wrapped by the client spans at most this many lines


def visible_text(
    text: str, html: str | None = None, *, markers: tuple[str, ...] = REPLY_MARKERS
) -> str:
    """The player's new text of a reply, or the whole text when everything looked quoted."""
    if html and html.strip() and (not text.strip() or _rendered_from(text, html)):
        # The text says nothing the HTML does not, and the HTML also shows where
        # the quote is, which its rendering as text loses.
        visible = _visible(html_to_text(_prune_html(html)), markers)
        return visible or html_to_text(html).strip()
    return _visible(text, markers) or "\n".join(_lines_of(text)).strip()


def _rendered_from(text: str, html: str) -> bool:
    """Whether ``text`` is only the HTML part as text, as ``parsers.mail`` makes it."""
    return text.split() == html_to_text(html).split()


def _visible(text: str, markers: Sequence[str]) -> str:
    lines = _lines_of(text)
    cut = _cut_at_marker(lines, markers)
    if len(cut) < len(lines):
        cut = _drop_attribution_above(cut)
    lines = _drop_quotes(_View(cut))
    lines = _cut_signature(lines)
    return _tidy(lines)


def _lines_of(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _tidy(lines: list[str]) -> str:
    """Trailing spaces, blank lines at both ends and rules left above a cut go."""
    lines = [line.rstrip() for line in lines]
    while lines and (not lines[-1] or _is_rule(lines[-1])):
        lines.pop()
    start = 0
    while start < len(lines) and not lines[start]:
        start += 1
    return "\n".join(lines[start:])


def _is_rule(line: str) -> bool:
    return len(line) <= LINE_CAP and bool(_RULE.fullmatch(line))


_RULE = re.compile(r"\s*[-_=*~]{3,}")


# --- 1. our marker ------------------------------------------------------------


def _cut_at_marker(lines: list[str], markers: Sequence[str]) -> list[str]:
    """Everything from the first line on which one of our markers begins."""
    wanted = [key for key in map(_marker_key, markers) if key]
    whole = _marker_key("\n".join(lines)) if wanted else ""
    wanted = [marker for marker in wanted if marker in whole]  # one marker per language
    if not wanted:
        return lines
    keys = [_marker_key(line) for line in lines]
    for i in range(len(lines)):
        if _has_marker(keys, i, wanted):
            # A re-wrapped marker spans up to three lines: cut where it starts.
            while i + 1 < len(lines) and _has_marker(keys, i + 1, wanted):
                i += 1
            return lines[:i]
    return lines


def _has_marker(keys: list[str], i: int, wanted: list[str]) -> bool:
    window = " ".join(keys[i : i + 3])
    return any(marker in window for marker in wanted)


def _marker_key(text: str) -> str:
    """Case, spacing, quote signs and invisible characters do not count."""
    return " ".join(text.translate(_NOT_IN_MARKER).casefold().split())


_NOT_IN_MARKER = dict.fromkeys(map(ord, ">\ufeff\u200b\u200c\u200d\u200e\u200f\u2060"), None)


# --- 2 and 3. quote headers and quoted blocks ---------------------------------


class _View:
    """The lines, with what every rule asks about them worked out once.

    Rules look at ``heads``: each line without leading space and cut to
    ``LINE_CAP`` characters, so no pattern ever runs over a long line.
    """

    __slots__ = ("lines", "n", "heads", "quoted", "ends")

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.n = len(lines)
        self.heads = [line.lstrip()[:LINE_CAP].rstrip() for line in lines]
        self.quoted = [_is_quoted(head) for head in self.heads]
        # Every attribution ends with ":" or with dashes ("wrote -----").
        self.ends = [head.endswith((":", "-")) for head in self.heads]


def _drop_quotes(view: _View) -> list[str]:
    """The player's lines: quoted blocks go, and so does everything after a header.

    A header followed by ``>`` lines is an inline quote: the header and the
    block go and the player's text after them stays. A header followed by
    unquoted text (Outlook, Gmail without ">") starts the original: cut there.
    """
    kept: list[str] = []
    i = 0
    while i < view.n:
        if view.quoted[i]:
            _drop_bare_attribution(kept)
            i = _quote_end(view, i)
            continue
        if _may_start_header(view, i):
            header = _attribution(view, i)
            if header is not None:
                if header.prefix:
                    kept.append(header.prefix)
                after = _skip_blank(view, i + header.length)
                if after < view.n and view.quoted[after]:
                    i = _quote_end(view, after)
                    continue
                break
            if _is_block_header(view, i):
                break
        kept.append(view.lines[i])
        i += 1
    return kept


def _may_start_header(view: _View, i: int) -> bool:
    """A cheap test that rules out almost every line of ordinary text."""
    head = view.heads[i]
    return bool(head) and (
        any(view.ends[i : i + _HEADER_LINES]) or ":" in head or head[0] in "-_=*"
    )


def _skip_blank(view: _View, i: int) -> int:
    while i < view.n and not view.heads[i]:
        i += 1
    return i


def _is_quoted(head: str) -> bool:
    # ">>> link <<<" is decoration, not a quote (talon's false-positive case).
    return head.startswith(">") and not (head.startswith(">>>") and "<<<" in head)


def _quote_end(view: _View, i: int) -> int:
    """The first line after the quoted block at ``i`` (its trailing blank lines included)."""
    while i < view.n and (view.quoted[i] or not view.heads[i] or _is_link_remnant(view, i)):
        i += 1
    return i


def _is_link_remnant(view: _View, i: int) -> bool:
    """A wrapped URL that lost its ">" between two quoted lines still belongs to the quote."""
    if not (0 < i < view.n - 1 and view.quoted[i - 1] and view.quoted[i + 1]):
        return False
    head = view.heads[i]
    return "://" in head or "mailto:" in head or bool(_URL_PIECE.fullmatch(head))


# One word with URL punctuation in it, as "_nonce=3dd518)".
_URL_PIECE = re.compile(r"[^\s=/_%&?#@]*[=/_%&?#@]\S*")
_DIGIT = re.compile(r"\d")
_TIME = re.compile(r"(?<!\d)\d{1,2}:\d{2}(?!\d)")


def _drop_bare_attribution(kept: list[str]) -> None:
    """Gmail's old "2011/4/7 Name <a@b>" line above a quote has no "wrote:"."""
    last = len(kept) - 1
    while last >= 0 and not kept[last].strip():
        last -= 1
    head = kept[last].strip()[:LINE_CAP] if last >= 0 else ""
    if "@" in head and _DATE_START.match(head):
        del kept[last:]


def _drop_attribution_above(lines: list[str]) -> list[str]:
    """The lines above a cut at our marker, without the attribution that introduced the quote.

    The marker may be the first line of the quote, so nothing quoted is left below the
    "wrote:" line for the header rules to see; then any such line, however short ("On Wed,
    Casino Support wrote:", "Иван писал(а):"), goes, with the lines a client wrapped it over.
    """
    end = len(lines)
    while end and (not lines[end - 1].strip() or _is_quoted(lines[end - 1].lstrip())):
        end -= 1
    if not end:
        return lines
    head = lines[end - 1].strip()[:LINE_CAP]
    if not (_ENDS_WROTE_ALONE.search(head[-80:]) or _ends_with_address(head)):
        return lines
    return lines[: _attribution_top(lines, end - 1)]


def _attribution_top(lines: list[str], last: int) -> int:
    """The first line of an attribution ending at ``last``: a line starting "On ..." or with a
    date up to a few lines above, in the same paragraph; else ``last`` itself."""
    for k in range(last, max(-1, last - _HEADER_LINES), -1):
        head = lines[k].strip()[:LINE_CAP]
        if not head or (k < last and head.endswith((".", "!", "?"))):
            break  # a finished sentence is the player's, not a wrapped header
        if _ON_START.match(head) or _DATE_START.match(head):
            return k
    return last


class _Header(NamedTuple):
    prefix: str  # the player's text in front of the header on the same line
    length: int  # lines the header spans


# Words that begin "On <date>, <sender> wrote:" in the languages talon knows.
_ON_START = re.compile(r"(?:^|(?<=[\s\-*]))(?:On|Le|W dniu|Op|Am|Em|På|Den|Vào|El|Il)\s")
# A sender line that starts with the date: Yandex, Mail.ru, Russian Gmail and Apple Mail.
_DATE_START = re.compile(
    r"""[\s\-*]*(?:
        \d{1,4}[./-]\d{1,2}[./-]\d{1,4}(?!\d)                     # 12.03.2024, 2014-10-17
      | \d{1,2}\.?\s+[^\W\d_]{3,12}\.?,?\s+\d{4}                  # 12 мая 2025
      | [^\W\d_]{2,12}\.?,\s+(?:\d{1,2}\.?\s+[^\W\d_]{3,12}       # пн, 12 мая / Thu, 26 Jun
                              |[^\W\d_]{3,12}\.?\s+\d{1,2}\b)     # Monday, May 12
    )""",
    re.X,
)
# "wrote" in the languages talon knows, and in Russian.
_WROTE = (
    r"wrote|writes|a écrit|schrieb|schreef|verzond|geschreven|escreveu|escribió|ha scritto"
    r"|skrev|napisał|đã viết|пишет|написала|написал(?:\(а\))?|писала|писал(?:\(а\))?"
)
_ENDING = r"(?:\s*:\s*-*|\s*-{2,})$"  # "wrote:" or Android's "wrote ----"
# Searched in the last characters of a line only, so the search stays short.
_ENDS_WROTE = re.compile(rf"(?<!\w)(?:sent|{_WROTE}){_ENDING}")
# Without a date in front, "sent:" is too common in players' own sentences.
_ENDS_WROTE_ALONE = re.compile(rf"(?<!\w)(?:{_WROTE}){_ENDING}")
# Dutch and German put the verb before the sender: "Op <date> schreef X <a@b>:".
_INNER_WROTE = re.compile(r"(?<!\w)(?:schreef|verzond|geschreven|schrieb)(?!\w)")
_YANDEX_NO_ADDRESS = re.compile(r'\d{1,2}\.\d{1,2}\.\d{2,4},\s*\d{1,2}:\d{2},\s*"[^"]{1,200}":')


def _attribution(view: _View, i: int) -> _Header | None:
    """The "On <date>, <sender> wrote:" kind of header starting at line ``i``."""
    head = view.heads[i]
    start = _header_start(head)
    if start is not None:
        prefix = head[:start].rstrip(" -*\t")
        length = _header_length(view, i, single_line=bool(prefix))
        if length:
            return _Header(prefix, length)
    if view.ends[i] and _is_sender_wrote_line(view, i):
        return _Header("", 1)
    return None


def _header_start(head: str) -> int | None:
    """Where a header begins in a line: at "On <digit...>" or at a leading date."""
    if _DATE_START.match(head):
        return 0
    match = _ON_START.search(head)
    if match and _DIGIT.search(head, match.end(), match.end() + 40):
        return match.start()
    return None


def _header_length(view: _View, i: int, single_line: bool) -> int:
    """How many lines from ``i`` the header takes, or 0 when it never ends like one."""
    parts: list[str] = []
    for j in range(i, min(view.n, i + (1 if single_line else _HEADER_LINES))):
        head = view.heads[j]
        if j > i and not view.quoted[j] and _header_start(head) is not None:
            return 0  # a later line starts a header of its own
        if j == i + 1 and parts[0].endswith((".", "!", "?")):
            return 0  # a finished sentence is the player's, not a wrapped header
        parts.append(head)
        if view.ends[j] and _ends_header(joined := " ".join(p for p in parts if p)):
            # Clients always give the time or the address; "12.03.2024 я вам
            # написал:" followed by the player's own words gives neither.
            return j - i + 1 if "@" in joined or _TIME.search(joined) else 0
    return 0


def _ends_header(text: str) -> bool:
    return bool(
        _ENDS_WROTE.search(text[-80:])
        or _ends_with_address(text)
        or (text.endswith(":") and _INNER_WROTE.search(text))
        or _YANDEX_NO_ADDRESS.fullmatch(text)
    )


def _ends_with_address(text: str) -> bool:
    """``... <a@b>:``, checked without a regex over the text."""
    body = text[:-1].rstrip() if text.endswith(":") else ""
    return body.endswith(">") and "@" in body[body.rfind("<") + 1 :] and "<" in body


def _is_sender_wrote_line(view: _View, i: int) -> bool:
    """'Name <a@b> wrote:', 'Иван пишет:', '---- Name wrote ----' without a date first.

    Without an address it must be followed by a quote, so that a player's own
    "Я уже 3 раза написал:" followed by their text is kept.
    """
    head = view.heads[i]
    if not _ENDS_WROTE_ALONE.search(head[-80:]):
        return False
    if "@" in head:
        return True
    after = _skip_blank(view, i + 1)
    return after < view.n and view.quoted[after]


# Outlook, Thunderbird and webmail separators in front of the original message.
FORWARD_SEPARATOR = re.compile(
    r"""(?:[-_=*]{2,}\s*(?:original\s+message|forwarded\s+message|исходное\s+сообщение
          |пересылаемое\s+сообщение|переадресованное\s+сообщение|ursprüngliche\s+nachricht
          |weitergeleitete\s+nachricht|message\s+d'origine|message\s+transféré|mensaje\s+original
          |mensaje\s+reenviado|messaggio\s+originale|oorspronkelijk\s+bericht|original\s+meddelelse
          |ursprungligt\s+meddelande|opprinnelig\s+melding|wiadomość\s+oryginalna)\s*[-_=*]{2,}
        |(?:begin\s+forwarded\s+message|начало\s+пересылаемого\s+сообщения
          |начало\s+переадресованного\s+сообщения)\s*:)""",
    re.X | re.I,
)
_FROM_FIELDS = r"From|Von|De|Fra|Från|Van|Od|Da|От|Від|Date|Datum|Дата|Päivämäärä"
_OTHER_FIELDS = (
    r"Sent|Gesendet|Envoyé|Sendt|Skickat|Verzonden|Wysłano|Inviato|Enviado|Отправлено"
    r"|Надіслано|To|An|À|A|Til|Till|Aan|Do|Para|Кому|Cc|Kopie|Копия|Subject|Betreff|Objet"
    r"|Emne|Ämne|Onderwerp|Temat|Oggetto|Asunto|Assunto|Тема|Reply-To"
)
_FIELD = re.compile(rf"[>\s]*\**\s*(?:{_FROM_FIELDS}|{_OTHER_FIELDS})\s*:")
_FIRST_FIELD = re.compile(rf"\**\s*(?:{_FROM_FIELDS})\s*:")
# "From: a@b Date: ..." when an HTML header box was rendered onto one line.
_INLINE_FIELD = re.compile(
    r"(?:Date|Sent|Subject|Дата|Отправлено|Тема|Gesendet|Datum|Betreff|Envoyé|Objet)\s*:"
)


def _is_block_header(view: _View, i: int) -> bool:
    """A separator line, or a From/Date field with more header fields right below."""
    head = view.heads[i]
    if FORWARD_SEPARATOR.fullmatch(head):
        return True
    first = _FIRST_FIELD.match(head)
    if not first:
        return False
    if _INLINE_FIELD.search(head, first.end()):
        return True
    # Two lines of slack: Outlook wraps a long "From:" value onto the next line.
    return any(_FIELD.match(other) for other in view.heads[i + 1 : i + 4])


# --- 4. signatures -------------------------------------------------------------

_CLIENT_SIGNATURE = re.compile(
    r"""(?:sent\s+from\s+my\s+[\w'’-]+(?:\s+[\w'’-]+){0,4}[.!]?
      |sent\s+from\s+(?:mail|outlook|yahoo\s+mail|samsung\s+mobile|gmail\s+mobile|aol\s+mobile\s+mail
                      |samsung\s+galaxy[\w ]{0,30}|huawei[\w ]{0,30}|xiaomi[\w ]{0,30}
                      |the\s+\w+\s+app|[\w.]+\s+for\s+(?:ios|android|iphone|ipad|windows))
        (?:\s+(?:for|on)\s+[\w ]{1,30})?
      |sent\s+with\s+sparrow.*
      |(?:get|получите|скачайте)\s+outlook\s+(?:for|для)\s+(?:ios|android)(?:\s*<\S*>)?
      |отправлено\s+(?:с|со|из)\s+(?:моего\s+)?(?:iphone|ipad|android|мобильного|мобильной|смартфона
                                         |телефона|устройства|яндекс|почты|mail\.ru|samsung|huawei
                                         |xiaomi|приложения)[\w .,-]{0,60}
    )""",
    re.X | re.I,
)
# "-Abhishek Kona": a dash and one to three capitalised words.
_SIGN_OFF_DASH = re.compile(r"[-–—][A-ZА-ЯЁ][\w.'’-]*(?:\s[A-ZА-ЯЁ][\w.'’-]*){0,2}")
_UNDERSCORE_RULE = re.compile(r"_{5,}\s*")
_NEAR_END = 10  # lines of text a bare "--" or a list footer may have below it
_CLIENT_TAIL = 3  # lines a client signature may have below it ("Sent from my iPhone\n\nIvan")


def _cut_signature(lines: list[str]) -> list[str]:
    below = _non_blank_below(lines)
    for i, line in enumerate(lines):
        if _signature_starts(line, below[i]):
            lines = lines[:i]
            break
    return _drop_dash_sign_off(lines)


def _non_blank_below(lines: list[str]) -> list[int]:
    """For each line, how many non-blank lines follow it."""
    counts = [0] * len(lines)
    seen = 0
    for i in range(len(lines) - 1, -1, -1):
        counts[i] = seen
        seen += bool(lines[i].strip())
    return counts


def _signature_starts(line: str, below: int) -> bool:
    if line in ("-- ", "--\xa0"):
        return True  # the RFC 3676 delimiter
    if below > _NEAR_END:
        return False
    head = line.strip()[:LINE_CAP]
    if head == "--" or _UNDERSCORE_RULE.fullmatch(head):
        # People type "--" as a separator, and "____" also ends list footers:
        # both are trusted near the end only.
        return True
    return below <= _CLIENT_TAIL and bool(_CLIENT_SIGNATURE.fullmatch(head))


def _drop_dash_sign_off(lines: list[str]) -> list[str]:
    """A last line "-Name" after a blank line signs the mail off (email_reply_parser)."""
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    if last >= 2 and not lines[last - 1].strip() and _SIGN_OFF_DASH.fullmatch(lines[last].strip()):
        return lines[:last]
    return lines


# --- HTML ----------------------------------------------------------------------


class _Tag(NamedTuple):
    start: int
    end: int
    name: str
    closing: bool
    attrs: dict[str, str]


# A tag must end before the next "<", as in parsers.html: one quantifier, so
# the search stays linear; the name is read from the matched tag afterwards.
_TAG_OR_COMMENT = re.compile(r"<!--|</?[A-Za-z][^<>]*>")
_TAG_NAME = re.compile(r"</?([A-Za-z][\w:-]*)")
_ATTR = re.compile(r"""([\w:-]+)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_CUT_IDS = frozenset({"divrplyfwdmsg", "appendonsend", "olk_src_body_section", "stopspelling"})
_CUT_CLASSES = frozenset({"outlookmessageheader"})
_QUOTE_CLASSES = frozenset({"gmail_quote", "yahoo_quoted"})


def _prune_html(html: str) -> str:
    """The HTML without quote containers and without everything after an Outlook header."""
    tags = list(_scan_tags(html))
    cut = next((t.start for t in tags if not t.closing and _is_cut_point(t)), len(html))
    tags = [t for t in tags if t.start < cut]
    out: list[str] = []
    pos = 0
    for start, end in _quote_spans(tags, cut):
        out.append(html[pos:start])
        pos = end
    out.append(html[pos:cut])
    return "".join(out)


def _scan_tags(html: str) -> Iterator[_Tag]:
    pos = 0
    while match := _TAG_OR_COMMENT.search(html, pos):
        if match.group() == "<!--":
            end = html.find("-->", match.end())
            if end < 0:
                return  # an unclosed comment ends the document, as in browsers
            pos = end + 3
            continue
        tag = match.group()
        name = _TAG_NAME.match(tag)
        assert name is not None  # the search above already required a name
        rest = tag[name.end() : -1]
        attrs = _attributes(rest) if "=" in rest else {}
        yield _Tag(match.start(), match.end(), name.group(1).lower(), tag[1] == "/", attrs)
        pos = match.end()


def _attributes(text: str) -> dict[str, str]:
    return {
        m.group(1).lower(): (m.group(2) or m.group(3) or m.group(4) or "")
        for m in _ATTR.finditer(text)
    }


def _classes(tag: _Tag) -> set[str]:
    return set(tag.attrs.get("class", "").lower().split())


def _is_cut_point(tag: _Tag) -> bool:
    """Outlook's reply header: the original follows it, not inside it."""
    return tag.attrs.get("id", "").lower() in _CUT_IDS or bool(_classes(tag) & _CUT_CLASSES)


def _quote_spans(tags: list[_Tag], cut: int) -> Iterator[tuple[int, int]]:
    last_blockquote = _last_plain_blockquote(tags)
    i = 0
    while i < len(tags):
        tag = tags[i]
        if not tag.closing and (_is_quote_container(tag) or tag.start == last_blockquote):
            close = _closing_index(tags, i)
            yield tag.start, tags[close].end if close is not None else cut
            i = close + 1 if close is not None else len(tags)
        else:
            i += 1


def _is_quote_container(tag: _Tag) -> bool:
    if tag.name == "blockquote":
        return tag.attrs.get("type", "").lower() == "cite"
    return tag.name == "div" and bool(_classes(tag) & _QUOTE_CLASSES)


def _last_plain_blockquote(tags: list[_Tag]) -> int | None:
    """Where the last outermost blockquote starts, as talon cuts it.

    Gmail's own quote button makes ``blockquote.gmail_quote`` in new text, so
    that one stays; the reply quote of Yandex, Mail.ru and others is the last one.
    """
    depth, last = 0, None
    for tag in tags:
        if tag.name != "blockquote":
            continue
        if tag.closing:
            depth = max(0, depth - 1)
            continue
        if depth == 0 and "gmail_quote" not in _classes(tag):
            last = tag.start
        depth += 1
    return last


def _closing_index(tags: list[_Tag], i: int) -> int | None:
    depth = 0
    for j in range(i, len(tags)):
        if tags[j].name == tags[i].name:
            depth += -1 if tags[j].closing else 1
            if depth == 0:
                return j
    return None
