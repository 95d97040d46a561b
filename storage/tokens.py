"""OAuth 2 tokens of a mailbox on disk: one small file per mailbox under the state directory.

The refresh token is a long-lived credential that the provider may rotate at every refresh:
losing the new one locks the desk out until a person logs in again. So a write never leaves
a half file (temporary file, fsync, rename, fsync of the directory), the file is mode 0600
from its first byte, and with `[privacy] key_file` the bytes are sealed under the newest
master key (any key of the file opens them, as with the data keys).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from storage.crypto import MasterKeys, WrongKey, is_sealed, open_sealed, seal

DIRECTORY = "oauth"


class TokenFileError(Exception):
    """The token file exists but cannot be read: wrong key, altered or not ours."""


@dataclass(frozen=True)
class TokenRecord:
    """What a login or a refresh gave back. Times are Unix seconds."""

    refresh_token: str
    access_token: str = ""
    expires_at: float = 0.0  # of the access token; 0 when unknown
    obtained_at: float = 0.0  # when the access token was issued
    scope: str = ""

    def __repr__(self) -> str:  # never print a token
        return f"TokenRecord(expires_at={self.expires_at:.0f}, scope={self.scope!r})"


@dataclass(frozen=True)
class TokenStore:
    """The token file of one mailbox ("imap", "smtp")."""

    path: Path
    masters: MasterKeys | None = None

    @classmethod
    def in_state_directory(cls, state: Path, mailbox: str,
                           masters: MasterKeys | None = None) -> TokenStore:
        return cls(Path(state) / DIRECTORY / f"{mailbox}.token", masters)

    def load(self) -> TokenRecord | None:
        """The stored record; None when nobody has logged in yet."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if is_sealed(data):
            data = self._open(data)
        try:
            fields = json.loads(data)
            return TokenRecord(**{k: fields[k] for k in TokenRecord.__dataclass_fields__
                                  if k in fields})
        except (ValueError, TypeError, KeyError) as exc:
            raise TokenFileError(f"{self.path}: not a token file ({type(exc).__name__})") \
                from None

    def save(self, record: TokenRecord) -> None:
        """Replace the file whole: a crash leaves the old record or the new, never neither."""
        data = json.dumps(asdict(record)).encode()
        if self.masters is not None:
            data = seal(self.masters.newest.secret, data, self._associated())
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(self.path.parent)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Held across read, refresh and write: two processes on this host (the daemon and
        `ticketd doctor`) never refresh the same refresh token at once, which a provider that
        rotates strictly would answer with invalid_grant to one of them."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _open(self, sealed: bytes) -> bytes:
        if self.masters is None:
            raise TokenFileError(f"{self.path} is encrypted, and no [privacy] key_file is set")
        for master in self.masters.keys:
            try:
                return open_sealed(master.secret, sealed, self._associated())
            except WrongKey:
                continue
        raise TokenFileError(f"{self.path} does not open with any key of [privacy] key_file")

    def _associated(self) -> bytes:
        # Bound to the mailbox: the SMTP token file copied over the IMAP one does not open.
        return f"oauth-token/{self.path.name}".encode()


def _fsync_directory(directory: Path) -> None:
    """The rename itself is durable only once the directory is on disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
