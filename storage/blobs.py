"""Content-addressed files: raw mails (gzip) and attachments, named by their sha256.

A file is written to a temporary name, flushed to disk and renamed, so that a
name, once present, always holds complete content. Files are written before
the database transaction that refers to them commits; a crash in between
leaves an unreferenced file, never a reference to a missing one.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from pathlib import Path


class BlobStore:
    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._made: set[Path] = set()  # directories known to exist: saves a mkdir per write

    def put_raw(self, raw: bytes) -> str:
        """Store a raw mail compressed; returns the sha256 of the uncompressed bytes."""
        digest = hashlib.sha256(raw).hexdigest()
        path = self.raw_path(digest)
        if not path.exists():
            self._write(path, gzip.compress(raw, compresslevel=1, mtime=0))
        return digest

    def get_raw(self, digest: str) -> bytes:
        return gzip.decompress(self.raw_path(digest).read_bytes())

    def put_attachment(self, payload: bytes, digest: str | None = None) -> str:
        digest = digest or hashlib.sha256(payload).hexdigest()
        path = self.attachment_path(digest)
        if not path.exists():
            self._write(path, payload)
        return digest

    def get_attachment(self, digest: str) -> bytes:
        return self.attachment_path(digest).read_bytes()

    def raw_path(self, digest: str) -> Path:
        return self.root / "raw" / digest[:2] / digest[2:4] / f"{digest}.eml.gz"

    def attachment_path(self, digest: str) -> Path:
        return self.root / "attachments" / digest[:2] / digest[2:4] / digest

    def _write(self, path: Path, data: bytes) -> None:
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
