"""Deterministic hostile mails, as raw bytes, for the hostile-input drill.

Every builder is a plain function of no arguments that returns the same bytes
on every call (no random Message-IDs, no clock). Mails are written by hand
rather than with ``email.message`` so that they can be as broken as real
attackers make them. ``CASES`` lists them all by name; ``build(name)`` makes one.

What each case carries that a test may check beyond "ticket or quarantine"
is in ``HostileCase``: addresses that must never become participants
(header injection) and whether the mail should keep an attachment.
"""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

SENDER = b"From: Mallory <mallory@attacker.test>\r\n"
COMMON = (
    b"To: support@localhost\r\n"
    b"Date: Fri, 20 Nov 2026 12:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
)
INJECTED = "victim@evil.example"  # what header injection tries to add as a recipient


def _head(name: str, subject: bytes | None = None, sender: bytes = SENDER) -> bytes:
    subject = subject if subject is not None else f"hostile {name}".encode()
    return sender + COMMON + b"Subject: " + subject + b"\r\n" + \
        f"Message-ID: <{name}@hostile.test>\r\n".encode()


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _multipart(name: str, parts: list[bytes], subject: bytes | None = None,
               boundary: bytes = b"hostile-boundary") -> bytes:
    out = [_head(name, subject), b'Content-Type: multipart/mixed; boundary="', boundary,
           b'"\r\n\r\nThis is a multi-part message.\r\n']
    for part in parts:
        out += [b"--", boundary, b"\r\n", part, b"\r\n"]
    out += [b"--", boundary, b"--\r\n"]
    return b"".join(out)


def _text_part(body: bytes = b"Please help, my account is broken.\r\n",
               headers: bytes = b"Content-Type: text/plain; charset=utf-8\r\n") -> bytes:
    return headers + b"\r\n" + body


# --- structure ---------------------------------------------------------------------------

