"""The same backlog through Roundup's mail gateway, side by side with ticketd's ingest.

Roundup (PyPI package `roundup`) is installed into a throwaway venv cached under
bench/.peer-venv (not in git). A tracker with the `classic` template and the `sqlite`
backend is made in a temporary directory; unknown senders may mail in (the anonymous
user gets "Email Access", so the gateway registers them); outgoing mail goes to a file
(`[mail] debug`), never to a server. Two ways of feeding the gateway:

  pipe  one `roundup-mailgw TRACKER` process per mail, the mail on stdin (as an MTA
        pipe alias runs it); timed on the first --pipe-count mails of the backlog
  mbox  one `roundup-mailgw TRACKER mailbox FILE` process for the whole backlog

Mails rejected are counted from the tracker itself: mails fed minus `msg` items stored.
Usage: python bench/peer_roundup.py [--count 5000] [--pipe-count 300] [--modes pipe mbox]
Importable: rate(count, pipe_count, modes) -> dict.
"""

from __future__ import annotations

import argparse
import configparser
import json
import mailbox
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import backlog  # noqa: E402

VENV = Path(__file__).resolve().parent / ".peer-venv"
ADMIN_PASSWORD = "bench-admin-0123"


def venv() -> Path:
    """The venv's bin directory, with roundup installed (once)."""
    bindir = VENV / "bin"
    if not (bindir / "roundup-mailgw").exists():
        if not (bindir / "python").exists():
            subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q", "roundup"], check=True)
    return bindir


def version(bindir: Path) -> str:
    out = subprocess.run([str(bindir / "python"), "-c",
                          "import roundup; print(roundup.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


def make_tracker(bindir: Path, work: Path) -> Path:
    tracker = work / "tracker"
    admin = str(bindir / "roundup-admin")
    subprocess.run([admin, "-i", str(tracker), "install", "classic", "sqlite"],
                   check=True, capture_output=True)
    ini = tracker / "config.ini"
    cfg = configparser.RawConfigParser()
    cfg.optionxform = str  # keep the option names as written
    cfg.read(ini, encoding="utf-8")
    cfg.set("tracker", "web", "http://localhost/")
    cfg.set("mail", "domain", "casino.test")
    cfg.set("mail", "host", "localhost")
    cfg.set("mail", "debug", str(work / "outgoing-mail.txt"))  # send nothing: write to a file
    cfg.set("tracker", "email", "support")
    with ini.open("w", encoding="utf-8") as out:
        cfg.write(out)
    # Classic template: anonymous may register but not mail in; let unknown senders in,
    # the gateway then creates a user for each (new_email_user_roles = User).
    schema = tracker / "schema.py"
    text = schema.read_text()
    line = "#db.security.addPermissionToRole('Anonymous', 'Email Access')"
    if line not in text:
        raise RuntimeError("classic schema.py changed: cannot allow unknown senders")
    schema.write_text(text.replace(line, line[1:]))
    subprocess.run([admin, "-i", str(tracker), "initialise", ADMIN_PASSWORD],
                   check=True, capture_output=True)
    return tracker


def stored(bindir: Path, tracker: Path) -> dict[str, int]:
    """Items in the tracker: issues, messages, users, files."""
    code = ("import sys, roundup.instance as i\n"
            "db = i.open(sys.argv[1]).open('admin')\n"
            "print(len(db.issue.list()), len(db.msg.list()), len(db.user.list()), len(db.file.list()))\n"
            "db.close()\n")
    out = subprocess.run([str(bindir / "python"), "-c", code, str(tracker)],
                         capture_output=True, text=True, check=True)
    issues, msgs, users, files = map(int, out.stdout.split())
    return {"issues": issues, "msgs": msgs, "users": users, "files": files}


def bounces(work: Path) -> int:
    """Error replies the gateway 'sent' (into the debug file) to senders."""
    path = work / "outgoing-mail.txt"
    if not path.exists():
        return 0
    text = path.read_text(errors="replace")
    return text.count("Subject: Failed issue tracker submission")


def run_pipe(bindir: Path, mails: list[bytes]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ticketd-peer-"))
    try:
        tracker = make_tracker(bindir, work)
        gateway = str(bindir / "roundup-mailgw")
        failed_exit = 0
        started = time.perf_counter()
        for raw in mails:
            done = subprocess.run([gateway, str(tracker)], input=raw, capture_output=True)
            failed_exit += done.returncode != 0
        wall = time.perf_counter() - started
        items = stored(bindir, tracker)
        return {"mode": "pipe", "count": len(mails), "wall": wall, "rate": len(mails) / wall,
                "rejected": len(mails) - items["msgs"], "exit_errors": failed_exit,
                "bounces": bounces(work), **items}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_mbox(bindir: Path, mails: list[bytes]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ticketd-peer-"))
    try:
        tracker = make_tracker(bindir, work)
        box_path = work / "backlog.mbox"
        box = mailbox.mbox(str(box_path))
        for raw in mails:
            box.add(raw)
        box.close()
        started = time.perf_counter()
        done = subprocess.run([str(bindir / "roundup-mailgw"), str(tracker), "mailbox", str(box_path)],
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
        items = stored(bindir, tracker)
        return {"mode": "mbox", "count": len(mails), "wall": wall, "rate": len(mails) / wall,
                "rejected": len(mails) - items["msgs"], "exit_errors": int(done.returncode != 0),
                "stderr": done.stderr.strip()[-300:], "bounces": bounces(work), **items}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rate(count: int = 5000, pipe_count: int = 300, modes: tuple[str, ...] = ("pipe", "mbox")) -> dict:
    bindir = venv()
    mails = list(backlog(count))
    result: dict = {"roundup": version(bindir)}
    if "pipe" in modes:
        result["pipe"] = run_pipe(bindir, mails[:min(pipe_count, count)])
    if "mbox" in modes:
        result["mbox"] = run_mbox(bindir, mails)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--pipe-count", type=int, default=300)
    ap.add_argument("--modes", nargs="+", default=["pipe", "mbox"], choices=["pipe", "mbox"])
    ap.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    args = ap.parse_args()
    result = rate(args.count, args.pipe_count, tuple(args.modes))
    if args.json:
        print(json.dumps(result))
        return
    print(f"Roundup {result['roundup']} mail gateway, classic template, sqlite backend")
    print(f"{'mode':<5} {'mails':>6} {'wall s':>8} {'mails/s':>8} {'rejected':>8} {'issues':>7} {'msgs':>6} {'users':>6} {'files':>6}")
    for mode in args.modes:
        r = result[mode]
        print(f"{mode:<5} {r['count']:>6} {r['wall']:>8.2f} {r['rate']:>8.1f} {r['rejected']:>8} "
              f"{r['issues']:>7} {r['msgs']:>6} {r['users']:>6} {r['files']:>6}")


if __name__ == "__main__":
    main()
