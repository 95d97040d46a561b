"""Invariant 5, agents are who they say: parsers.authres on hand-written mails.

Each mail is written as bytes the way it reaches the mailbox: the trace
headers our MTA and the hops before it prepended on top, then the headers the
sender wrote. Our MTA is mx.casino.example; agents write from casino.example.
"""

from __future__ import annotations

import random

import pytest

from parsers.authres import (
    AuthVerdict,
    MethodResult,
    parse_authentication_results,
    verify_sender,
)
from parsers.mail import parse
from parsers.model import InboundMail

OURS = "mx.casino.example"
AGENT = "Anna Petrova <anna@casino.example>"
RECEIVED = (
    "Received: from mail.casino.example (mail.casino.example [192.0.2.10])\r\n"
    "\tby mx.casino.example (Postfix) with ESMTPS id 4Xy; Fri, 20 Nov 2026 12:00:01 +0000"
)
ALIGNED_DKIM = f"{OURS}; dkim=pass header.d=casino.example header.s=mail"
FORGED = f"{OURS}; dkim=pass header.d=casino.example; spf=pass smtp.mailfrom=casino.example"


def received(
    *trace: str, written: tuple[str, ...] = (), sender: str | None = AGENT
) -> InboundMail:
    """A mail as delivered: ``trace`` on top (A-R values or whole header lines),
    then the sender's own headers, ``written`` among them."""
    lines = [t if ":" in t.split(" ", 1)[0] else f"Authentication-Results: {t}" for t in trace]
    lines += [RECEIVED] if trace else []
    if sender is not None:
        lines.append(f"From: {sender}")
    lines += [
        "To: support@casino.example",
        "Subject: Re: [#1234] Your withdrawal",
        "Date: Fri, 20 Nov 2026 12:00:00 +0000",
        "Message-ID: <a1.b2@casino.example>",
    ]
    lines += [f"Authentication-Results: {w}" for w in written]
    raw = "\r\n".join(lines) + "\r\n\r\nThe refund has been approved.\r\n"
    return parse(raw.encode())


def verdict(*trace: str, **kwargs) -> AuthVerdict:
    alignment = kwargs.pop("alignment", "relaxed")
    return verify_sender(received(*trace, **kwargs), OURS, alignment=alignment)


# --- passes --------------------------------------------------------------------


def test_aligned_dkim_passes():
    result = verdict(ALIGNED_DKIM)
    assert result == AuthVerdict(
        True, "dkim=pass header.d=casino.example aligned with From", "dkim"
    )


def test_aligned_spf_passes():
    result = verdict(f"{OURS}; dkim=none; spf=pass smtp.mailfrom=bounces+anna@casino.example")
    assert result.ok
    assert result.method == "spf"
    assert result.reason == "spf=pass smtp.mailfrom=casino.example aligned with From"


def test_spf_with_a_bare_domain_as_mailfrom_passes():
    assert verdict(f"{OURS}; spf=pass smtp.mailfrom=casino.example").method == "spf"


def test_dmarc_pass_for_the_from_domain_passes():
    result = verdict(f"{OURS}; dmarc=pass (p=reject dis=none) header.from=casino.example")
    assert result == AuthVerdict(True, "dmarc=pass header.from=casino.example", "dmarc")


def test_subdomain_dkim_is_aligned_when_relaxed_only():
    trace = f"{OURS}; dkim=pass header.d=mail.casino.example"
    assert verdict(trace).ok
    strict = verdict(trace, alignment="strict")
    assert not strict.ok
    assert strict.reason == (
        "dkim=pass for mail.casino.example not aligned with From casino.example"
    )


def test_strict_alignment_passes_on_the_same_domain():
    result = verdict(ALIGNED_DKIM, alignment="strict")
    assert result.ok
    assert result.reason == "dkim=pass header.d=casino.example aligned (strict) with From"


def test_from_agent_on_a_subdomain_and_signature_for_the_parent_is_relaxed_aligned():
    assert verdict(ALIGNED_DKIM, sender="anna@support.casino.example").ok


def test_an_aligned_signature_passes_beside_a_failed_one():
    result = verdict(
        f"{OURS}; dkim=fail header.d=casino.example header.s=old;"
        " dkim=pass header.d=evil.example; dkim=pass header.d=casino.example header.s=new"
    )
    assert result.ok
    assert result.method == "dkim"


