"""The one exception the parsers raise."""


class RejectedMail(Exception):
    """A mail that will not become a ticket; ``reason`` says why, briefly, for the quarantine."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
