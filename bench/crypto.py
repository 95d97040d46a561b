"""What encryption at rest costs per mail: the same backlog ingested from files with and
without `[privacy] key_file` (raw mail, attachments and the acknowledgement sealed with the
sender's data key; on SQLite also the database sealed with SQLCipher, and, apart, the files
sealed with the database in clear), then 200 searches on what was ingested (the SQL read
cost); and the sealing alone.

Each ingest run is a fresh child process (bench/ingest.py's `--from files` run, in the
mailbox runner's batches of 50, acknowledgements composed and queued); the runs alternate
without and with encryption `--repeat` times and each row shows its fastest, so that other
load on the machine weighs on both alike.
Usage: python bench/crypto.py [--count 2000] [--repeat 3] [--pg-url URL] [--sqlite-only]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import PG_DEFAULT  # noqa: E402


def sealing_alone(count: int) -> dict:
    """Per mail of the backlog: gzip (done without encryption too), then seal and open."""
    from bench.corpus import backlog
    from storage.crypto import blob_name, new_data_key, open_sealed, seal

    mails = [gzip.compress(raw, compresslevel=1, mtime=0) for raw in backlog(count)]
    key = new_data_key()
    t0 = time.perf_counter()
    sealed = [seal(key, data, blob_name(key, "0" * 64).encode()) for data in mails]
    t1 = time.perf_counter()
    for data in sealed:
        open_sealed(key, data, blob_name(key, "0" * 64).encode())
    t2 = time.perf_counter()
    return {"seal_us": (t1 - t0) / count * 1e6, "open_us": (t2 - t1) / count * 1e6,
            "kb": sum(map(len, mails)) / count / 1024}


MODES = {"no": (False, False), "files": (True, False), "files+db": (True, True)}


def _run(backend: str, count: int, mode: str, pg_url: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", backend, str(count), mode,
                          "--pg-url", pg_url],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "0"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sqlite-only", action="store_true")
    ap.add_argument("--child", nargs=3, metavar=("BACKEND", "COUNT", "MODE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        from bench.ingest import child

        backend, count, mode = args.child
        encrypt, sqlcipher = MODES[mode]
        print(json.dumps(child(backend, int(count), args.pg_url, True, "files",
                               encrypt=encrypt, sqlcipher=sqlcipher)))
        return
    backends = ("sqlite",) if args.sqlite_only else ("sqlite", "postgresql")
    print(f"{'backend':<11} {'sealed':>9} {'mails':>6} {'wall s':>7} {'mails/s':>8} "
          f"{'ms/mail':>8} {'+ms/mail':>8} {'search ms':>9} {'peak RSS MB':>11}")
    for backend in backends:
        modes = ("no", "files", "files+db") if backend == "sqlite" else ("no", "files")
        best: dict[str, dict] = {}
        for _ in range(args.repeat):
            for mode in modes:
                r = _run(backend, args.count, mode, args.pg_url)
                if mode not in best or r["wall"] < best[mode]["wall"]:
                    best[mode] = r
        plain = None
        for mode in modes:
            r = best[mode]
            per_mail = r["wall"] / r["count"] * 1000
            extra = "" if plain is None else f"{per_mail - plain:+8.2f}"
            plain = per_mail if plain is None else plain
            print(f"{backend:<11} {mode:>9} {r['count']:>6} {r['wall']:>7.2f} {r['rate']:>8.0f} "
                  f"{per_mail:>8.2f} {extra:>8} {r['search_ms']:>9.2f} {r['rss_mb']:>11.0f}")
    alone = sealing_alone(min(args.count, 1000))
    print(f"\nsealing alone (AES-256-GCM, one mail of {alone['kb']:.1f} KiB gzip on average): "
          f"seal {alone['seal_us']:.1f} us, open {alone['open_us']:.1f} us per mail")


if __name__ == "__main__":
    main()