@pytest.mark.parametrize(
    ("signer", "aligned"),
    [
        ("mail.casino.co.uk", True),
        ("casino.co.uk", True),
        ("evil.co.uk", False),
        ("co.uk", False),
    ],
)
def test_relaxed_alignment_keeps_three_labels_under_a_second_level_suffix(signer, aligned):
    mail = received(f"{OURS}; dkim=pass header.d={signer}", sender="anna@casino.co.uk")
    assert verify_sender(mail, OURS).ok is aligned


@pytest.mark.parametrize(
    ("sender", "signer", "aligned"),
    [
        ("anna@casino.org.mt", "evil.org.mt", False),  # org.mt is a public suffix
        ("anna@casino.org.mt", "mail.casino.org.mt", True),
        ("anna@casino.github.io", "evil.github.io", False),  # a private-section suffix
        ("anna@casino.com.mt", "evil.com.mt", False),
        ("anna@mail.casino.co.jp", "casino.co.jp", True),
        ("anna@casino.kawasaki.jp", "evil.kawasaki.jp", False),  # a wildcard rule: *.kawasaki.jp
    ],
)
def test_relaxed_alignment_follows_the_public_suffix_list(sender, signer, aligned):
    mail = received(f"{OURS}; dkim=pass header.d={signer}", sender=sender)
    assert verify_sender(mail, OURS).ok is aligned
    spf = received(f"{OURS}; spf=pass smtp.mailfrom=bounce@{signer}", sender=sender)
    assert verify_sender(spf, OURS).ok is aligned


def test_from_domain_in_upper_case_with_a_trailing_dot_is_normalised():
    assert verdict(ALIGNED_DKIM, sender="Anna <Anna@CASINO.Example.>").ok


def test_signing_domain_in_upper_case_with_a_trailing_dot_is_normalised():
    assert verdict(f"{OURS}; dkim=pass header.d=Casino.EXAMPLE.", alignment="strict").ok


def test_internationalised_from_domain_matches_its_a_label_signature():
    mail = received(
        f"{OURS}; dkim=pass header.d=xn--e1afmkfd.example", sender="Анна <anna@пример.example>"
    )
    assert verify_sender(mail, OURS, alignment="strict").ok


def test_authserv_id_is_matched_without_regard_to_case():
    assert verdict("MX.Casino.Example; dkim=pass header.d=casino.example").ok
    assert verify_sender(received(ALIGNED_DKIM), "MX.CASINO.EXAMPLE").ok


def test_comments_and_quoted_values_in_our_header():
    trace = (
        f"{OURS} (Postfix; amavisd) 1; dkim=pass (2048-bit key; secure (really))"
        ' header.d="casino.example" header.i=@casino.example header.b="AbC;d=e";'
        ' spf=pass (sender SPF authorized) smtp.mailfrom="anna p"@casino.example'
    )
    assert verdict(trace) == AuthVerdict(
        True, "dkim=pass header.d=casino.example aligned with From", "dkim"
    )


def test_arc_authentication_results_claiming_our_id_neither_counts_nor_spoils():
    arc = f"ARC-Authentication-Results: i=1; {OURS}; dkim=pass header.d=casino.example"
    assert verdict(ALIGNED_DKIM, arc).ok
    assert verdict(arc).reason == f"no Authentication-Results from {OURS}"


# --- no header we can trust ----------------------------------------------------


def test_no_authentication_results_fails():
    result = verdict()
    assert result == AuthVerdict(False, f"no Authentication-Results from {OURS}", None)


def test_a_header_from_another_authserv_id_only_fails():
    result = verdict("mx.gmail.example; dkim=pass header.d=casino.example; dmarc=pass")
    assert not result.ok
    assert result.reason == f"no Authentication-Results from {OURS}"


def test_a_forged_copy_below_ours_fails_even_when_ours_passes():
    result = verdict(ALIGNED_DKIM, written=(FORGED,))
    assert result == AuthVerdict(
        False, f"2 Authentication-Results headers claim {OURS}", None
    )


def test_a_forged_copy_above_ours_fails():
    result = verdict(FORGED, ALIGNED_DKIM)
    assert not result.ok
    assert result.reason == f"2 Authentication-Results headers claim {OURS}"


def test_a_forged_copy_under_ours_cannot_turn_our_fail_into_a_pass():
    """The sender writes a passing header with our id; our MTA, on top, says fail."""
    result = verdict(f"{OURS}; dkim=fail header.d=casino.example; spf=fail", written=(FORGED,))
    assert not result.ok
    assert result.reason == f"2 Authentication-Results headers claim {OURS}"


