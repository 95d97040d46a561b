"""Is this mail really from the address in its From? Invariant 5: agents are who they say.

Only our own MTA can tell. It verifies DKIM, SPF and DMARC on receipt and
prepends an Authentication-Results header (RFC 8601) naming itself by its
authserv-id. Anything below that header was written by the sender or by a
hop we do not control, so a header claiming our authserv-id is trusted only
when it is the one and only such header and the topmost Authentication-Results
of the message. RFC 8601 §5 has the MTA remove or ignore copies that claim its
id; a copy that got through anyway is treated as an attack, never resolved by
picking one (Zammad, RT and FreeScout were each impersonable by trusting any
such header, or the bottom one).

Inside the trusted header a pass counts only when it is aligned with the From
domain as DMARC (RFC 7489 §3.1) defines it: ``dkim=pass`` by its
``header.d``, ``spf=pass`` by its ``smtp.mailfrom`` domain, or ``dmarc=pass``
for exactly the From domain. Relaxed alignment compares organisational
domains, read from the Public Suffix List that the ``publicsuffixlist``
package ships (ICANN and private sections, so ``casino.org.mt`` and
``evil.org.mt`` differ, and so do two ``github.io`` names); the list is as
current as the installed package, and never fetched at run time. A
``dmarc=fail`` in the trusted header vetoes any pass we computed: the MTA has
found no aligned pass, and it may know a newer list than ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import idna
from publicsuffixlist import PublicSuffixList

from parsers.model import InboundMail

__all__ = [
    "AuthVerdict",
    "MethodResult",
    "parse_authentication_results",
    "verify_sender",
]

# A longer value is not one our MTA wrote; reading it costs time and proves nothing.
_MAX_VALUE = 64 * 1024
# How much of a value from the mail a reason may quote.
_QUOTE = 80
_SEPARATORS = frozenset(" \t\r\n(;=")
_VERSION = re.compile(r"[0-9]+")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ALIGNMENTS = ("relaxed", "strict")
_AUTH_METHODS = ("dkim", "spf", "dmarc")

@dataclass(frozen=True)
class MethodResult:
    """One resinfo: ``dkim=pass header.d=example.com`` is
    MethodResult("dkim", "pass", {"header.d": "example.com"}).

    Method and result are lower case, the method without its version;
    property names (``ptype.property``, and ``reason``) are lower case,
    their values as written, unquoted.
    """

    method: str
    result: str
    properties: dict[str, str]


@dataclass(frozen=True)
class AuthVerdict:
    ok: bool
    reason: str  # short, for people: logs and the "held" reply
    method: str | None  # "dkim" | "spf" | "dmarc" when ok, else None


# --- reading one header value --------------------------------------------------

_Token = tuple[str, str]  # ("word", text) | (";", "") | ("=", "")


def parse_authentication_results(value: str) -> tuple[str, list[MethodResult]]:
    """The authserv-id and the results of one Authentication-Results value.

    Comments, quoted strings, a version after the authserv-id, method versions
    (``dkim/1``) and ``none`` are understood; a resinfo that cannot be read is
    skipped. A value whose authserv-id cannot be read, or with an unterminated
    comment or quoted string, is garbage: ("", []). Never raises.
    """
    try:
        return _parse(value)
    except Exception:  # a reader bug must make the header untrusted, not stop the daemon
        return "", []


def _parse(value: str) -> tuple[str, list[MethodResult]]:
    if not isinstance(value, str) or len(value) > _MAX_VALUE:
        return "", []
    tokens = _tokenise(value)
    if tokens is None:
        return "", []
    segments = _split(tokens)
    authserv_id = _authserv_id(segments[0])
    if not authserv_id:
        return "", []
    results = [r for r in (_resinfo(s) for s in segments[1:]) if r is not None]
    return authserv_id, results


def _tokenise(value: str) -> list[_Token] | None:
    """Words, ";" and "="; comments and white space separate words, a quoted
    string joins the word around it. None for an unterminated comment or string."""
    tokens: list[_Token] = []
    word: list[str] | None = None  # None: between words; [] may be an empty quoted word
    i = 0
    while i < len(value):
        char = value[i]
        if char == '"':
            quoted = _quoted(value, i)
            if quoted is None:
                return None
            word = word or []
            word.append(quoted[0])
            i = quoted[1]
            continue
        if char not in _SEPARATORS:
            word = word or []
            word.append(char)
            i += 1
            continue
        if word is not None:
            tokens.append(("word", "".join(word)))
            word = None
        if char in ";=":
            tokens.append((char, ""))
        end = _comment_end(value, i) if char == "(" else i + 1
        if end is None:
            return None
        i = end
    if word is not None:
        tokens.append(("word", "".join(word)))
    return tokens


def _quoted(value: str, start: int) -> tuple[str, int] | None:
    """The content of the quoted string at ``start`` and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    return None


