"""Never answer a machine, measured on the shared third-party corpus (see its README.md).

Each test walks one folder, prints its figures (run with ``-s``) and asserts
them against explicit lists of exceptions, each with its reason. A file that
parse() refuses (RejectedMail) is counted apart: the daemon quarantines it,
so it is never answered either.

Walked: sisimai-set-of-emails (every file of manifest.csv: maildir/ and
to-be-debugged-because/; the two mbox files repeat maildir/err and are left
out), flufl-bounce, discourse, zammad/mail and talon's .eml replies.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from functools import lru_cache
from pathlib import Path

from parsers import InboundMail, RejectedMail, parse
from parsers.automated import automated_reason, is_bounce
from parsers.bounce import bounce_info
from tests.support.corpus import CORPUS, MESSAGE_FOLDERS, require_corpus

SISIMAI = "sisimai-set-of-emails"

# Labelled "bounce" by file name, yet a person wrote them: Apple Mail forwards of a
# sendmail bounce ("Fwd: ...", "Forward the message."), with no automated header at
# all. Answering them is right; only the quoted text is a bounce.
SISIMAI_WRITTEN_BY_A_PERSON = {
    "maildir/bsd/lhost-sendmail-14.eml": "a person forwarded a bounce (Fwd:, Apple Mail)",
    "maildir/err/make-test-36.eml": "the same forward, in the make-test set",
}

# Labelled "bounce" and flagged as automated, but not bounce-shaped (no DSN, no
# MAILER-DAEMON, no MTA subject): by file name stem, for bsd/, dos/ and mac/ alike.
SISIMAI_AUTOMATED_BUT_NOT_BOUNCE_SHAPED = {
    "lhost-amazonses-09": "Amazon SNS JSON notification from no-reply@sns (automated: noreply)",
    "lhost-amazonses-10": "Amazon SNS JSON notification (automated: noreply sender)",
    "lhost-amazonses-11": "Amazon SNS JSON notification (automated: noreply sender)",
    "lhost-amazonses-12": "Amazon SNS JSON notification (automated: noreply sender)",
    "lhost-amazonses-13": "Amazon SNS JSON notification (automated: noreply sender)",
    "lhost-apachejames-01": "Verizon text 'Re:<subject>' from post_master (automated: sender)",
    "lhost-verizon-02": "Verizon text 'Re:<subject>' from post_master (automated: sender)",
    "lhost-exchange2003-03": "subject 'E', postmaster (automated: null Return-Path)",
    "lhost-fml-02": "fml list manager 'not member' notice (automated: List-* header)",
    "lhost-fml-03": "fml list manager loop alert (automated: X-MLServer)",
    "lhost-kddi-01": "Japanese carrier notice from no-reply, subject 'mail error notice'",
    "lhost-kddi-02": "Japanese carrier notice, subject 'Mail' (automated: null Return-Path)",
    "lhost-kddi-03": "Japanese carrier notice, subject 'Mail' (automated: null Return-Path)",
    "lhost-sendmail-14": "forwarded by a person (see above)",
    "make-test-36": "forwarded by a person (see above)",
}

FLUFL = "flufl-bounce"
# Every flufl message is flagged; simple_20.txt only by the verdict its gateway appends to
# the subject ("RE: ... awaits moderator approval : non remis (delivery failed)").
FLUFL_NOT_FLAGGED: dict[str, str] = {}
# Failed addresses not extracted as flufl.bounce's dedicated detectors do.
FLUFL_ADDRESS_MISSES = {
    "data/yale_01.txt": "Yale's 2000 directory notice names 'thomas.dtankengine' without a"
    " domain; flufl's yale detector appends @yale.edu and @cs.yale.edu",
    "data/aol_01.txt": "AOL names the bare screen name; flufl's aol detector appends @aol.com",
}
FLUFL_PERMANENCE_MISSES: dict[str, str] = {}

DISCOURSE = "discourse"

ZAMMAD = "zammad"
ZAMMAD_BOUNCES = {
    "mail018", "mail033-undelivered-mail-returned-to-sender", "mail052", "mail053",
    "mail055", "mail063", "mail078", "mail092",
}
ZAMMAD_DELAYS = {"mail078"}  # "Delivery Status Notification (Delay)"
ZAMMAD_BULK = {"mail043", "mail089", "mail090"}
# Flagged although they are not in Zammad's bounce/bulk list: none is a person writing.
ZAMMAD_OTHERS_FLAGGED = {
    "mail019": "Chinese spam sent with Return-Path: <> and an empty From address",
    "mail035": "loan spam sent with Return-Path: <> (null envelope sender)",
    "mail094": "SAP order document from noreply@example.com",
    "mail098": "Japanese notice from noreply@example.org",
    "mail099": "notice from noreply@example.org",
}

TALON = "talon"


@lru_cache(maxsize=None)
def parsed(relative: str) -> InboundMail | RejectedMail:
    try:
        return parse((CORPUS / relative).read_bytes())
    except RejectedMail as error:
        return error


def message_files(folder: str) -> list[str]:
    found = set()
    for pattern in MESSAGE_FOLDERS[folder]:
        found.update(p for p in (CORPUS / folder).rglob(pattern) if p.is_file())
    return sorted(p.relative_to(CORPUS).as_posix() for p in found)


def sisimai_manifest() -> dict[str, dict[str, str]]:
    with (CORPUS / SISIMAI / "manifest.csv").open(newline="", encoding="utf-8") as manifest:
        return {
            row["path"]: row for row in csv.DictReader(manifest) if row["path"].endswith(".eml")
        }


def within(folder: str, relative: str) -> str:
    return relative.removeprefix(folder + "/")


def rate(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f} %)" if whole else "0/0"


# --- sisimai ---------------------------------------------------------------------------


def test_sisimai_bounces_auto_replies_and_feedback_reports_are_flagged():
    require_corpus()
    manifest = sisimai_manifest()
    not_flagged, counts = set(), Counter()
    for path, row in manifest.items():
        category = row["category"]
        if category not in ("bounce", "auto-reply", "feedback-report"):
            continue
        mail = parsed(f"{SISIMAI}/{path}")
        counts[category, "total"] += 1
        if isinstance(mail, RejectedMail):
            counts[category, "rejected"] += 1
        elif automated_reason(mail) is not None:
            counts[category, "flagged"] += 1
        else:
            not_flagged.add(path)
    for category in ("bounce", "auto-reply", "feedback-report"):
        flagged = rate(counts[category, "flagged"], counts[category, "total"])
        print(f"\n{SISIMAI} {category}: flagged {flagged}, rejected {counts[category, 'rejected']}")
    assert counts["bounce", "total"] == 806
    assert counts["auto-reply", "total"] == 8
    assert counts["feedback-report", "total"] == 19
    assert not_flagged == set(SISIMAI_WRITTEN_BY_A_PERSON)


def test_sisimai_not_bounce_files_are_no_bounces_and_automated_exactly_when_auto_submitted():
    require_corpus()
    rows = {p: r for p, r in sisimai_manifest().items() if r["category"] == "not-bounce"}
    assert len(rows) == 3
    for path, row in rows.items():
        mail = parsed(f"{SISIMAI}/{path}")
        assert not isinstance(mail, RejectedMail), path
        assert not is_bounce(mail), path
        assert bounce_info(mail) is None, path
        # rb-issue-368-bug.eml: a postmaster notice with Auto-Submitted: auto-replied.
        assert (automated_reason(mail) is not None) == bool(row["auto_submitted"]), path
    print(f"\n{SISIMAI} not-bounce: is_bounce 0/3, automated 1/3 (the auto-submitted one)")


def test_sisimai_bounces_are_bounces_and_auto_replies_and_reports_are_not():
    require_corpus()
    not_bounce_shaped, counts = set(), Counter()
    for path, row in sisimai_manifest().items():
        mail = parsed(f"{SISIMAI}/{path}")
        if isinstance(mail, RejectedMail):
            continue
        category = row["category"]
        counts[category, "total"] += 1
        bounce = is_bounce(mail)
        counts[category, "bounce"] += bounce
        if category == "bounce" and not bounce:
            not_bounce_shaped.add(Path(path).stem)
        if category in ("auto-reply", "feedback-report"):
            assert not bounce, f"{path} is an {category}, not a bounce"
    for category in ("bounce", "auto-reply", "feedback-report"):
        print(
            f"\n{SISIMAI} {category}: is_bounce "
            f"{rate(counts[category, 'bounce'], counts[category, 'total'])}"
        )
    assert not_bounce_shaped == set(SISIMAI_AUTOMATED_BUT_NOT_BOUNCE_SHAPED)


def test_sisimai_bounce_details_name_recipients_and_tell_delays_from_failures():
    require_corpus()
    counts, without = Counter(), []
    for path, row in sisimai_manifest().items():
        mail = parsed(f"{SISIMAI}/{path}")
        if row["category"] != "bounce" or isinstance(mail, RejectedMail) or not is_bounce(mail):
            continue
        found = bounce_info(mail)
        counts["bounces"] += 1
        counts["recipients"] += bool(found and found.recipients)
        counts["message-id"] += bool(found and found.original_message_id)
        if not (found and found.recipients):
            without.append(Path(path).stem)
        if found and row["dsn_actions"] == "delayed":
            counts["delays"] += 1
            assert not found.permanent, f"{path}: a delay warning read as permanent"
        if found and row["dsn_actions"] == "failed":
            counts["failures"] += 1
            assert found.permanent, f"{path}: a failure read as temporary"
    print(
        f"\n{SISIMAI} bounce_info: recipients {rate(counts['recipients'], counts['bounces'])}, "
        f"original Message-ID {rate(counts['message-id'], counts['bounces'])}, "
        f"{counts['failures']} DSN failures all permanent, {counts['delays']} delays all temporary"
        f"\n  no recipient: {sorted(set(without))}"
    )
    # Most of the misses are anonymised samples whose failed address equals the
    # bounce's own To (so it is taken for a party), or a bare local name.
    assert counts["recipients"] >= 0.94 * counts["bounces"]
    assert counts["delays"] >= 10 and counts["failures"] >= 400


# --- flufl.bounce --------------------------------------------------------------------------


def flufl_expected() -> dict[str, list[dict]]:
    cases: dict[str, list[dict]] = {}
    expected = json.loads((CORPUS / FLUFL / "expected.json").read_text(encoding="utf-8"))
    for case in expected["cases"]:
        cases.setdefault(case["file"], []).append(case)
    return cases


def test_flufl_every_message_is_flagged_as_an_automated_bounce():
    require_corpus()
    files = message_files(FLUFL)
    not_flagged, not_bounce, rejected = set(), set(), 0
    for relative in files:
        mail = parsed(relative)
        if isinstance(mail, RejectedMail):
            rejected += 1
            continue
        name = within(FLUFL, relative)
        if automated_reason(mail) is None:
            not_flagged.add(name)
        if not is_bounce(mail):
            not_bounce.add(name)
    total = len(files)
    print(
        f"\n{FLUFL}: flagged {rate(total - rejected - len(not_flagged), total)}, "
        f"is_bounce {rate(total - rejected - len(not_bounce), total)}, rejected {rejected}"
    )
    assert total == 103
    assert not_flagged == set(FLUFL_NOT_FLAGGED)
    assert not_bounce == set(FLUFL_NOT_FLAGGED)


def test_flufl_failed_addresses_and_permanence_match_its_expected_json():
    require_corpus()
    address_misses, permanence_misses = {}, {}
    cases = flufl_expected()
    for name, file_cases in cases.items():
        mail = parsed(f"{FLUFL}/{name}")
        found = None if isinstance(mail, RejectedMail) else bounce_info(mail)
        got = set(found.recipients) if found else None
        # groupwise_02.txt has two expectations (one per upstream detector): either will do.
        wanted = [{a.lower() for a in case["expected_addresses"]} for case in file_cases]
        if got not in wanted:
            address_misses[name] = (sorted(got) if got is not None else None, wanted)
        permanent = file_cases[0]["failure"] == "permanent"
        if found is None or found.permanent != permanent:
            permanence_misses[name] = file_cases[0]["failure"]
    total = len(cases)
    print(
        f"\n{FLUFL} addresses: {rate(total - len(address_misses), total)} files match exactly "
        f"(case-insensitive); permanent/temporary: {rate(total - len(permanence_misses), total)}"
        f"\n  accepted misses: {address_misses}"
    )
    assert total == 101
    assert set(address_misses) == set(FLUFL_ADDRESS_MISSES)
    assert set(permanence_misses) == set(FLUFL_PERMANENCE_MISSES)


def test_flufl_files_without_expected_addresses_are_still_bounces():
    require_corpus()
    for name in ("data/bounce_01.txt", "data/dumbass_01.txt"):
        mail = parsed(f"{FLUFL}/{name}")
        assert not isinstance(mail, RejectedMail), name
        assert is_bounce(mail), name
        assert bounce_info(mail) is not None, name


# --- discourse --------------------------------------------------------------------------------


def test_discourse_auto_generated_and_bounces_are_flagged_and_told_apart():
    require_corpus()
    expected = json.loads((CORPUS / DISCOURSE / "expected.json").read_text(encoding="utf-8"))
    for case in expected["cases"]:
        mail = parsed(f"{DISCOURSE}/{case['file']}")
        assert not isinstance(mail, RejectedMail), case["file"]
        assert automated_reason(mail) is not None, case["file"]
        assert is_bounce(mail) == (case["expected_class"] == "bounce"), case["file"]
    print(f"\n{DISCOURSE}: flagged {len(expected['cases'])}/{len(expected['cases'])}")
    assert len(expected["cases"]) == len(message_files(DISCOURSE)) == 9


# --- zammad -----------------------------------------------------------------------------------


def zammad_mails() -> dict[str, InboundMail | RejectedMail]:
    return {Path(relative).stem: parsed(relative) for relative in message_files(ZAMMAD)}


def test_zammad_bounces_and_bulk_mail_are_flagged():
    require_corpus()
    mails = zammad_mails()
    for name in sorted(ZAMMAD_BOUNCES | ZAMMAD_BULK):
        mail = mails[name]
        assert not isinstance(mail, RejectedMail), name
        assert automated_reason(mail) is not None, name
        assert is_bounce(mail) == (name in ZAMMAD_BOUNCES), name
    for name in sorted(ZAMMAD_BOUNCES):
        found = bounce_info(mails[name])
        assert found is not None and found.permanent == (name not in ZAMMAD_DELAYS), name
    print(
        f"\n{ZAMMAD} bounces: flagged {len(ZAMMAD_BOUNCES)}/{len(ZAMMAD_BOUNCES)}, "
        f"bulk: flagged {len(ZAMMAD_BULK)}/{len(ZAMMAD_BULK)}"
    )


def test_zammad_ordinary_mails_are_not_flagged():
    require_corpus()
    flagged, rejected, total = {}, 0, 0
    for name, mail in zammad_mails().items():
        if name in ZAMMAD_BOUNCES | ZAMMAD_BULK:
            continue
        total += 1
        if isinstance(mail, RejectedMail):
            rejected += 1
            continue
        reason = automated_reason(mail)
        if reason is not None:
            flagged[name] = reason
    print(
        f"\n{ZAMMAD} other mails: flagged {rate(len(flagged), total)}, rejected {rejected}"
        f"\n  flagged (none written by a person): {flagged}"
    )
    assert set(flagged) == set(ZAMMAD_OTHERS_FLAGGED)


# --- all folders ----------------------------------------------------------------------------


def test_every_bounce_in_the_corpus_is_also_automated():
    require_corpus()
    walked = [f"{SISIMAI}/{path}" for path in sisimai_manifest()]
    for folder in (FLUFL, DISCOURSE, ZAMMAD, TALON, "ruby-mail-gem", "spamscope-mail-parser"):
        walked.extend(message_files(folder))
    bounces = 0
    for relative in walked:
        mail = parsed(relative)
        if not isinstance(mail, RejectedMail) and is_bounce(mail):
            bounces += 1
            assert automated_reason(mail) is not None, relative
    print(f"\nis_bounce implies automated: {bounces} bounces among {len(walked)} files")


# --- talon --------------------------------------------------------------------------------------


def test_talon_client_replies_are_not_flagged():
    require_corpus()
    files = message_files(TALON)
    flagged = {}
    for relative in files:
        mail = parsed(relative)
        assert not isinstance(mail, RejectedMail), relative
        reason = automated_reason(mail)
        if reason is not None:
            flagged[relative] = reason
    print(f"\n{TALON} replies: flagged {rate(len(flagged), len(files))}")
    assert len(files) == 13
    assert flagged == {}