def test_a_forged_copy_claiming_our_id_in_another_case_still_counts_as_a_claim():
    forged = "MX.CASINO.EXAMPLE; dkim=pass header.d=casino.example"
    assert not verdict(ALIGNED_DKIM, written=(forged,)).ok


def test_a_forged_copy_with_a_quoted_authserv_id_still_counts_as_a_claim():
    forged = f'"{OURS}" 1; dkim=pass header.d=casino.example'
    assert not verdict(ALIGNED_DKIM, written=(forged,)).ok


def test_our_header_below_another_authentication_results_fails():
    result = verdict("relay.other.example; dkim=pass header.d=casino.example", ALIGNED_DKIM)
    assert not result.ok
    assert result.reason == f"Authentication-Results from {OURS} is not the topmost one"


def test_only_a_forged_header_written_by_the_sender_fails():
    """No MTA of ours on the path: the one claim is the sender's, not on top."""
    result = verdict("mx.gmail.example; dkim=none", written=(FORGED,))
    assert not result.ok
    assert result.reason == f"Authentication-Results from {OURS} is not the topmost one"


# --- our header, but no aligned pass -------------------------------------------


def test_dkim_pass_for_an_unaligned_domain_fails():
    result = verdict(f"{OURS}; dkim=pass header.d=evil.example header.i=@evil.example")
    assert result == AuthVerdict(
        False, "dkim=pass for evil.example not aligned with From casino.example", None
    )


def test_spf_pass_for_an_unaligned_envelope_sender_fails():
    result = verdict(f"{OURS}; spf=pass smtp.mailfrom=bounce@evil.example")
    assert result.reason == "spf=pass for evil.example not aligned with From casino.example"


def test_spf_softfail_fails():
    result = verdict(f"{OURS}; spf=softfail smtp.mailfrom=anna@casino.example")
    assert result == AuthVerdict(False, "spf=softfail", None)


def test_dkim_fail_fails():
    result = verdict(f'{OURS}; dkim=fail reason="bad signature" header.d=casino.example')
    assert result == AuthVerdict(False, "dkim=fail", None)


def test_every_failure_is_named():
    result = verdict(f"{OURS}; dkim=fail header.d=casino.example; spf=fail; dmarc=none")
    assert result.reason == "dkim=fail; spf=fail; dmarc=none"


def test_dmarc_pass_for_another_domain_fails():
    result = verdict(f"{OURS}; dmarc=pass header.from=evil.example")
    assert result.reason == "dmarc=pass for evil.example, not From casino.example"


def test_dmarc_fail_vetoes_what_our_approximate_alignment_would_pass():
    """foo.github.io and evil.github.io share no organisation; the MTA knows it."""
    mail = received(
        f"{OURS}; dkim=pass header.d=evil.github.io; dmarc=fail header.from=foo.github.io",
        sender="anna@foo.github.io",
    )
    result = verify_sender(mail, OURS)
    assert result == AuthVerdict(False, "dmarc=fail for foo.github.io", None)


def test_dkim_pass_without_a_signing_domain_fails():
    result = verdict(f"{OURS}; dkim=pass header.i=@casino.example")
    assert result.reason == "dkim=pass without a usable header.d"


def test_an_arc_pass_alone_does_not_count():
    result = verdict(f"{OURS}; arc=pass (i=2 spf=pass dkim=pass dkdomain=casino.example)")
    assert not result.ok
    assert result.reason == f"no dkim, spf or dmarc result from {OURS} (only arc=pass)"


def test_none_fails():
    result = verdict(f"{OURS} 1; none")
    assert result == AuthVerdict(False, f"no dkim, spf or dmarc result from {OURS}", None)


def test_a_mail_without_from_fails():
    result = verdict(ALIGNED_DKIM, sender=None)
    assert result == AuthVerdict(False, "no From domain to authenticate", None)


def test_a_from_without_a_domain_fails():
    assert not verdict(ALIGNED_DKIM, sender="MAILER-DAEMON").ok


def test_an_empty_trusted_authserv_id_trusts_nothing():
    mail = received("; dkim=pass header.d=casino.example")
    assert verify_sender(mail, "  ") == AuthVerdict(
        False, "no trusted authserv-id configured", None
    )


