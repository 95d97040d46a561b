"""The shipped example is valid and documents every key."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import config
from config import load_settings
from config.schema import SECRET_FILES, section_models

EXAMPLE = Path(config.__file__).with_name("ticketd.example.toml")
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


def test_example_file_loads(write):
    environ = {  # the example names credentials: point its secret files at real files
        "TICKETD_IMAP__PASSWORD_FILE": str(write("imap-password", "imap-pw\n")),
        "TICKETD_SMTP__PASSWORD_FILE": str(write("smtp-password", "smtp-pw\n")),
        "TICKETD_SECURITY__SECRET_FILE": str(write("secret", "new-key-0123456789ab\n"
                                                             "old-key-0123456789ab\n")),
        "TICKETD_PRIVACY__KEY_FILE": str(write("master-key", MASTER_KEY + "\n")),
    }
    settings = load_settings(EXAMPLE, environ)
    assert settings.imap is not None and settings.smtp is not None
    assert settings.security.keys == (b"new-key-0123456789ab", b"old-key-0123456789ab")
    assert settings.privacy.master_keys == (bytes(range(32)),)  # encryption at rest is on


def _sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in text.splitlines():
        # An optional section that is off by default is shown commented out, as its keys.
        if header := re.match(r"(# )?\[(\w+)\]", line):
            lines = sections.setdefault(header.group(2), [])
        lines.append(line)
    return sections


def test_example_file_shows_and_comments_every_key():
    sections = _sections(EXAMPLE.read_text(encoding="utf-8"))
    for name, model in section_models().items():
        lines = sections[name]
        for key in set(model.model_fields) - set(SECRET_FILES.values()):
            pattern = re.compile(rf"^(# )?(\[\[{name}\.)?{key}( = |\]\])")
            at = next((i for i, line in enumerate(lines) if pattern.match(line)), None)
            assert at is not None, f"{name}.{key} missing from the example"
            beside, below = lines[at].removeprefix("# "), lines[at + 1].lstrip()
            assert "#" in beside or below.startswith("#"), f"{name}.{key} has no comment"
