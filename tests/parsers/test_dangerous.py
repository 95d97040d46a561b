"""Programs and macro documents are never forwarded, by their bytes or their name."""

from __future__ import annotations

import io
import zipfile

from parsers.dangerous import never_forward
from parsers.model import Attachment


def item(name: str, payload: bytes) -> Attachment:
    return Attachment(name, "application/octet-stream", payload)


def test_programs_by_their_bytes_whatever_the_name() -> None:
    assert never_forward(item("photo.jpg", b"MZ\x90\x00\x03")) == "a program"
    assert never_forward(item("readme.txt", b"\x7fELF\x02\x01")) == "a program"
    assert never_forward(item("notes", b"#!/bin/sh\nrm -rf ~\n")) == "a program"


def test_programs_by_their_name_whatever_the_bytes() -> None:
    assert never_forward(item("invoice.com", b"plain text")) == "a .com file"
    assert never_forward(item("run.JS", b"alert(1)")) == "a .js file"
    assert never_forward(item("report.docm", b"PK\x03\x04")) == "a .docm file"


def test_office_files_with_macros() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/vbaProject.bin", b"\xd0\xcf\x11\xe0")
    assert never_forward(item("contract.docx", buffer.getvalue())) == "a document with macros"
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100 + "_VBA_PROJECT".encode("utf-16-le")
    assert never_forward(item("sheet.xls", ole)) == "a document with macros"


def test_ordinary_files_pass() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    assert never_forward(item("contract.docx", buffer.getvalue())) == ""
    assert never_forward(item("scan.pdf", b"%PDF-1.7\n")) == ""
    assert never_forward(item("screenshot.png", b"\x89PNG\r\n\x1a\n")) == ""
    plain_ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64
    assert never_forward(item("statement.doc", plain_ole)) == ""
