"""Attachment filenames that are safe to show, store and offer for download.

A filename in a mail is whatever the sender wrote: a path, a Windows drive,
control characters, a right-to-left override that hides ``.exe``, or
nothing at all. The result here is one plain name or a generated one.
"""

from __future__ import annotations

import re
import unicodedata

MAX_CHARS = 150
# Most filesystems store at most 255 bytes per name; 150 CJK characters are 450.
MAX_UTF8_BYTES = 255
_MAX_EXTENSION = 16

# A small fixed table: mimetypes.guess_extension reads the host's mime.types,
# which would make the generated names depend on the machine.
_EXTENSIONS = {
    "application/gzip": ".gz",
    "application/json": ".json",
    "application/msword": ".doc",
    "application/pdf": ".pdf",
    "application/pgp-encrypted": ".pgp",
    "application/pgp-keys": ".asc",
    "application/pgp-signature": ".asc",
    "application/pkcs7-mime": ".p7m",
    "application/pkcs7-signature": ".p7s",
    "application/rtf": ".rtf",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.ms-outlook": ".msg",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/x-pkcs7-mime": ".p7m",
    "application/x-pkcs7-signature": ".p7s",
    "application/zip": ".zip",
    "audio/mpeg": ".mp3",
    "image/bmp": ".bmp",
    "image/gif": ".gif",
    "image/heic": ".heic",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/svg+xml": ".svg",
    "image/tiff": ".tif",
    "image/webp": ".webp",
    "message/rfc822": ".eml",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "text/html": ".html",
    "text/plain": ".txt",
    "text/rtf": ".rtf",
    "text/x-vcard": ".vcf",
    "text/vcard": ".vcf",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
}

# Control characters, lone surrogates, and the bidirectional overrides that
# make "invoice\u202efdp.exe" display as "invoiceexe.pdf".
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_DRIVE = re.compile(r"^[A-Za-z]:")
_DOTS = re.compile(r"\.{2,}")


def extension_for(content_type: str) -> str:
    """Extension with the dot for a MIME type; text and messages read as text."""
    content_type = content_type.lower()
    if content_type in _EXTENSIONS:
        return _EXTENSIONS[content_type]
    if content_type.startswith(("text/", "message/")):
        return ".txt"
    return ".bin"


def safe_filename(name: str | None, content_type: str, index: int) -> str:
    """A bare, printable, bounded filename; ``attachment-<index><ext>`` when none is left."""
    name = unicodedata.normalize("NFC", _UNSAFE.sub("", name or ""))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _DOTS.sub(".", _DRIVE.sub("", name))
    name = name.strip().lstrip(". ").rstrip(". ")  # Windows drops trailing dots anyway
    if not name:
        return f"attachment-{index}{extension_for(content_type)}"
    return _truncate(name)


def _truncate(name: str) -> str:
    """Shorten the stem, keeping the extension that says what the file is."""
    if len(name) <= MAX_CHARS and len(name.encode("utf-8")) <= MAX_UTF8_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > _MAX_EXTENSION or " " in ext:
        stem, ext = name, ""
    ext = "." + ext if ext else ""
    stem = stem[: MAX_CHARS - len(ext)]
    while len((stem + ext).encode("utf-8")) > MAX_UTF8_BYTES:
        stem = stem[:-1]
    return stem.rstrip(". ") + ext
