"""The token file: whole or not at all, mode 0600 whatever the umask, sealed under the master
key when one is set, opened by any key of the key file, and by no other."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from storage.crypto import MasterKeys
from storage.tokens import TokenFileError, TokenRecord, TokenStore

OLD, NEW, OTHER = b"o" * 32, b"n" * 32, b"x" * 32


def test_saved_with_mode_0600_under_a_permissive_umask(tmp_path: Path) -> None:
    store = TokenStore.in_state_directory(tmp_path, "imap")
    previous = os.umask(0)
    try:
        store.save(TokenRecord(refresh_token="rt-1"))
        store.save(TokenRecord(refresh_token="rt-2", access_token="at", expires_at=5.0))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.load() == TokenRecord(refresh_token="rt-2", access_token="at", expires_at=5.0)
    assert not list(store.path.parent.glob(".tmp-*"))  # no temporary left


def test_a_failed_write_leaves_the_old_record(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = TokenStore.in_state_directory(tmp_path, "imap")
    store.save(TokenRecord(refresh_token="rt-1"))

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        store.save(TokenRecord(refresh_token="rt-2"))
    monkeypatch.undo()
    assert store.load() == TokenRecord(refresh_token="rt-1")
    assert not list(store.path.parent.glob(".tmp-*"))


def test_sealed_under_the_newest_key_and_opened_after_a_rotation(tmp_path: Path) -> None:
    TokenStore.in_state_directory(tmp_path, "imap", MasterKeys.of((OLD,))).save(
        TokenRecord(refresh_token="rt-secret"))
    raw = (tmp_path / "oauth" / "imap.token").read_bytes()
    assert b"rt-secret" not in raw
    rotated = TokenStore.in_state_directory(tmp_path, "imap", MasterKeys.of((NEW, OLD)))
    assert rotated.load() == TokenRecord(refresh_token="rt-secret")
    with pytest.raises(TokenFileError):
        TokenStore.in_state_directory(tmp_path, "imap", MasterKeys.of((OTHER,))).load()
    with pytest.raises(TokenFileError):
        TokenStore.in_state_directory(tmp_path, "imap").load()  # sealed, and no key given


def test_one_mailbox_file_does_not_open_as_another(tmp_path: Path) -> None:
    keys = MasterKeys.of((OLD,))
    TokenStore.in_state_directory(tmp_path, "smtp", keys).save(TokenRecord(refresh_token="rt"))
    (tmp_path / "oauth" / "smtp.token").rename(tmp_path / "oauth" / "imap.token")
    with pytest.raises(TokenFileError):
        TokenStore.in_state_directory(tmp_path, "imap", keys).load()
