"""A small real filesystem for tests that fill it: a tmpfs of a few MiB, mounted in the test's
directory and unmounted afterwards. Writing past its size fails with ENOSPC, as on a full disk.
Mounting needs root (or CAP_SYS_ADMIN); without it the test is skipped, or failed when CI=true.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

MiB = 2**20


class SmallDisk:
    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self._fillers = 0

    def free(self) -> int:
        """Bytes an unprivileged writer can still use."""
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave: int) -> Path:
        """A file of zeros that leaves about `leave` bytes free; delete it to free them."""
        self._fillers += 1
        filler = self.path / f"filler-{self._fillers}"
        with filler.open("wb", buffering=0) as fh:
            remaining = self.free() - leave
            chunk = b"\0" * MiB
            while remaining > 0:
                try:
                    remaining -= fh.write(chunk[:remaining])
                except OSError as err:  # someone else took the last bytes meanwhile
                    if err.errno != errno.ENOSPC:
                        raise
                    break
        return filler

    def resize(self, size: int) -> None:
        _mount("-o", f"remount,size={size}", str(self.path))
        self.size = size


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("mount") or "mount", *args], capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """An 8 MiB tmpfs at tmp_path/disk."""
    path = tmp_path / "disk"
    path.mkdir()
    size = 8 * MiB
    done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)) \
        if shutil.which("mount") else None
    if done is None or done.returncode != 0:
        reason = f"cannot mount a tmpfs: {done.stderr.strip() if done else 'no mount command'}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield SmallDisk(path, size)
    finally:
        # Lazily: a child that still has a file open there must not leave the mount behind.
        subprocess.run([shutil.which("umount") or "umount", "--lazy", str(path)],
                       capture_output=True, timeout=30)
