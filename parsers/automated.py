"""Was a mail written by a machine? Invariant 3: ticketd never answers one.

Detection is an ordered tuple of small checks, each
``check(mail, own) -> reason | None`` where ``own`` holds our own addresses
(lower case). The first reason wins; ``None`` from all of them means a person
wrote the mail. The checks follow what RFC 3834, RFC 3464/6522 (DSN and
reports), RFC 2369/2919 (list headers) and RFC 5965 (ARF) define, plus the
headers real responders set, with osTicket's ``isAutoReply``/``isBounce`` and
Zammad's ``AutoResponseCheck`` as the bar. Headers come first because they
are what the sending software declares; sender names next; the subject last
and only as anchored, well-known prefixes, so a person who writes "my
refund was not delivered" is never taken for a bounce.

``is_bounce`` is the narrower question: is this a delivery failure or delay
report (a DSN, an Exim ``X-Failed-Recipients`` mail, a mail from
MAILER-DAEMON, one of the fixed subjects MTAs write, or a postmaster or
null-sender notice whose subject speaks of a failed delivery)? ARF reports
and read receipts never are. Every bounce is automated; not every automated
mail is a bounce.

Every check reads header values cut to ``_HEAD`` characters and uses only
linear regular expressions, so a megabyte-long header costs microseconds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from parsers.model import InboundMail

__all__ = [
    "AUTOMATED_CHECKS",
    "BOUNCE_CHECKS",
    "Check",
    "automated_reason",
    "is_bounce",
    "RESPONDER_PHRASES",
    "responder_reason",
    "responder_subject",
    "text_fingerprint",
]

Check = Callable[[InboundMail, frozenset[str]], "str | None"]

# Only the start of a header value says anything here; the rest is never scanned.
_HEAD = 500
_COMMENT = re.compile(r"\([^()]*\)")
_TOKEN_SPLIT = re.compile(r"[\s,;]+")
_REPORT_TYPE = re.compile(r'report-type\s*=\s*"?\s*([a-z0-9._-]+)', re.IGNORECASE)

_DSN_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status"})
_FEEDBACK_PARTS = frozenset({"message/feedback-report"})
_RECEIPT_PARTS = frozenset(
    {"message/disposition-notification", "message/global-disposition-notification"}
)
_FALSE = frozenset({"", "no", "false", "0", "off"})


def _value(mail: InboundMail, name: str) -> str | None:
    value = mail.header(name)
    return None if value is None else value[:_HEAD]


def _tokens(value: str) -> list[str]:
    """Lower-case words of a structured header value, comments removed."""
    return [t for t in _TOKEN_SPLIT.split(_COMMENT.sub(" ", value[:_HEAD].lower())) if t]


def _first_token(mail: InboundMail, name: str) -> str | None:
    value = _value(mail, name)
    if value is None:
        return None
    tokens = _tokens(value)
    return tokens[0] if tokens else ""


def _report_type(mail: InboundMail) -> str | None:
    """The report-type of a top-level multipart/report, or None."""
    value = _value(mail, "content-type") or ""
    if not value.lower().lstrip().startswith("multipart/report"):
        return None
    match = _REPORT_TYPE.search(value)
    return match.group(1).lower() if match else ""


def _has_part(mail: InboundMail, types: frozenset[str]) -> bool:
    return any(part.content_type in types for part in mail.attachments)


# --- reports -----------------------------------------------------------------


def delivery_status_report(mail: InboundMail, own: frozenset[str]) -> str | None:
    """RFC 3464 DSN: multipart/report of type delivery-status, or its status part anywhere."""
    if _report_type(mail) in ("delivery-status", "global-delivery-status"):
        return "delivery-status report"
    if _has_part(mail, _DSN_PARTS):
        return "delivery-status part"
    return None


def feedback_report(mail: InboundMail, own: frozenset[str]) -> str | None:
    """RFC 5965 ARF abuse/complaint report."""
    if _report_type(mail) == "feedback-report" or _has_part(mail, _FEEDBACK_PARTS):
        return "feedback report (ARF)"
    return None


def other_report(mail: InboundMail, own: frozenset[str]) -> str | None:
    """Read receipts (RFC 8098) and any other RFC 6522 report: written by software."""
    if _has_part(mail, _RECEIPT_PARTS):
        return "disposition notification"
    kind = _report_type(mail)
    if kind is not None:
        return f"multipart/report ({kind or 'no report-type'})"
    return None


def failed_recipients_header(mail: InboundMail, own: frozenset[str]) -> str | None:
    """Exim (and others) name the failed recipients of a bounce in X-Failed-Recipients."""
    if mail.header("x-failed-recipients") is not None:
        return "X-Failed-Recipients"
    return None


# --- declared by the sender ----------------------------------------------------


def auto_submitted(mail: InboundMail, own: frozenset[str]) -> str | None:
    """RFC 3834: any Auto-Submitted value but "no" (auto-replied, -generated, -notified)."""
    token = _first_token(mail, "auto-submitted")
    if token and token != "no":
        return f"Auto-Submitted: {token}"
    return None


# Header -> values that mark an automatic mail; None means "any value but a false one".
_RESPONDER_HEADERS: tuple[tuple[str, frozenset[str] | None], ...] = (
    ("x-autoreply", None),
    ("x-autorespond", None),
    ("x-autoresponder", None),
    ("x-autoresponse", None),
    ("x-autoreply-from", None),
    ("x-mail-autoreply", None),
    ("x-autogenerated", frozenset({"reply"})),
    ("x-ms-exchange-generated-message-source", None),
    ("x-amazon-mail-relay-type", frozenset({"notification"})),
    ("x-auto-response-suppress", frozenset({"all", "oof", "autoreply"})),
    ("x-post-messageclass", frozenset({"autoresponder"})),
    ("delivered-to", frozenset({"autoresponder"})),
)


def responder_header(mail: InboundMail, own: frozenset[str]) -> str | None:
    """Headers vacation programs, Exchange, qmail and mail services set on their replies."""
    for name, marks in _RESPONDER_HEADERS:
        for value in mail.header_all(name):
            tokens = _tokens(value)
            if marks is None:
                if " ".join(tokens) not in _FALSE:
                    return f"{name}: {value[:60]}"
            elif marks.intersection(tokens):
                return f"{name}: {value[:60]}"
    return None


def precedence(mail: InboundMail, own: frozenset[str]) -> str | None:
    """Precedence (and X-Precedence): bulk, list, junk or auto_reply."""
    for name in ("precedence", "x-precedence"):
        token = _first_token(mail, name)
        if token in ("bulk", "list", "junk", "auto_reply", "auto-reply"):
            return f"{name}: {token}"
    return None


def list_header(mail: InboundMail, own: frozenset[str]) -> str | None:
    """RFC 2369/2919 List-* headers: mailing lists and newsletters."""
    for name, _ in mail.headers:
        if name.startswith("list-"):
            return f"{name} header"
    return None


# Headers only list managers write (Mailman, fml, ezmlm, Yahoo Groups).
_LIST_SOFTWARE_HEADERS = (
    "x-mailman-version", "x-beenthere", "x-list-administrivia", "x-mlserver", "x-ml-name",
    "mailing-list",
)


def list_software_header(mail: InboundMail, own: frozenset[str]) -> str | None:
    for name in _LIST_SOFTWARE_HEADERS:
        if mail.header(name) is not None:
            return f"{name} header"
    return None


def x_loop(mail: InboundMail, own: frozenset[str]) -> str | None:
    """X-Loop is set by list managers, procmail and ticket systems on what they send."""
    value = _value(mail, "x-loop")
    if value is not None and value.strip():
        return "X-Loop header"
    return None


def null_sender(mail: InboundMail, own: frozenset[str]) -> str | None:
    """Return-Path: <> is the null envelope sender of bounces and notifications;
    a few old gateways also write From: "Mail System" <>."""
    value = _value(mail, "return-path")
    if value is not None and _is_null(value):
        return "null Return-Path"
    value = _value(mail, "from")
    if value is not None and value.rstrip().endswith("<>") and _is_null(value[value.rfind("<"):]):
        return "null From address"
    return None


def _is_null(value: str) -> bool:
    return "".join(value.split()) in ("<>", "<<>>")


# --- who sent it --------------------------------------------------------------


def _sender_addresses(mail: InboundMail) -> list[str]:
    """The From address, lower case.

    Sender is left out on purpose: web forms and "on behalf of" services put
    a noreply address there while a person wrote the mail in From.
    """
    return [mail.sender.addr] if mail.sender else []


def _local_part(address: str) -> str:
    """The local part without a +detail ("bounces+x=y" -> "bounces")."""
    local = address.rpartition("@")[0] if "@" in address else address
    return local.strip('"').split("+", 1)[0]


_MAILER_DAEMON = re.compile(r"mailer[-_.]?daemon|mail[-_.]?daemon|mdaemon")
_POSTMASTER = re.compile(r"post[-_.]?master|mailer[-_.]?daemon|mail[-_.]?daemon|mdaemon")
_MACHINE_LOCAL = re.compile(
    r"(?:mailer[-_.]?daemon|mail[-_.]?daemon|mdaemon|post[-_.]?master|bounces?|"
    r"(?:no|do[-_.]?not|dont)[-_.]?reply|auto[-_.]?reply|autoresponder)"
    r"(?:[-_.][a-z0-9]*)*"  # "noreply-dmarc-support", "bounce-12345"
)
_LIST_LOCAL = re.compile(r"owner-.+|.+-(?:request|owner|bounces?)")


def own_address(mail: InboundMail, own: frozenset[str]) -> str | None:
    """A mail from one of our own addresses is our own mail coming back."""
    for address in _sender_addresses(mail):
        if address in own:
            return f"sender is our own address {address}"
    return None


def machine_sender(mail: InboundMail, own: frozenset[str]) -> str | None:
    """MAILER-DAEMON, postmaster, noreply and bounce senders; list owner/request addresses."""
    for address in _sender_addresses(mail):
        local = _local_part(address)[:_HEAD]
        if _MACHINE_LOCAL.fullmatch(local) or _LIST_LOCAL.fullmatch(local):
            return f"machine sender {local}"
    return None


def mailer_daemon_sender(mail: InboundMail, own: frozenset[str]) -> str | None:
    """Only mail systems write as MAILER-DAEMON, and nearly always about a delivery."""
    for address in _sender_addresses(mail):
        if _MAILER_DAEMON.fullmatch(_local_part(address)):
            return "sender MAILER-DAEMON"
    return None


def _postmaster_sender(mail: InboundMail) -> bool:
    return any(_POSTMASTER.fullmatch(_local_part(a)) for a in _sender_addresses(mail))


# --- the subject, last and conservative ---------------------------------------

# Matched at the start of the subject only: the prefixes MTAs and responders
# write themselves. A forwarded bounce ("Fwd: Undelivered Mail ...") or a reply
# ("Re: Automatic reply: ...") was sent by a person and is left alone.
_BOUNCE_PREFIX = re.compile(
    r"(?:undelivered mail returned to sender"
    r"|undeliver(?:able|ed)(?: mail| message)?\s*:"
    r"|delivery status notification\s*\((?:failure|delay)"
    r"|(?:mail )?delivery (?:failure|failed|notification)\s*:"
    r"|mail delivery failed\s*:"
    r"|returned mail\s*[:-]"
    r"|warning: could not send message for past\b"
    r"|warning: message [\w.-]+ delayed\b"
    r"|mail system error - returned mail"
    r"|non[- ]?delivery(?: report| notification)?\s*:"
    r"|delivery has failed\b"
    r"|(?:unzustellbar|non remis|onbestelbaar|non recapitabile|no se puede entregar)\s*:"
    r"|недоставленное сообщение)",
    re.IGNORECASE,
)
# Whole subjects MTAs and filters write with nothing after them.
_BOUNCE_WHOLE = frozenset(
    {
        "delivery failure", "delivery failure notification", "delivery status notification",
        "failure delivery", "failure notice", "mail could not be delivered",
        "mail delivery failed", "mail delivery failure", "mail delivery problem",
        "mail delivery status report", "mail delivery warning", "mail not delivered",
        "nondeliverable mail", "permanent delivery failure", "returned mail",
        "undeliverable mail", "undeliverable message", "undelivered mail",
        "メッセージを配信できません", "недоставленное сообщение",
    }
)
_AUTO_REPLY_PREFIX = re.compile(
    r"(?:auto(?:matic|matisk)?[- ]?(?:reply|response|answer)\s*(?::|$)"
    r"|auto\s*:\s"
    r"|out of (?:the )?office(?:\s+(?:auto[- ]?)?reply)?\s*(?::|$)"
    r"|\[auto[- ]generated\]"
    r"|(?:automatische antwort|abwesenheitsnotiz|r[ée]ponse automatique|respuesta autom[áa]tica"
    r"|risposta automatica|automatisch antwoord|автоматический ответ)\s*:"
    r"|автоответ\s*(?::|$))",
    re.IGNORECASE,
)
# Hotmail's complaint feedback (JMRP) is not ARF: only its subject tells.
_COMPLAINT_WHOLE = re.compile(r"complaint about message from [0-9a-f.:]+", re.IGNORECASE)
_END_PUNCTUATION = " \t.!。"


def _subject(mail: InboundMail) -> str:
    return mail.subject[:_HEAD].strip()


# Gateways that keep the subject and append the verdict: "RE: ... : non remis (delivery failed)".
_BOUNCE_SUFFIX = re.compile(r"(?:\(delivery failed\)|\(undeliverable\)|: non remis)$", re.IGNORECASE)


def bounce_subject(mail: InboundMail, own: frozenset[str]) -> str | None:
    subject = _subject(mail)
    if (_BOUNCE_PREFIX.match(subject) or subject.rstrip(_END_PUNCTUATION).lower() in _BOUNCE_WHOLE
            or _BOUNCE_SUFFIX.search(subject[-40:])):
        return f"bounce subject {subject[:60]!r}"
    return None


def auto_reply_subject(mail: InboundMail, own: frozenset[str]) -> str | None:
    subject = _subject(mail)
    if _AUTO_REPLY_PREFIX.match(subject):
        return f"auto-reply subject {subject[:60]!r}"
    if _COMPLAINT_WHOLE.fullmatch(subject):
        return f"complaint report subject {subject[:60]!r}"
    return None


# Words of a failure notice, searched (not anchored) only when the sender is
# already known to be a mail system: a postmaster also sends other notices.
_FAILURE_WORDS = re.compile(
    r"undeliver|not (?:be )?delivered|deliver(?:y|ing) (?:fail|status|problem|warning)"
    r"|fail(?:ure|ed)|returned mail|error|配信|エラー|недостав|не доставлен",
    re.IGNORECASE,
)


def failure_notice_from_mail_system(mail: InboundMail, own: frozenset[str]) -> str | None:
    """A postmaster or null-sender mail whose subject speaks of a failed delivery."""
    if not (null_sender(mail, own) or _postmaster_sender(mail)):
        return None
    if _FAILURE_WORDS.search(_subject(mail)):
        return f"failure notice from a mail system {_subject(mail)[:60]!r}"
    return None


def responder_reason(mail: InboundMail) -> str | None:
    """Why an autoresponder (out of office, vacation) wrote this mail, or None: an
    Auto-Submitted other than auto-generated (auto-replied, auto-notified), a responder's
    header, Precedence auto_reply, an auto-reply subject. A case system's auto-generated
    notice shows none of these: it says something new, a responder only that nobody read."""
    token = _first_token(mail, "auto-submitted")
    if token and token not in ("no", "auto-generated"):
        return f"Auto-Submitted: {token}"
    for name in ("precedence", "x-precedence"):
        if _first_token(mail, name) in ("auto_reply", "auto-reply"):
            return f"{name}: auto_reply"
    return responder_header(mail, frozenset()) or auto_reply_subject(mail, frozenset())


AUTOMATED_CHECKS: tuple[Check, ...] = (
    own_address,
    delivery_status_report,
    feedback_report,
    other_report,
    failed_recipients_header,
    auto_submitted,
    responder_header,
    precedence,
    list_header,
    list_software_header,
    x_loop,
    null_sender,
    machine_sender,
    bounce_subject,
    auto_reply_subject,
)

BOUNCE_CHECKS: tuple[Check, ...] = (
    delivery_status_report,
    failed_recipients_header,
    mailer_daemon_sender,
    bounce_subject,
    failure_notice_from_mail_system,
)


def automated_reason(
    mail: InboundMail,
    own_addresses: frozenset[str] = frozenset(),
    loop_header: str = "x-ticketd-loop",
) -> str | None:
    """Why this mail was written by a machine, or None when a person wrote it.

    ``own_addresses`` are the desk's own addresses; ``loop_header`` is the
    header ticketd puts on everything it sends.
    """
    if mail.header(loop_header) is not None:
        return f"our own {loop_header} header"
    own = frozenset(address.lower() for address in own_addresses)
    for check in AUTOMATED_CHECKS:
        reason = check(mail, own)
        if reason:
            return reason
    return None


def is_bounce(mail: InboundMail) -> bool:
    """A delivery failure or delay report (always also automated).

    A mail that declares itself another kind of report (ARF complaint, read
    receipt) is not a bounce, whoever sent it.
    """
    none: frozenset[str] = frozenset()
    if feedback_report(mail, none) or _has_part(mail, _RECEIPT_PARTS):
        return False
    return any(check(mail, none) for check in BOUNCE_CHECKS)


# --- signs of a responder in a reply to our own mail --------------------------

# Words responders put in their subjects, searched anywhere in the subject (not only at its
# start: "Re: Out of office until Monday"), and only for mail that answers one of ours, where
# a person rarely writes them. Lower case; reviewable data, extend as responders are met.
RESPONDER_PHRASES: tuple[str, ...] = (
    "out of office", "out of the office", "automatic reply", "auto reply", "auto-reply",
    "autoreply", "auto response", "auto-response", "autoresponse", "automatic response",
    "vacation reply", "away from the office", "away from my desk",
    "currently away", "abwesend", "abwesenheit", "automatische antwort",
    "réponse automatique", "reponse automatique", "absence du bureau", "respuesta automática",
    "fuera de la oficina", "risposta automatica", "fuori ufficio", "automatisch antwoord",
    "afwezig", "resposta automática", "odpowiedź automatyczna",
    "отсутствую", "автоответ", "автоматический ответ", "нахожусь в отпуске",
    "вне офиса",
)
_SPACES = re.compile(r"\s+")


def responder_subject(subject: str) -> str | None:
    """The responder phrase this subject carries, or None."""
    folded = _SPACES.sub(" ", subject[:_HEAD].casefold().replace("ё", "е"))
    for phrase in RESPONDER_PHRASES:
        if phrase.replace("ё", "е") in folded:
            return phrase
    return None


def text_fingerprint(text: str) -> str:
    """What two mails that say the same thing share: their visible text, case and spacing
    folded, hashed; "" when there is no text (an empty mail repeats nothing)."""
    folded = _SPACES.sub(" ", text.casefold()).strip()
    if not folded:
        return ""
    return hashlib.sha256(folded.encode()).hexdigest()