def _comment_end(value: str, start: int) -> int | None:
    """The index after the (possibly nested) comment at ``start``."""
    depth = 0
    i = start
    while i < len(value):
        char = value[i]
        if char == "\\":
            i += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _split(tokens: list[_Token]) -> list[list[_Token]]:
    segments: list[list[_Token]] = [[]]
    for token in tokens:
        if token[0] == ";":
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


def _authserv_id(segment: list[_Token]) -> str:
    """``authserv-id [version]``; anything else (such as a result where the
    id belongs, as some old filters write) leaves the header without an id."""
    if not segment or len(segment) > 2 or any(kind != "word" for kind, _ in segment):
        return ""
    if len(segment) == 2 and not _VERSION.fullmatch(segment[1][1]):
        return ""
    return segment[0][1].strip()


def _resinfo(segment: list[_Token]) -> MethodResult | None:
    pairs = _pairs(segment)
    if not pairs:
        return None  # "none", or unreadable
    (method, result), properties = pairs[0], pairs[1:]
    method = method.split("/", 1)[0].strip().lower()
    result = result.strip().lower()
    if not method or not result:
        return None
    found: dict[str, str] = {}
    for name, text in properties:
        name = name.lower()
        if (name == "reason" or "." in name) and name not in found:
            found[name] = text
    return MethodResult(method, result, found)


def _pairs(segment: list[_Token]) -> list[tuple[str, str]] | None:
    """``name = value`` pairs; the words before each "=" form its name, so
    ``header . d`` and ``dkim / 1`` read as ``header.d`` and ``dkim/1``."""
    pairs: list[tuple[str, str]] = []
    pending: list[str] = []
    i = 0
    while i < len(segment):
        kind, text = segment[i]
        if kind == "word":
            pending.append(text)
            i += 1
            continue
        following = segment[i + 1] if i + 1 < len(segment) else None
        if not pending or following is None or following[0] != "word":
            return None
        pairs.append(("".join(pending), following[1]))
        pending = []
        i += 2
    return pairs


# --- deciding ------------------------------------------------------------------


def verify_sender(
    mail: InboundMail, authserv_id: str, *, alignment: str = "relaxed"
) -> AuthVerdict:
    """Did our MTA (``authserv_id``) authenticate the From domain of ``mail``?"""
    if alignment not in _ALIGNMENTS:
        raise ValueError(f"alignment must be 'relaxed' or 'strict', not {alignment!r}")
    trusted = authserv_id.strip().lower()
    if not trusted:
        return _refuse("no trusted authserv-id configured")
    results = _trusted_results(mail, trusted)
    if isinstance(results, AuthVerdict):
        return results
    from_domain = _from_domain(mail)
    if from_domain is None:
        return _refuse("no From domain to authenticate")
    return _judge(results, from_domain, trusted, alignment == "strict")


