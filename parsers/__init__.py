"""Pure functions from the bytes of a mail to values: no I/O, no database, no logging setup."""

from parsers.classify import DEFAULT_RULES, Classification, Rule, classify
from parsers.language import detect_language
from parsers.mail import RejectedMail, parse
from parsers.model import Address, Attachment, InboundMail, Limits

__all__ = [
    "DEFAULT_RULES",
    "Address",
    "Attachment",
    "Classification",
    "InboundMail",
    "Limits",
    "RejectedMail",
    "Rule",
    "classify",
    "detect_language",
    "parse",
]
