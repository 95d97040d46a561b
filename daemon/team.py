"""The agents' side of a ticket (invariants 4 and 5): notifications out, replies, notes and
commands in. Runs inside the ingest transaction, so every change, event and mail it causes
commits together or not at all."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from config.schema import TeamSettings
from daemon import complaints
from daemon.lifecycle import (
    TicketState,
    after_public_reply,
    apply_command,
    is_final_answer,
    merged_into,
)
from daemon.sla import (
    SlaOptions,
    clocks_for_agent_reply,
    clocks_for_appeal,
    clocks_for_pending,
    clocks_for_resolved,
)
from parsers.authres import verify_sender
from parsers.commands import Command, CommandBlock, parse_commands
from parsers.model import Address, InboundMail
from responders import mime
from responders.agents import (
    NotificationContext,
    RelayContext,
    Safeguard,
    command_refused,
    held_notice,
    notification,
    relay,
)
from responders.complaints import dispute_paragraph, final_text
from responders.headers import UnsafeRecipient
from responders.identity import Identity
from responders.references import verify_agent_reference, verify_message_id
from responders.loops import LoopPolicy, counted, guard, notify_when, resume
from storage import loops as loop_counts
from storage import outbox, queries
from storage import sla as sla_clocks
from storage.models import Contact, Message, OutboxMessage, Ticket, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Agent:
    address: str
    name: str
    groups: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()  # the players' languages the agent answers in


# The SLA recipients are staff: they get escalations that say "answer #assign me", so their
# mail is taken like an agent's (same authentication), though they answer no group's tickets.
STAFF_ROLES = {"team_lead_address": "Team lead", "head_of_support_address": "Head of support",
               "warning_address": "SLA warnings"}


@dataclass(frozen=True)
class TeamPolicy:
    identity: Identity  # the desk the team speaks as
    agents: dict[str, Agent] = field(default_factory=dict)  # by lower-case address
    staff: dict[str, Agent] = field(default_factory=dict)  # SLA recipients who are not agents
    routing: dict[str, str] = field(default_factory=dict)  # category -> group
    default_group: str = "support"
    group_addresses: dict[str, str] = field(default_factory=dict)
    comment_address: str | None = None
    agent_auth: str = "token+authres"
    authserv_id: str = ""
    loops: LoopPolicy | None = None  # loop limits and coalescing; None: none (some tests)
    brands: Mapping[str, Identity] = field(default_factory=dict)  # name -> who it speaks as
    language: str = "en"  # the staff's: what notifications to agents are written in

    def as_brand(self, name: str | None) -> TeamPolicy:
        """The team speaking as brand `name` (a ticket's): its From, templates, signature,
        regulator profile, routing and loop summary; an unknown name leaves the team as it
        is. A mail that joined a ticket is the ticket's brand's, whichever mailbox got it."""
        identity = self.brands.get(name or "")
        if identity is None:
            return self
        loops = self.loops.under(identity) if self.loops is not None else None
        return replace(self, identity=identity, loops=loops)

    def member(self, address: str | None) -> Agent | None:
        """The agent or staff member writing from `address` (lower-case), else None."""
        if not address:
            return None
        return self.agents.get(address) or self.staff.get(address)

    def group_for(self, category: str) -> str:
        """The brand's group for the category, else the team's, else the brand's default
        group, else the team's."""
        brand = self.identity
        return brand.routing.get(category) or self.routing.get(category) or \
            brand.default_group or self.default_group

    def recipients(self, group: str | None, assignee: str | None,
                   language: str | None = None) -> tuple[Address, ...]:
        """The assignee; else the agents of the group who speak the player's `language` when
        only some of them do; else the group's mailbox, each agent of the group, everyone."""
        holder = self.member(assignee)
        if holder is not None:
            return (Address(holder.address, holder.name),)
        members = [a for a in self.agents.values() if group in a.groups]
        speakers = speakers_of(members, language)
        if speakers and len(speakers) < len(members):
            return tuple(Address(a.address, a.name) for a in speakers)
        if group and group in self.group_addresses:
            return (Address(self.group_addresses[group], group),)
        return tuple(Address(a.address, a.name) for a in (members or self.agents.values()))


def speakers_of(agents: list[Agent], language: str | None) -> list[Agent]:
    """The agents who answer in `language` ("pt-BR" is spoken by who speaks "pt")."""
    if not language:
        return []
    primary = language.lower().replace("_", "-").split("-")[0]
    return [a for a in agents
            if any(s.lower().replace("_", "-").split("-")[0] == primary for s in a.languages)]


def route_and_notify(session: Session, team: TeamPolicy, ticket_id: int, mail: InboundMail,
                     visible: str, event: str) -> None:
    """Give a new ticket its group, and tell the holder(s) of the ticket about the player's mail."""
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None
    team = team.as_brand(ticket.brand)
    if ticket.group is None:
        ticket.group = team.group_for(ticket.category)
    recipients = team.recipients(ticket.group, ticket.assignee, ticket.language)
    if not recipients:
        return
    # Each recipient's own pace: after a reassignment the new assignee hears at once, not
    # when the one before them may next be notified.
    due = {r.addr: notify_when(session, team.loops, ticket_id, r.addr) if team.loops else "now"
           for r in recipients}
    if any(when == "pending" for when in due.values()):  # one not yet sent will tell of this
        queries.insert_event(session, "notification_coalesced", ticket_id)
    waiting = [r for r in recipients if due[r.addr] != "pending"]
    if not waiting:
        return
    earlier = queries.count_tickets_of(session, ticket.requester_id) - 1
    session.flush()
    owed = [c.due_at for c in sla_clocks.open_clocks(session, ticket_id)
            if c.kind in ("first_response", "next_response") and c.due_at]
    for index, recipient in enumerate(waiting):  # one each: its id is its credential
        when = due[recipient.addr]
        ctx = NotificationContext(
            ticket_number=ticket.number, player=mail.sender, subject=ticket.subject,
            visible_text=visible, category=ticket.category, priority=ticket.priority,
            status=ticket.status, sla_due=min(owed) if owed else None,
            earlier_tickets=max(earlier, 0), attachments=mail.attachments,
            player_message_id=mail.message_id, recipients=(recipient,), event=event,
            language=team.language,  # staff read the desk's language
            coalesced=when != "now",
            brand=team.identity.name if len(team.brands) > 1 else "",
            safeguarded=_safeguarded(session, ticket, team),
        )
        msg = notification(ctx, team.identity)
        # One notification of one mail counts once against its ticket, however many get it.
        queued = _queue(session, msg, "notification", ticket_id, [recipient.addr], team,
                        count_ticket=index == 0,
                        defer_until=None if isinstance(when, str) else when)
        if index == 0 and not queued:
            return  # withheld by the loop limits: the others would be too


def _safeguarded(session: Session, ticket: Ticket, team: TeamPolicy) -> Safeguard | None:
    """The requester's responsible-gambling flag, under whichever brand it was raised."""
    person = session.get(Contact, ticket.requester_id)
    if person is None or person.safeguarded_at is None:
        return None
    brand = team.brands.get(person.safeguard_brand or "")
    return Safeguard(since=person.safeguarded_at, intent=person.safeguard_intent or "",
                     brand=brand.name if brand else person.safeguard_brand or "")


@dataclass(frozen=True)
class AgentOutcome:
    kind: str  # reply, note, commands, refused, held, auto_reply
    reason: str = ""


def is_agent_mail(team: TeamPolicy | None, mail: InboundMail) -> bool:
    """From an agent or a staff member: commands and replies, once authenticated."""
    return bool(team and mail.sender and team.member(mail.sender.addr))


def handle_agent_mail(session: Session, team: TeamPolicy, mail: InboundMail, ticket: Ticket,
                      visible: str, record: dict[str, Any],
                      sla: SlaOptions | None = None, *, responder: str = "") -> AgentOutcome:
    """An agent's mail naming a ticket: held unless authenticated; then commands, note or reply."""
    assert mail.sender is not None
    agent = team.member(mail.sender.addr)
    assert agent is not None  # is_agent_mail() said so
    team = team.as_brand(ticket.brand)
    why = _not_authenticated(session, team, mail, agent, ticket.number)
    if why:
        _store(session, ticket.id, mail, "held", visible, record)
        queries.insert_event(session, "agent_mail_held", ticket.id, actor=agent.address, reason=why)
        _held_notice(session, team, agent, ticket.id)
        return AgentOutcome("held", why)
    block = parse_commands(visible, _categories(team))
    if responder and not block.commands and not block.errors:  # a program writes no command
        _store(session, ticket.id, mail, "auto_reply", visible, record)
        queries.insert_event(session, "auto_reply", ticket.id, actor=agent.address,
                             reason=responder)
        return AgentOutcome("auto_reply", responder)
    note = any(c.name == "note" for c in block.commands) or _to_comment_address(team, mail)
    errors = list(block.errors) + _command_errors(team, block.commands)
    if not errors:  # the complaint commands ask the record (extension once, final once ...)
        errors = complaints.command_errors(session, team.identity.complaints, ticket.id,
                                           block.commands, block.text, utcnow())
    if not errors and note and any(c.name == "final" for c in block.commands):
        # A note stays with the team: the decision would be recorded, the guard stopped, and
        # the player told nothing.
        errors = ["#final is the player's answer: send it as a reply to the notification, "
                  "not as a #note or to the comment address"]
    if errors:
        _store(session, ticket.id, mail, "refused", visible, record)
        queries.insert_event(session, "commands_refused", ticket.id, actor=agent.name,
                             errors=errors)
        refusal = command_refused(Address(agent.address, agent.name), errors, team.identity,
                                  ticket_number=ticket.number, subject=mail.subject,
                                  in_reply_to=mail.message_id)
        _queue(session, refusal, "command_refused", ticket.id, [agent.address], team)
        return AgentOutcome("refused", "; ".join(errors))
    _apply(session, ticket, block.commands, agent)
    complaints.apply_commands(session, team.identity, ticket.id, block.commands, agent.address,
                              utcnow())
    asks = _asks_player(block.commands)
    if not asks:
        _complaint_clock(session, team, ticket, agent.address)
    if block.commands or note:  # a person acted (a responder writes no command)
        resume(session, ticket.id, agent.address)
    if not block.text:
        _clocks_after(session, ticket, block.commands, sla)
        return AgentOutcome("commands")
    if note:
        _store(session, ticket.id, mail, "note", block.text, record, direction="internal")
        queries.insert_event(session, "note", ticket.id, actor=agent.name)
        return AgentOutcome("note")
    relayed = _public_reply(session, team, ticket, mail, agent, block, record)
    if asks:  # the question went to the player in this very mail: its relay is the evidence
        complaints.pause_clock(session, team.identity.complaints, ticket.id, agent.address,
                               utcnow(), asked_in=relayed)
    if not any(c.name == "final" for c in block.commands) and is_final_answer(
            tuple((c.name, c.argument) for c in block.commands)):
        complaints.final_answer(session, ticket.id, agent.address, utcnow())
    if sla is not None:
        clocks_for_agent_reply(session, ticket.id, utcnow())  # the player has an answer
    _clocks_after(session, ticket, block.commands, sla)
    return AgentOutcome("reply")


def refuse_forward(session: Session, team: TeamPolicy, address: str) -> None:
    """Tell an agent, without a word of it, that a forward in their name was not accepted
    and is in the quarantine. The caller has recorded it as held mail in their name
    (`agent_mail_held`), so it shares the held notices' hourly limit: a forger sending
    forwards gets no more notices out of the desk than one sending replies."""
    agent = team.member(address)
    if agent is not None:
        _held_notice(session, team, agent, None, forward=True)


def _held_notice(session: Session, team: TeamPolicy, agent: Agent, ticket_id: int | None, *,
                 forward: bool = False) -> None:
    """Tell the agent a mail in their name was held: a few times an hour, then once that
    more were, then nothing until the hour has passed. Only a count, a time and the
    claimed address: the held mail's words are a forger's and are never repeated."""
    held, _ = queries.count_events(session, "agent_mail_held", agent.address,
                                   timedelta(hours=1), timedelta(hours=1))
    limit = team.loops.held_notices_per_hour if team.loops else 3
    if held > limit + 1:
        return
    now = utcnow()
    notice = held_notice(agent.address, team.identity, agent_name=agent.name, count=held,
                         received_at=now, last=held == limit + 1, now=now, forward=forward)
    _queue(session, notice, "held_notice", ticket_id, [agent.address], team, count_ticket=False)


def _asks_player(commands: tuple[Command, ...]) -> bool:
    """#status pending: the desk says it asked the player for information. Under a pausing
    profile the complaint's clock waits for the answer, but only when the same mail is a
    public reply, relayed to the player (_public_reply): a #note, mail to the comment address
    or commands alone ask the player nothing. Only the command pauses: the pending an
    ordinary answer leaves behind would stop the deadline whenever the desk has replied."""
    return any(c.name == "status" and c.argument == "pending" for c in commands)


def _complaint_clock(session: Session, team: TeamPolicy, ticket: Ticket, actor: str) -> None:
    """A status other than pending lets a paused clock run on."""
    if ticket.status != "pending":
        complaints.resume_clock(session, team.identity.complaints, ticket.id, actor, utcnow())


def _clocks_after(session: Session, ticket: Ticket, commands: tuple[Command, ...],
                  sla: SlaOptions | None) -> None:
    """What the ticket's new state means for its SLA clocks."""
    if sla is None:
        return
    now = utcnow()
    session.flush()
    if any(c.name == "escalate" for c in commands):
        clocks_for_appeal(session, ticket.id, now, sla)
    if ticket.status in ("resolved", "closed"):
        clocks_for_resolved(session, ticket.id, now)
    elif ticket.status == "pending":
        clocks_for_pending(session, ticket.id, now, sla)


def _not_authenticated(session: Session, team: TeamPolicy, mail: InboundMail, agent: Agent,
                       number: int) -> str:
    """Why this mail is not the agent's, or "". In every mode it must answer a mail we sent
    to this agent (or their group's address) about this ticket: a signed reference of the
    player's own acknowledgement, or of a notification to someone else, is no credential."""
    if not has_credential(session, team, mail, agent, number):
        return "no signed reference of a notification sent to you for this ticket " \
               "(reply to the notification itself)"
    if team.agent_auth == "token+authres":
        if not team.authserv_id:
            return "no trusted MTA configured ([security] authserv_id)"
        verdict = verify_sender(mail, team.authserv_id)
        if not verdict.ok:
            return verdict.reason
    return ""


# What we send to the team about a ticket; its Message-ID answered is a credential.
_TO_TEAM = ("notification", "command_refused", "escalation")


def has_credential(session: Session, team: TeamPolicy, mail: InboundMail, agent: Agent,
                   number: int) -> bool:
    """Does the mail answer a mail of ours sent to `agent` (or to a group address of theirs)
    about ticket `number`? Purpose and recipient are signed in the Message-ID; for mail
    sent before they were, our outbox record of it says the same."""
    keys = team.identity.keys
    if not keys:
        return False
    addresses = (agent.address, *(team.group_addresses[g] for g in agent.groups
                                  if g in team.group_addresses))
    ids = (*mail.in_reply_to, *mail.references)[-50:]
    if any(verify_agent_reference(i, keys, addresses) == number for i in ids):
        return True
    older = [i for i in ids if verify_message_id(i, keys) == number]
    return bool(older) and _sent_to(session, older, addresses)


def _sent_to(session: Session, message_ids: list[str], addresses: tuple[str, ...]) -> bool:
    """Was one of these (signed, older) Message-IDs ours to the team, sent to one of
    `addresses`? The player's acknowledgement and relays are never such a mail."""
    rows = session.execute(select(OutboxMessage.recipients).where(
        OutboxMessage.message_id.in_(message_ids), OutboxMessage.kind.in_(_TO_TEAM))).all()
    wanted = {a.lower() for a in addresses}
    return any(wanted & {r.lower() for r in (row[0] or [])} for row in rows)


def _categories(team: TeamPolicy) -> frozenset[str] | None:
    return None  # any well-formed category name; routing falls back to the default group


def _command_errors(team: TeamPolicy, commands: tuple[Command, ...]) -> list[str]:
    errors = []
    for command in commands:
        if command.name == "assign" and command.argument != "me" \
                and team.member(command.argument) is None:
            errors.append(f'#assign: {command.argument} is not one of our agents or staff')
    return errors


def _apply(session: Session, ticket: Ticket, commands: tuple[Command, ...], agent: Agent) -> None:
    """Each command's change (daemon/lifecycle.py) written to the row, and its event."""
    now = utcnow()
    for command in commands:
        if command.name == "merge":
            detail = _merge(session, ticket, command.argument)
        else:
            change = apply_command(_state(ticket), command.name, command.argument,
                                   agent.address, now)
            if change is None:
                continue
            _write(ticket, change.state)
            detail = change.detail
        queries.insert_event(session, f"command_{command.name}", ticket.id, actor=agent.name,
                             argument=command.argument, **detail)
    ticket.updated_at = now


def _state(ticket: Ticket) -> TicketState:
    return TicketState(status=ticket.status, assignee=ticket.assignee, priority=ticket.priority,
                       category=ticket.category, resolved_at=ticket.resolved_at,
                       appeal_requested_at=ticket.appeal_requested_at)


def _write(ticket: Ticket, state: TicketState) -> None:
    ticket.status, ticket.assignee = state.status, state.assignee
    ticket.priority, ticket.category = state.priority, state.category
    ticket.resolved_at, ticket.appeal_requested_at = state.resolved_at, state.appeal_requested_at


def _merge(session: Session, ticket: Ticket, value: str | None) -> dict[str, Any]:
    """#merge NUMBER: the messages move to the other ticket, this one is closed and linked."""
    target = queries.ticket_by_ref(session, value or "")
    if target is None or target.id == ticket.id:
        return {"merged": False}
    session.execute(update(Message).where(Message.ticket_id == ticket.id)
                    .values(ticket_id=target.id))
    _write(ticket, merged_into(_state(ticket)))
    ticket.linked_ticket_id = target.id
    complaints.merged(session, ticket.id, target.id)
    return {"merged": True, "into": target.number}


def _to_comment_address(team: TeamPolicy, mail: InboundMail) -> bool:
    return bool(team.comment_address) and any(
        a.addr == team.comment_address for a in (*mail.to, *mail.cc))


def _public_reply(session: Session, team: TeamPolicy, ticket: Ticket, mail: InboundMail,
                  agent: Agent, block: CommandBlock, record: dict[str, Any]) -> str:
    """Relay the agent's text to the player; the relay's Message-ID."""
    player = session.get(Contact, ticket.requester_id)
    assert player is not None
    latest = session.scalar(
        select(Message.header_message_id).where(
            Message.ticket_id == ticket.id, Message.direction == "in",
            Message.kind.in_(("complaint", "follow_up"))).order_by(Message.id.desc()).limit(1))
    text = block.text
    if any(c.name == "final" for c in block.commands):  # the decision, then where beyond us
        text = final_text(team.identity, ticket.language, text)
    elif is_final_answer(tuple((c.name, c.argument) for c in block.commands)):
        text = f"{text}\n\n{dispute_paragraph(team.identity, ticket.language)}"
    ctx = RelayContext(
        ticket_number=ticket.number, language=ticket.language,
        player=Address(player.address, player.name), subject=ticket.subject,
        agent_name=agent.name, text=text, attachments=mail.attachments,
        in_reply_to=latest, references=(latest,) if latest else (),
        agent_addresses=(agent.address,),
    )
    msg = relay(ctx, team.identity)
    _store(session, ticket.id, mail, "reply", block.text, record, direction="out",
           header_message_id=mime.message_id(msg), sender=agent.address,
           sender_name=agent.name)
    _queue(session, msg, "relay", ticket.id, [player.address], team)
    # Waiting for the player; their reply opens it again.
    _write(ticket, after_public_reply(_state(ticket), tuple(c.name for c in block.commands)))
    queries.insert_event(session, "public_reply", ticket.id, actor=agent.name)
    return mime.message_id(msg)


def _store(session: Session, ticket_id: int, mail: InboundMail, kind: str, text: str,
           record: dict[str, Any], *, direction: str = "in", **override: Any) -> int:
    assert mail.sender is not None
    values = {
        "ticket_id": ticket_id, "direction": direction, "kind": kind, "sender": mail.sender.addr,
        "sender_name": mail.sender.name[:200], "subject": mail.subject,
        "header_message_id": mail.message_id, "in_reply_to": " ".join(mail.in_reply_to) or None,
        "references": " ".join(mail.references) or None, "raw_sha256": record["raw_sha256"],
        "raw_size": record["raw_size"], "key_id": record.get("key_id"), "visible_text": text,
        "full_text": mail.text,
        "created_at": utcnow(),
    }
    values.update(override)
    message_id = queries.insert_message(session, **values)
    queries.insert_attachments(session, message_id, mail.attachments)
    return message_id


def _queue(session: Session, msg: Any, kind: str, ticket_id: int | None, recipients: list[str],
           team: TeamPolicy, *, count_ticket: bool = True,
           defer_until: datetime | None = None) -> bool:
    """Queue a mail caused by a mail that came in, within the loop limits (invariant 3);
    False when it was withheld or could not be addressed."""
    if team.loops is not None:
        why = guard(session, team.loops, ticket_id, recipients, kind, count_ticket=count_ticket,
                    withhold=kind != "relay")
        if why:
            queries.insert_event(session, "auto_mail_withheld", ticket_id, mail=kind, reason=why)
            return False
    try:
        outbox_id = outbox.enqueue(
            session, raw=mime.wire_bytes(msg), message_id=mime.message_id(msg),
            envelope_from=team.identity.address, recipients=recipients, kind=kind,
            ticket_id=ticket_id, shown=mime.shown(msg))
    except UnsafeRecipient as err:
        log.warning("not sent", extra={"fields": {"kind": kind, "ticket": ticket_id,
                                                  "reason": str(err)}})
        return False
    if defer_until is not None:
        loop_counts.defer(session, outbox_id, defer_until)
    if team.loops is not None:
        counted(session, ticket_id, recipients, kind, outbox_id, count_ticket=count_ticket)
    return True


def routing_warnings(team: TeamSettings) -> list[str]:
    """Groups that tickets are routed to but that reach nobody of their own: no agent is in
    them and they have no group address, so their notifications go to every agent. Said by
    `check-config`; not an error, as a small desk may mean exactly that."""
    if not team.agents:
        return []  # no agents: no notifications at all, nothing to route
    staffed = {group for agent in team.agents for group in agent.groups}
    routed: dict[str, list[str]] = {team.default_group: ["any other category"]}
    for category, group in sorted(team.routing.items(), reverse=True):
        routed.setdefault(group, []).insert(0, category)
    return [
        f'[team] group "{group}" (for {", ".join(categories)}) has no agent and no entry '
        f"in group_addresses: its tickets are notified to every agent"
        for group, categories in sorted(routed.items())
        if group not in staffed and group not in team.group_addresses
    ]
