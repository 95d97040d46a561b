"""Content-addressed files: raw mails (gzip) and attachments, named by their sha256.

A file is written to a temporary name, flushed to disk and renamed, so that a
name, once present, always holds complete content. Files are written before
the database transaction that refers to them commits; a crash in between
leaves an unreferenced file, never a reference to a missing one.

Ingest writes a whole batch of mails through one `BlobBatch`: each file is
compressed, written and flushed to its temporary name by a small pool of
threads while the ingest thread goes on parsing and storing (zlib releases the
GIL), and all are renamed together just before the batch's transaction commits.
Where the system has syncfs(2) (Linux), a batch costs two flushes of the store's
filesystem whatever its size: one for every file's content before any is named,
one for the names before the transaction commits (a name never reaches the disk
ahead of its content). Elsewhere each file and each directory is flushed on its
own, as fsync(2) allows. Temporary files live in one
staging folder on the same filesystem (a rename from there is atomic), so that
what a killed process left behind is found and swept without walking the store.

With a data key (`key=`), a file is sealed with it (storage/crypto.py) and named by
HMAC(key, sha256): `raw/ab/cd/<name>.sealed` (the gzip of the mail, sealed) and
`attachments/ab/cd/<name>.sealed`. Without one, files are stored in clear under their
sha256, as before encryption at rest existed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from storage.crypto import DataKey, blob_name, open_sealed, seal

WRITERS = 2  # threads that compress and flush files beside the ingest thread
STAGING = ".staging"  # temporary files, under the store's root
STALE_AFTER = 3600.0  # seconds: no batch is ever written for this long


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(fd), or None where there is none (not Linux, no libc to load)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs


_SYNCFS = _load_syncfs()


class BlobStore:
    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._made: set[Path] = set()  # directories known to exist: saves a mkdir per write
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def put_raw(self, raw: bytes, key: DataKey | None = None) -> str:
        """Store a raw mail compressed; returns the sha256 of the uncompressed bytes."""
        with self.batch() as files:
            return files.put_raw(raw, key)

    def get_raw(self, digest: str, key: DataKey | None = None) -> bytes:
        return gzip.decompress(self._read(self.raw_path(digest, key), key))

    def put_attachment(self, payload: bytes, digest: str | None = None,
                       key: DataKey | None = None) -> str:
        with self.batch() as files:
            return files.put_attachment(payload, digest, key)

    def get_attachment(self, digest: str, key: DataKey | None = None) -> bytes:
        return self._read(self.attachment_path(digest, key), key)

    def get_quarantined(self, digest: str, key: DataKey | None = None) -> bytes:
        return gzip.decompress(self._read(self.quarantine_path(digest, key), key))

    def quarantine_path(self, digest: str, key: DataKey | None = None) -> Path:
        """An infected attachment: apart from the attachments agents get, and compressed, so
        that nothing opens it by accident and the bytes on disk are not the program."""
        if key is not None:
            return self._sealed_path("quarantine", blob_name(key.secret, digest))
        return self.root / "quarantine" / digest[:2] / digest[2:4] / f"{digest}.gz"

    def raw_path(self, digest: str, key: DataKey | None = None) -> Path:
        if key is not None:
            return self._sealed_path("raw", blob_name(key.secret, digest))
        return self.root / "raw" / digest[:2] / digest[2:4] / f"{digest}.eml.gz"

    def attachment_path(self, digest: str, key: DataKey | None = None) -> Path:
        if key is not None:
            return self._sealed_path("attachments", blob_name(key.secret, digest))
        return self.root / "attachments" / digest[:2] / digest[2:4] / digest

    def remove(self, path: Path) -> bool:
        """Delete one stored file (erasure, retention); False when it was not there."""
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def sealed_path(self, kind: str, name: str) -> Path:
        """A sealed file of `kind` (raw, attachments, quarantine) by its name (the retention
        sweep puts back a file it knows only by that name)."""
        return self._sealed_path(kind, name)

    def _sealed_path(self, kind: str, name: str) -> Path:
        return self.root / kind / name[:2] / name[2:4] / f"{name}.sealed"

    def _read(self, path: Path, key: DataKey | None) -> bytes:
        data = path.read_bytes()
        return data if key is None else open_sealed(key.secret, data, associated(path))

    def batch(self) -> BlobBatch:
        return BlobBatch(self)

    @property
    def staging(self) -> Path:
        return self.root / STAGING

    def sweep(self, older_than: float = STALE_AFTER) -> int:
        """Remove temporary files a killed process left (older than any batch); how many.
        Age, not owner: several daemons may share the store, each with batches in flight."""
        removed = 0
        cutoff = time.time() - older_than
        try:
            entries = list(os.scandir(self.staging))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def _submit(self, work: Callable[[], str | None]) -> Future[str | None]:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="blob-writer")
        return self._pool.submit(work)

    @property
    def flushes_per_batch(self) -> bool:
        """True: a batch is made durable by two flushes of the whole filesystem (syncfs)
        instead of one fsync per file and per directory."""
        return self.fsync and _SYNCFS is not None

    def flush_filesystem(self) -> None:
        """Everything written to the store's filesystem so far, on disk (syncfs(2))."""
        assert _SYNCFS is not None
        fd = os.open(self.staging, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _SYNCFS(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"syncfs: {os.strerror(err)}")
        finally:
            os.close(fd)

    def _directory(self, directory: Path) -> None:
        if directory not in self._made:
            directory.mkdir(parents=True, exist_ok=True)
            self._made.add(directory)


def associated(path: Path) -> bytes:
    """What a sealed file is bound to: its kind and name, so that it opens only there."""
    return f"{path.parent.parent.parent.name}/{path.name}".encode()


class BlobBatch:
    """Files written now and named together by `publish()`; `discard()` (or leaving the
    `with` block on an error) removes what was not published."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        # final name -> its temporary name; None: the name was there already
        self._pending: dict[Path, Future[str | None]] = {}

    def __enter__(self) -> BlobBatch:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.publish()
        else:
            self.discard()

    def put_raw(self, raw: bytes, key: DataKey | None = None, digest: str | None = None) -> str:
        """`digest`: the sha256 of `raw` when the caller has it already."""
        digest = digest or hashlib.sha256(raw).hexdigest()
        path = self.store.raw_path(digest, key)
        if path not in self._pending:
            self._write(path, lambda: _sealed(gzip.compress(raw, compresslevel=1, mtime=0),
                                              key, path))
        return digest

    def put_attachment(self, payload: bytes, digest: str | None = None,
                       key: DataKey | None = None) -> str:
        digest = digest or hashlib.sha256(payload).hexdigest()
        path = self.store.attachment_path(digest, key)
        if path not in self._pending:
            self._write(path, lambda: _sealed(payload, key, path))
        return digest

    def put_quarantined(self, payload: bytes, digest: str | None = None,
                        key: DataKey | None = None) -> str:
        digest = digest or hashlib.sha256(payload).hexdigest()
        path = self.store.quarantine_path(digest, key)
        if path not in self._pending:
            self._write(path, lambda: _sealed(gzip.compress(payload, compresslevel=1, mtime=0),
                                              key, path))
        return digest

    def publish(self) -> None:
        """Give every written file its name; with fsync on, the names reach the disk too.
        A file that could not be written raises its error here, and nothing is named."""
        wait(self._pending.values())
        failed = [f.exception() for f in self._pending.values() if f.exception()]
        if failed:
            self.discard()
            raise failed[0]  # type: ignore[misc]
        if not self._pending:
            return
        per_batch = self.store.flushes_per_batch
        if per_batch:  # content first: a name must never reach the disk before its bytes
            self.store.flush_filesystem()
        directories = set()
        for path, written in self._pending.items():
            temporary = written.result()
            if temporary is not None:
                os.replace(temporary, path)
                directories.add(path.parent)
        self._pending.clear()
        if per_batch:
            self.store.flush_filesystem()
        elif self.store.fsync:
            for directory in directories:
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def discard(self) -> None:
        wait(self._pending.values())
        for written in self._pending.values():
            if written.exception() is None and written.result() is not None:
                try:
                    os.unlink(written.result())
                except FileNotFoundError:
                    pass
        self._pending.clear()

    def _write(self, path: Path, content: Callable[[], bytes]) -> None:
        self.store._directory(self.store.staging)
        self._pending[path] = self.store._submit(lambda: self._write_temp(path, content))

    def _write_temp(self, path: Path, content: Callable[[], bytes]) -> str | None:
        """In a writer thread (its look-ups and directories too, off the ingest thread): the
        content in a new temporary file, flushed unless the batch is flushed whole; its name.
        None when `path` is there already: content-addressed, it holds the same bytes."""
        if path.exists():
            return None
        self.store._directory(path.parent)
        fd, tmp = tempfile.mkstemp(dir=self.store.staging, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content())
                if self.store.fsync and not self.store.flushes_per_batch:
                    fh.flush()
                    os.fsync(fh.fileno())
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return tmp


def _sealed(content: bytes, key: DataKey | None, path: Path) -> bytes:
    """In a writer thread: the content sealed for its path, or as it is without a key."""
    return content if key is None else seal(key.secret, content, associated(path))