def _trusted_results(mail: InboundMail, trusted: str) -> list[MethodResult] | AuthVerdict:
    """The results of our MTA's header, or why there is no such header we can trust."""
    parsed = [parse_authentication_results(v) for v in mail.header_all("authentication-results")]
    ours = [i for i, (found, _) in enumerate(parsed) if found.lower() == trusted]
    name = _quote(trusted)
    if not ours:
        return _refuse(f"no Authentication-Results from {name}")
    if len(ours) > 1:
        return _refuse(f"{len(ours)} Authentication-Results headers claim {name}")
    if ours[0] != 0:
        return _refuse(f"Authentication-Results from {name} is not the topmost one")
    return parsed[0][1]


def _from_domain(mail: InboundMail) -> str | None:
    if mail.sender is None or "@" not in mail.sender.addr:
        return None
    return _normalise_domain(mail.sender.addr.rsplit("@", 1)[1])


def _judge(
    results: list[MethodResult], from_domain: str, trusted: str, strict: bool
) -> AuthVerdict:
    dmarc_fail = next((r for r in results if r.method == "dmarc" and r.result == "fail"), None)
    if dmarc_fail is not None:
        return _refuse(f"dmarc=fail for {_quote(dmarc_fail.properties.get('header.from', '?'))}")
    failures: list[str] = []
    for result in results:
        if result.method not in _AUTH_METHODS:
            continue
        passed, reason = _check(result, from_domain, strict)
        if passed:
            return AuthVerdict(True, reason, result.method)
        failures.append(reason)
    if failures:
        return _refuse("; ".join(dict.fromkeys(failures)))
    others = ", ".join(f"{r.method}={r.result}" for r in results)
    tail = f" (only {_quote(others)})" if others else ""
    return _refuse(f"no dkim, spf or dmarc result from {_quote(trusted)}{tail}")


def _check(result: MethodResult, from_domain: str, strict: bool) -> tuple[bool, str]:
    """One dkim, spf or dmarc result against the From domain: (passes, reason)."""
    verdict = f"{result.method}={_quote(result.result)}"
    if result.result != "pass":
        return False, verdict
    name = {"dkim": "header.d", "spf": "smtp.mailfrom", "dmarc": "header.from"}[result.method]
    written = result.properties.get(name, "")
    domain = _normalise_domain(written.rsplit("@", 1)[-1].strip("<> "))
    if domain is None:
        return False, f"{verdict} without a usable {name}"
    if result.method == "dmarc":
        if domain == from_domain:
            return True, f"{verdict} {name}={domain}"
        return False, f"{verdict} for {domain}, not From {from_domain}"
    if _aligned(domain, from_domain, strict):
        mode = " (strict)" if strict else ""
        return True, f"{verdict} {name}={domain} aligned{mode} with From"
    return False, f"{verdict} for {domain} not aligned with From {from_domain}"


def _aligned(domain: str, from_domain: str, strict: bool) -> bool:
    if strict:
        return domain == from_domain
    return _org_domain(domain) == _org_domain(from_domain)


# --- domains -------------------------------------------------------------------


def _normalise_domain(value: str) -> str | None:
    """Lower case, no trailing dot, internationalised labels as A-labels (IDNA2008);
    None unless the result is a syntactically valid domain name. A name that UTS 46 would
    map to another (faß.de to fass.de under IDNA2003, full-width dots …) is refused: it
    must never align with the domain it maps to."""
    domain = value.strip().lower().removesuffix(".")
    if not domain.isascii():
        try:
            if idna.uts46_remap(domain, std3_rules=True, transitional=False) != domain:
                return None
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return None
    labels = domain.split(".")
    if len(domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return domain


@cache
def _suffix_list() -> PublicSuffixList:
    # The list bundled with the package: read once, on the first alignment check.
    return PublicSuffixList()


def _org_domain(domain: str) -> str:
    """The organisational domain (RFC 7489 §3.2): the public suffix plus one label; a
    domain that is itself a public suffix is its own."""
    return _suffix_list().privatesuffix(domain) or domain


def _refuse(reason: str) -> AuthVerdict:
    return AuthVerdict(False, reason, None)


def _quote(text: str) -> str:
    """A value from the mail, safe and short enough to sit in a reason."""
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= _QUOTE else text[: _QUOTE - 1] + "…"
