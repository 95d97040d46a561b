"""A local Maildir as the mailbox: the same runner as IMAP, for the demo and for MTAs that
deliver to a Maildir. A mail is moved to the `.Processed` or `.Quarantine` sub-folder only
after its transaction has committed, as over IMAP."""

from __future__ import annotations

import mailbox
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from daemon.imap import Fetched


_NAME = re.compile(r"(\d+)\.([^.]*)")
_MICROSECONDS = re.compile(r"M(\d+)")


def delivery_order(key: str) -> tuple[int, int, str]:
    """A sort key putting Maildir names in the order they were delivered. A name starts with
    the delivery's second, and Dovecot, Postfix and Python's mailbox write its microseconds
    after an M in the next part, not zero-padded: sorted as text, M100000 would come before
    M99999 of the same second, and a player's follow-up before the mail it answers. A name
    of another shape sorts after these, as text."""
    name = _NAME.match(key)
    if name is None:
        return (2**63, 0, key)
    micro = _MICROSECONDS.search(name.group(2))
    return (int(name.group(1)), int(micro.group(1)) if micro else 0, key)


class MaildirSource:
    def __init__(self, path: str | Path, *, max_bytes: int = 40 * 2**20) -> None:
        self.root = mailbox.Maildir(str(path), create=True)
        self.max_bytes = max_bytes
        self._keys: dict[int, str] = {}  # our stand-in for UIDs: a number per Maildir key
        self._processed = self._folder("Processed")
        self._quarantine = self._folder("Quarantine")
        self._junk = self._folder("Junk")

    def _folder(self, name: str) -> mailbox.Maildir:
        try:
            return self.root.get_folder(name)
        except mailbox.NoSuchMailboxError:
            return self.root.add_folder(name)

    @property
    def uidvalidity(self) -> int:
        return 1

    def pending(self, limit: int) -> list[int]:
        self.root = mailbox.Maildir(self.root._path, create=False)  # noqa: SLF001 - see new files
        keys = sorted(self.root.keys(), key=delivery_order)[:limit]
        self._keys = {i + 1: key for i, key in enumerate(keys)}
        return list(self._keys)

    def fetch(self, uids: list[int]) -> list[Fetched]:
        out = []
        for uid in uids:
            raw = self.root.get_bytes(self._keys[uid])
            out.append(Fetched(uid, raw if len(raw) <= self.max_bytes else None, len(raw),
                               self._delivered(self._keys[uid])))
        return out

    def _delivered(self, key: str) -> datetime | None:
        """When the MTA delivered the file (a complaint's receipt, as INTERNALDATE over
        IMAP): its modification time, which MaildirMessage.get_date() reads too, without
        parsing the mail a second time. None when the file is gone."""
        try:
            name = os.path.join(self.root._path, self.root._lookup(key))  # noqa: SLF001
            return datetime.fromtimestamp(os.path.getmtime(name), UTC)
        except (OSError, KeyError):
            return None

    def mark_processed(self, uids: list[int]) -> None:
        self._move(uids, self._processed)

    def mark_quarantined(self, uids: list[int]) -> None:
        self._move(uids, self._quarantine)

    def mark_junk(self, uids: list[int]) -> None:
        self._move(uids, self._junk)

    def _move(self, uids: list[int], target: mailbox.Maildir) -> None:
        for uid in uids:
            key = self._keys.pop(uid)
            target.add(self.root.get_message(key))
            self.root.remove(key)

    def wait(self, timeout: float) -> bool:
        time.sleep(min(timeout, 1.0))  # polling: Maildirs have no IDLE
        return False
