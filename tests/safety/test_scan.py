"""daemon/scan.py against a real clamd: INSTREAM over the unix socket and over TCP."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from daemon.safety import Screener
from daemon.scan import ClamdScanner, ScannerUnavailable
from parsers.model import Attachment
from tests.support.clamd import EICAR, MARKER, MARKER_SIGNATURE, ClamdServer, free_port

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")


def test_eicar_is_found_over_the_unix_socket(clamd: ClamdServer) -> None:
    scanner = ClamdScanner(socket_path=clamd.socket_path)
    found = scanner.scan(EICAR)
    assert found.verdict == "infected"
    assert "eicar" in found.signature.lower()
    assert scanner.scan(PNG).verdict == "clean"


def test_a_signature_inside_other_bytes_is_found_over_tcp(clamd: ClamdServer) -> None:
    scanner = ClamdScanner(address=clamd.address)
    payload = b"%PDF-1.4\n" + b"x" * 200_000 + MARKER + b"y" * 70_000  # several chunks
    found = scanner.scan(payload)
    assert (found.verdict, found.signature) == ("infected", f"{MARKER_SIGNATURE}.UNOFFICIAL")


def test_eicar_in_a_zip_is_found(clamd: ClamdServer) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", EICAR)
    found = ClamdScanner(socket_path=clamd.socket_path).scan(buffer.getvalue())
    assert found.verdict == "infected"


def test_clamd_away_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ScannerUnavailable):
        ClamdScanner(socket_path=tmp_path / "no.sock", timeout=2).scan(EICAR)
    with pytest.raises(ScannerUnavailable):
        ClamdScanner(address=("127.0.0.1", free_port()), timeout=2).scan(EICAR)
    assert not ClamdScanner(socket_path=tmp_path / "no.sock").ping()


def test_screening_refuses_infected_and_programs_and_keeps_clean(clamd: ClamdServer) -> None:
    screener = Screener(ClamdScanner(socket_path=clamd.socket_path))
    items = (Attachment("invoice.txt", "text/plain", EICAR),  # harmless name, clamd finds it
             Attachment("photo.png", "image/png", PNG),
             Attachment("setup.pdf", "application/pdf", b"MZ\x90\x00" + b"\0" * 64))
    screening = screener.screen(items)
    reasons = {r.filename: (r.reason, r.infected) for r in screening.refused}
    assert reasons["invoice.txt"][1] is True and reasons["invoice.txt"][0].startswith("infected:")
    assert reasons["setup.pdf"] == ("a program", False)
    assert [a.filename for a in screening.forwardable(items)] == ["photo.png"]
    assert [a.filename for a in screening.kept(items)] == ["photo.png", "setup.pdf"]


def test_screening_with_clamd_away(tmp_path: Path) -> None:
    away = ClamdScanner(socket_path=tmp_path / "no.sock", timeout=2)
    items = (Attachment("photo.png", "image/png", PNG),)
    with pytest.raises(ScannerUnavailable):
        Screener(away, "hold").screen(items)
    stored = Screener(away, "store").screen(items)
    assert stored.forwardable(items) == () and stored.kept(items) == items
    assert stored.scanner_error


def test_attachments_no_scan_saw_are_not_forwarded(clamd: ClamdServer) -> None:
    # An agent's forward carries the player's original attachments: never scanned, never sent.
    screener = Screener(ClamdScanner(socket_path=clamd.socket_path))
    scanned = (Attachment("photo.png", "image/png", PNG),)
    screening = screener.screen(scanned)
    other = Attachment("inner.png", "image/png", PNG + b"\0")
    assert screening.forwardable((*scanned, other)) == scanned


BIG = PNG + b"\0" * (2 * 1024 * 1024)  # 2 MiB: past the small clamd's StreamMaxLength


@pytest.mark.parametrize("over", ["unix", "tcp"])
def test_a_stream_clamd_refuses_for_its_size_is_unscannable_not_unavailable(
        small_clamd: ClamdServer, over: str) -> None:
    scanner = (ClamdScanner(socket_path=small_clamd.socket_path, timeout=10) if over == "unix"
               else ClamdScanner(address=small_clamd.address, timeout=10))
    found = scanner.scan(BIG)
    assert found.verdict == "unscannable" and found.signature
    assert scanner.scan(PNG).verdict == "clean"  # the same clamd still scans what fits


def test_screening_an_unscannable_attachment_refuses_it_even_when_holding(
        small_clamd: ClamdServer) -> None:
    screener = Screener(ClamdScanner(socket_path=small_clamd.socket_path, timeout=10), "hold")
    items = (Attachment("scan.png", "image/png", BIG), Attachment("photo.png", "image/png", PNG))
    screening = screener.screen(items)  # no ScannerUnavailable: waiting would not help
    [refused] = screening.refused
    assert refused.filename == "scan.png" and not refused.infected
    assert refused.reason.startswith("not scannable")
    assert screening.forwardable(items) == items[1:] and screening.kept(items) == items
