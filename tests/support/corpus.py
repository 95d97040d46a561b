"""The shared corpus of third-party mails (`../shared/corpus` beside the checkout), when present."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"

# Folders of whole RFC 5322 messages, and how to recognise the message files in each.
MESSAGE_FOLDERS = {
    "discourse": ("*.eml",),
    "flufl-bounce": ("*.txt",),
    "ruby-mail-gem": ("*.eml",),
    "sisimai-set-of-emails": ("*.eml",),
    "spamscope-mail-parser": ("mail_*",),
    "talon": ("*.eml",),
    "zammad": ("*.box",),
}


def require_corpus() -> Path:
    if not CORPUS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the shared corpus is missing: {CORPUS}")
        pytest.skip("the shared corpus is not present beside the checkout")
    return CORPUS


def message_files(root: Path) -> Iterator[Path]:
    for folder, patterns in MESSAGE_FOLDERS.items():
        for pattern in patterns:
            yield from sorted(p for p in (root / folder).rglob(pattern) if p.is_file())