def deep_multipart() -> bytes:
    """1,000 nested multipart/mixed levels, one text part at the bottom."""
    depth = 1000
    out = [_head("deep-multipart"), b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n']
    for level in range(1, depth):
        out.append(f'--b{level - 1}\r\nContent-Type: multipart/mixed; boundary="b{level}"\r\n\r\n'
                   .encode())
    out.append(f"--b{depth - 1}\r\n".encode() + _text_part() + f"\r\n--b{depth - 1}--\r\n".encode())
    for level in range(depth - 2, -1, -1):
        out.append(f"--b{level}--\r\n".encode())
    return b"".join(out)


def deep_rfc822() -> bytes:
    """1,000 message/rfc822 parts, each wrapping the next."""
    depth = 1000
    inner = (b"From: inner@attacker.test\r\nSubject: bottom\r\n"
             b"Content-Type: text/plain\r\n\r\nbottom\r\n")
    heads = [f"From: level{i}@attacker.test\r\nSubject: level {i}\r\n"
             f"Content-Type: message/rfc822\r\n\r\n".encode() for i in range(depth)]
    return _head("deep-rfc822").replace(b"Subject", b"X-Outer: yes\r\nSubject", 1) \
        + b"Content-Type: message/rfc822\r\n\r\n" + b"".join(heads) + inner


def many_parts() -> bytes:
    """100,000 tiny text parts in one multipart/mixed."""
    part = b"Content-Type: text/plain\r\n\r\nx"
    return _multipart("many-parts", [part] * 100_000)


def headers_only() -> bytes:
    """Headers and nothing else: no blank line, no body."""
    return _head("headers-only") + b"Content-Type: text/plain"


def empty() -> bytes:
    return b""


# --- size --------------------------------------------------------------------------------

def huge_subject() -> bytes:
    """A 5 MB Subject on one physical line."""
    return _head("huge-subject", b"refund " * (5 * 1024 * 1024 // 7)) + b"\r\nbody\r\n"


def huge_folded_subject() -> bytes:
    """A 5 MB Subject folded into 80-byte continuation lines."""
    line = b" " + b"w" * 78 + b"\r\n"
    folded = b"start\r\n" + line * (5 * 1024 * 1024 // len(line))
    return _head("huge-folded-subject", folded.rstrip(b"\r\n")) + b"\r\nbody\r\n"


def many_header_lines() -> bytes:
    """50,000 header lines."""
    junk = b"".join(f"X-Junk-{i}: value {i}\r\n".encode() for i in range(50_000))
    return _head("many-header-lines") + junk + b"\r\nbody\r\n"


def many_recipients() -> bytes:
    """10,000 addresses in one To header."""
    to = b",\r\n ".join(f"User {i} <user{i}@many.test>".encode() for i in range(10_000))
    raw = _head("many-recipients").replace(b"To: support@localhost\r\n", b"To: " + to + b"\r\n")
    return raw + b"Content-Type: text/plain\r\n\r\nhello all\r\n"


def huge_single_line_body() -> bytes:
    """A 20 MB body on one line, no newline at all."""
    return _head("huge-line") + b"Content-Type: text/plain\r\n\r\n" + b"a" * (20 * 1024 * 1024)


def nested_divs() -> bytes:
    """An HTML-only body of 50,000 nested <div>s.

    Shrunk from 100,000: the ingest is linear in it (about 1.3 s untraced for
    100,000), but under tracemalloc 100,000 took 16 s, too near the 20 s bound.
    """
    n = 50_000
    html = b"<html><body>" + b"<div>" * n + b"help me" + b"</div>" * n + b"</body></html>"
    return _head("nested-divs") + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html


# --- encodings ---------------------------------------------------------------------------

def broken_base64() -> bytes:
    bad = b"SGVsbG8gd29ybGQ=!!!*&^%$\r\nQUJD\r\n===\r\nA\r\n"
    return _multipart("broken-base64", [
        _text_part(bad, b"Content-Type: text/plain; charset=utf-8\r\n"
                        b"Content-Transfer-Encoding: base64\r\n"),
        b"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
        b"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b"@@@@" * 100 + b"\r\nQQ",
        _text_part(b"=?utf-8?b?####?=\r\n", b"Content-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: BASE64 garbage\r\n"),
    ], subject=b"=?utf-8?b?!!notbase64?= =?utf-8?b?SGVsbG8?=")


def broken_quoted_printable() -> bytes:
    bad = b"caf=C3=A9 =ZZ =\r\n=4 =\r\n=E2=82 truncated =\r\n=" + b"=" * 1000 + b"\r\n=0"
    return _multipart("broken-qp", [
        _text_part(bad, b"Content-Type: text/plain; charset=utf-8\r\n"
                        b"Content-Transfer-Encoding: quoted-printable\r\n"),
        _text_part(b"<p>=3Cdiv=\r\n=3E</p>=", b"Content-Type: text/html; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: quoted-printable\r\n"),
    ], subject=b"=?utf-8?q?broken=ZZ=E2=82?= =?utf-8?q?=?=")


def invalid_charsets() -> bytes:
    return _multipart("invalid-charsets", [
        _text_part(b"caf\xe9 \xff\xfe", b"Content-Type: text/plain; charset=x-no-such-charset\r\n"),
        _text_part(b"+AGEAYgBj-", b"Content-Type: text/plain; charset=utf-7\r\n"),
        _text_part(b"\x1b$B$3$s$K$A$O\x1b(B", b"Content-Type: text/plain; charset=iso-2022-jp\r\n"),
        _text_part(b"abc", b"Content-Type: text/plain; charset=" + b"x" * 5000 + b"\r\n"),
        _text_part(b"abc", b"Content-Type: text/plain; charset=\"../../etc/passwd\"\r\n"),
        _text_part(b"\xff\xfeA\x00B\x00", b"Content-Type: text/plain; charset=utf-16\r\n"),
        _text_part(b"A", b"Content-Type: text/plain; charset=utf-32\r\n"),
    ], subject=b"=?x-bogus?q?abc?= =?utf-16?b?2D0=?= =??q?x?= =?utf-8*en?q?ok?=")


def nul_in_charset() -> bytes:
    """A charset label with a NUL byte in it: ``codecs.lookup`` raises ValueError for it."""
    return _multipart("nul-charset", [
        _text_part(b"caf\xe9", b"Content-Type: text/plain; charset=\"utf-8\x00evil\"\r\n"),
    ], subject=b"caf\xc3\xa9 8-bit subject")


def broken_base64_from_name() -> bytes:
    """A From display name whose base64 encoded word has 5 data characters."""
    raw = _head("broken-b64-from", sender=b"From: =?utf-8?b?0Jjug?= <mallory@attacker.test>\r\n")
    return raw + b"Content-Type: text/plain\r\n\r\nhi\r\n"


def overlong_utf8() -> bytes:
    bad = b"\xc0\xaf \xe0\x80\xaf \xf0\x80\x80\xaf \xf8\x88\x80\x80\x80 \xc1\xbf \xf4\x90\x80\x80"
    return _multipart("overlong-utf8", [
        _text_part(b"slash: " + bad + b"\r\n"),
        _text_part(b"x", b"Content-Type: text/plain; charset=utf-8; name=\"" + bad + b".txt\"\r\n"
                   b"Content-Disposition: attachment; filename=\"" + bad + b".txt\"\r\n"),
    ], subject=b"over " + bad + b" =?utf-8?b?" + base64.b64encode(bad) + b"?=")


def lone_surrogates() -> bytes:
    # U+D800 and U+DFFF encoded as if they were characters (CESU-8 style), which
    # strict UTF-8 refuses and "surrogateescape"/"surrogatepass" readers may let through.
    sur = b"\xed\xa0\x80 \xed\xbf\xbf \xed\xa0\xbd\xed\xb8\x80"
    return _multipart("lone-surrogates", [
        _text_part(b"text " + sur + b"\r\n"),
        _text_part(b"<b>" + sur + b"</b>", b"Content-Type: text/html; charset=utf-8\r\n"),
        _text_part(b"x", b"Content-Type: application/octet-stream\r\n"
                   b"Content-Disposition: attachment; filename*=utf-8''%ED%A0%80name.txt\r\n"),
    ], subject=b"sur " + sur + b" =?utf-8?b?" + base64.b64encode(sur) + b"?=",
    ).replace(SENDER, b"From: =?utf-8?b?" + base64.b64encode(sur) + b"?= <mallory@attacker.test>"
              b"\r\n", 1)


def nul_bytes() -> bytes:
    raw = _multipart("nul-bytes", [
        _text_part(b"before\x00after\x00\x00\r\n"),
        b"Content-Type: application/octet-stream; name=\"n\x00ul.txt\"\r\n"
        b"Content-Disposition: attachment; filename=\"evil\x00.exe.txt\"\r\n\r\nx\x00y",
    ], subject=b"nul\x00subject =?utf-8?q?encoded=00nul?=")
    return raw.replace(SENDER, b"From: Mal\x00lory =?utf-8?q?a=00b?= <mallory@attacker.test>\r\n"
                       b"X-Nul\x00Name: v\x00alue\r\n", 1)


# --- attachments -------------------------------------------------------------------------

HOSTILE_FILENAMES: tuple[str, ...] = (
    "../../etc/passwd",
    "..\\..\\boot.ini",
    "C:\\Windows\\x.exe",
    "/absolute/path.txt",
    "\\\\server\\share\\unc.txt",
    "n" * 10_240 + ".txt",
    "ctl\x01\x07\x08\x1b[31mred\x7f\x9b.txt",
    "tab\tnew\nline\rret.txt",
    "invoice\u202efdp.exe",
    "\u202e\u2066\u200fbidi.txt",
    "...",
    " . ",
    "",
    "CON",
    "file\u0000.txt",
)


def _attachment(filename: str, payload: bytes = b"payload", how: int = 0) -> bytes:
    if how == 0:  # RFC 2231, percent-encoded UTF-8: can carry any character at all
        encoded = "".join(c if c.isalnum() or c in "._-" else
                          "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
                          for c in filename)
        disposition = f"attachment; filename*=utf-8''{encoded}".encode()
    elif how == 1:  # an RFC 2047 encoded word in a quoted filename, as Outlook writes it
        word = base64.b64encode(filename.encode("utf-8", "surrogatepass")).decode()
        disposition = f'attachment; filename="=?utf-8?b?{word}?="'.encode()
    else:  # raw bytes, quoted as best one can
        disposition = b'attachment; filename="' + filename.encode("utf-8", "surrogatepass") \
            .replace(b"\r", b"").replace(b"\n", b"") + b'"'
    return (b"Content-Type: application/octet-stream\r\nContent-Disposition: " + disposition
            + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + _b64(payload))


def hostile_filenames() -> bytes:
    parts = [_text_part()]
    for how in range(3):
        parts += [_attachment(name, f"{how}:{i}".encode(), how)
                  for i, name in enumerate(HOSTILE_FILENAMES)]
    # a name given only in Content-Type, with a path
    parts.append(b'Content-Type: application/pdf; name="../../../../tmp/ct.pdf"\r\n'
                 b"Content-Disposition: attachment\r\n\r\n%PDF-1.4")
    # at most Limits().max_attachments (100) attachments: 3 * 15 + 2 = 47
    return _multipart("hostile-filenames", parts)


ZIP_BOMB_BYTES = 1024 ** 3  # what the archive expands to


def zip_bomb_archive() -> bytes:
    """A ~1 MB zip whose one member is 1 GB of zero bytes (streamed, never in memory)."""
    buf = io.BytesIO()
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("zeros.bin", "w", force_zip64=True) as member:
            for _ in range(ZIP_BOMB_BYTES // len(chunk)):
                member.write(chunk)
    return buf.getvalue()


@lru_cache(maxsize=1)
def zip_bomb_payload() -> bytes:
    """The archive of ``zip_bomb``, built once per process (about 2 s)."""
    return zip_bomb_archive()


def zip_bomb() -> bytes:
    payload = zip_bomb_payload()
    return _multipart("zip-bomb", [
        _text_part(b"see the attached logs\r\n"),
        b"Content-Type: application/zip; name=\"logs.zip\"\r\n"
        b"Content-Disposition: attachment; filename=\"logs.zip\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(payload),
    ])


# --- header injection --------------------------------------------------------------------

def inject_subject() -> bytes:
    """Encoded CR/LF in the Subject, trying to start a Bcc header."""
    subject = (b"=?utf-8?q?Hello=0D=0ABcc:_victim@evil.example=0D=0A?= "
               b"=?utf-8?b?" + base64.b64encode(b"x\r\nTo: victim@evil.example\r\n\r\nbody")
               + b"?=")
    return _head("inject-subject", subject) + b"Content-Type: text/plain\r\n\r\nhi\r\n"


def inject_from_name() -> bytes:
    """Encoded CR/LF and address syntax in the From display name."""
    name = base64.b64encode(b"Eve\r\nBcc: victim@evil.example\r\nX: <victim@evil.example>")
    sender = b"From: =?utf-8?b?" + name + b"?= <mallory@attacker.test>\r\n"
    raw = _head("inject-from", sender=sender)
    raw = raw.replace(b"To: support@localhost\r\n",
                      b"To: =?utf-8?q?victim@evil.example=0D=0ABcc:?= <support@localhost>\r\n"
                      b"Cc: =?us-ascii?q?a:victim@evil.example;?= <helper@ok.test>\r\n")
    return raw + b"Content-Type: text/plain\r\n\r\nhi\r\n"


def bcc_in_encoded_word() -> bytes:
    """A whole ``Bcc:`` header and a second From hidden inside encoded words."""
    word = base64.b64encode(b"\r\nBcc: victim@evil.example\r\nFrom: victim@evil.example")
    raw = _head("bcc-encoded", b"=?utf-8?b?" + word + b"?=")
    raw = raw.replace(b"Date:", b"Reply-To: =?utf-8?q?=0ABcc=3A_victim=40evil.example?= "
                      b"<mallory@attacker.test>\r\nDate:", 1)
    return raw + b"Content-Type: text/plain\r\n\r\nhi\r\n"


# --- the catalogue -----------------------------------------------------------------------

@dataclass(frozen=True)
class HostileCase:
    name: str
    build: Callable[[], bytes] = field(repr=False)
    expect: str = "ticket"  # the outcome a careful desk gives: "ticket" or "quarantined"
    forbidden_addresses: tuple[str, ...] = ()  # never a participant of any ticket
    known_bug: str = ""  # set while the expected outcome is not reached: the test is xfail


CASES: tuple[HostileCase, ...] = (
    HostileCase("deep-multipart-1000", deep_multipart, "quarantined"),
    HostileCase("deep-rfc822-1000", deep_rfc822, "quarantined"),
    HostileCase("parts-100000", many_parts, "quarantined"),
    HostileCase("subject-5mb", huge_subject),
    HostileCase("subject-5mb-folded", huge_folded_subject),
    HostileCase("header-lines-50000", many_header_lines),
    HostileCase("recipients-10000", many_recipients),
    HostileCase("body-20mb-one-line", huge_single_line_body),
    HostileCase("html-50000-nested-divs", nested_divs),
    HostileCase("broken-base64", broken_base64),
    HostileCase("broken-quoted-printable", broken_quoted_printable),
    HostileCase("invalid-charsets", invalid_charsets),
    HostileCase("nul-in-charset", nul_in_charset),
    HostileCase("broken-base64-from-name", broken_base64_from_name),
    HostileCase("overlong-utf8", overlong_utf8),
    HostileCase("lone-surrogates", lone_surrogates),
    HostileCase("nul-bytes", nul_bytes),
    HostileCase("hostile-filenames", hostile_filenames),
    HostileCase("zip-bomb", zip_bomb),
    HostileCase("inject-subject", inject_subject, forbidden_addresses=(INJECTED,)),
    HostileCase("inject-from-name", inject_from_name, forbidden_addresses=(INJECTED,)),
    HostileCase("bcc-in-encoded-word", bcc_in_encoded_word, forbidden_addresses=(INJECTED,)),
    HostileCase("headers-only", headers_only),
    HostileCase("empty", empty, "quarantined"),
)

BY_NAME = {case.name: case for case in CASES}


def build(name: str) -> bytes:
    return BY_NAME[name].build()
