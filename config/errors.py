"""What went wrong in a configuration, said so that the operator can fix it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EX_CONFIG = 78  # sysexits.h: "configuration error"; systemd does not restart on it


@dataclass(frozen=True)
class Problem:
    """One mistake: where it was written, which key, and why it is wrong."""

    source: str  # a file name, or "environment TICKETD_IMAP__PORT"
    key: str | None  # dotted, e.g. "imap.port"; None when the whole source is at fault
    reason: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.source, self.key, self.reason) if part)


class ConfigError(Exception):
    """The configuration cannot be used. ``str()`` gives one problem per line."""

    def __init__(self, source: str, key: str | None, reason: str) -> None:
        self.problems: tuple[Problem, ...] = (Problem(source, key, reason),)
        super().__init__(str(self))

    @classmethod
    def of(cls, problems: Iterable[Problem]) -> ConfigError:
        """One error carrying several problems, in the order given."""
        problems = tuple(problems)
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        error = cls(problems[0].source, problems[0].key, problems[0].reason)
        error.problems = problems
        error.args = (str(error),)
        return error

    @property
    def source(self) -> str:
        return self.problems[0].source

    @property
    def key(self) -> str | None:
        return self.problems[0].key

    @property
    def reason(self) -> str:
        return self.problems[0].reason

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)