def test_an_unknown_alignment_mode_is_a_programming_error():
    with pytest.raises(ValueError):
        verify_sender(received(ALIGNED_DKIM), OURS, alignment="loose")


# --- reading one header value --------------------------------------------------


def test_parse_reads_id_version_methods_and_properties():
    value = (
        "mx.casino.example (Postfix) 1; dkim/1 = pass (good) header . d = casino.example"
        ' header.i=@casino.example reason="signature ok"; spf=pass smtp.mailfrom=a@casino.example;'
        " dmarc=pass header.from=casino.example"
    )
    assert parse_authentication_results(value) == (
        "mx.casino.example",
        [
            MethodResult(
                "dkim",
                "pass",
                {
                    "header.d": "casino.example",
                    "header.i": "@casino.example",
                    "reason": "signature ok",
                },
            ),
            MethodResult("spf", "pass", {"smtp.mailfrom": "a@casino.example"}),
            MethodResult("dmarc", "pass", {"header.from": "casino.example"}),
        ],
    )


def test_parse_unquotes_values_with_separators_and_escapes():
    value = r'mx; dkim=pass header.b="a;b=c" header.s="sel \"x\"" (a (nested) comment)'
    assert parse_authentication_results(value) == (
        "mx",
        [MethodResult("dkim", "pass", {"header.b": "a;b=c", "header.s": 'sel "x"'})],
    )


def test_parse_lowers_method_result_and_property_names():
    assert parse_authentication_results("MX; DKIM=PASS Header.D=Casino.Example") == (
        "MX",
        [MethodResult("dkim", "pass", {"header.d": "Casino.Example"})],
    )


def test_parse_reads_none_as_no_results():
    assert parse_authentication_results("mx.casino.example 1; none") == ("mx.casino.example", [])


def test_parse_skips_an_unreadable_resinfo_and_keeps_the_rest():
    assert parse_authentication_results("mx; =pass; dkim; spf=fail") == (
        "mx",
        [MethodResult("spf", "fail", {})],
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        ";",
        "=",
        "(((",
        "(unterminated; dkim=pass header.d=casino.example",
        f"{OURS}; dkim=pass header.d=casino.example (unterminated",
        f'{OURS}; dkim=pass header.d="casino.example',
        f'"{OURS}',
        "dkim=pass header.d=casino.example",  # the id is missing
        "; dkim=pass header.d=casino.example",
        f"{OURS} not-a-version; dkim=pass",
        f"{OURS} 1 2; dkim=pass",
        '""; dkim=pass',
        "(\\",
        f"{OURS}; dkim=pass header.d=" + "a" * 70_000,
    ],
)
def test_parse_of_garbage_is_empty(value):
    assert parse_authentication_results(value) == ("", [])


@pytest.mark.parametrize("value", [None, b"mx; dkim=pass", 42])
def test_parse_of_a_non_string_is_empty(value):
    assert parse_authentication_results(value) == ("", [])


def test_parse_never_raises_on_random_input():
    alphabet = ' \t;=()"\\./@-_aZ09\x00\u00e9\u2028'
    rng = random.Random(8601)
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        authserv_id, results = parse_authentication_results(value)
        assert isinstance(authserv_id, str)
        assert all(isinstance(r, MethodResult) for r in results)


@pytest.mark.parametrize(
    "value",
    [
        "",
        ";;;;",
        "(",
        f"{OURS}; dkim=pass header.d=",
        f"{OURS}; dkim=pass header.d=casino..example",
        f"{OURS}; dkim=pass header.d=-casino.example",
        f"{OURS}; spf=pass smtp.mailfrom=<>",
        f"{OURS}; dmarc=pass header.from",
        f"{OURS}; dkim=pass header.d=\u00e9\u00e9..example",
        f"{OURS}; dkim=pass header.d=" + "a" * 300 + ".example",
    ],
)
def test_verify_of_garbage_fails_without_raising(value):
    assert not verdict(value).ok


@pytest.mark.parametrize(("sender", "signer", "aligned"), [
    ("anna@faß.de", "fass.de", False),  # IDNA2003 mapped ß to ss: another domain's owner
    ("anna@fass.de", "faß.de", False),
    ("anna@faß.de", "xn--fa-hia.de", True),  # the same name as its IDNA2008 A-label
])
def test_internationalised_domains_align_under_idna2008_only(sender, signer, aligned):
    mail = received(f"{OURS}; dkim=pass header.d={signer}", sender=sender)
    assert verify_sender(mail, OURS).ok is aligned
