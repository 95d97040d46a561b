"""Who the desk is when it writes: one brand's address, name, keys, subject tag and templates.

Every composer takes an ``Identity`` instead of the same five keyword arguments, so what a
mail says about its sender is decided in one place, and a reload (or a second brand) changes
all of it together. Several brands are several identities; the daemon keeps them by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from html import escape

from responders.complaint_profiles import ComplaintProfile
from responders.rendering import DEFAULT_LANGUAGE, Templates

__all__ = ["DEFAULT_BRAND", "Identity", "of_brand"]

DEFAULT_BRAND = "default"


@dataclass(frozen=True)
class Identity:
    address: str  # the support address: From of every mail, domain of our Message-IDs
    name: str  # the display name shown beside it
    keys: tuple[bytes, ...] = field(default=(), repr=False)  # HMAC keys, newest first
    templates: Templates = field(default_factory=Templates, compare=False)
    subject_format: str = "[#{number}]"  # how the ticket number appears in a subject
    language: str = DEFAULT_LANGUAGE  # the desk's own language: mail to staff, fallback
    # [responders] dispute_text: replaces the English paragraph of a final answer that says
    # where to go beyond us; "" (the default) takes every language's from dispute.txt.j2.
    dispute_text: str = ""
    brand: str = DEFAULT_BRAND
    aliases: frozenset[str] = frozenset()  # other addresses that reach this brand, lower-case
    # [complaints]: the regulator profile of this brand's licence, with its ADR entity.
    complaints: ComplaintProfile = field(default_factory=ComplaintProfile, compare=False)
    adr_addresses: frozenset[str] = frozenset()  # mail of the ADR bodies, lower-case
    deadline_action: str = "send"  # at the deadline: "send" the letter, or "head_of_support"
    signature: str = ""  # appended to every mail a player gets from this brand; "": none
    # [[brands]] routing overrides: category -> group, and the group of any other category
    routing: Mapping[str, str] = field(default_factory=dict, compare=False)
    default_group: str | None = None

    @property
    def addresses(self) -> frozenset[str]:
        """Every address of the brand, lower-case: mail from these is ours, never a ticket."""
        return frozenset({self.address.lower()}) | self.aliases

    def signed(self, text: str) -> str:
        """A plain-text body with the brand's signature below the usual "-- " line."""
        if not self.signature.strip():
            return text
        return f"{text.rstrip()}\n\n-- \n{self.signature.strip()}\n"

    def signed_html(self, html: str) -> str:
        """An HTML body with the brand's signature, escaped, before its </body>."""
        if not self.signature.strip():
            return html
        block = "<p>-- <br>\n" + "<br>\n".join(
            escape(line) for line in self.signature.strip().splitlines()) + "</p>\n"
        at = html.lower().rfind("</body>")
        return html[:at] + block + html[at:] if at >= 0 else html + block


def of_brand(desk: Any, name: str | None) -> Identity:
    """Who `desk` (the runtime value, or a monitor's plain desk) is under brand `name`: the
    brand's identity where the desk knows brands, else its one identity."""
    brand = getattr(desk, "brand", None)
    return brand(name) if callable(brand) else desk.identity
