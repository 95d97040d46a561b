"""Data keys in the database, wrapped by the master keys of the key file.

A `Vault` is built once from settings and travels with the session factory
(`session.info["vault"]`), so that whatever writes or reads sealed bytes in a transaction
(ingest, the outbox, export, erasure) finds it without a key passed through every composer.
No unwrapped key is kept between calls: erasure in another process takes effect at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.crypto import (
    DataKey,
    KeyProblem,
    MasterKeys,
    new_data_key,
    unwrap,
    wrap,
)
from storage.models import Contact, ContactKey, utcnow

ADDRESS_MAX = 320  # contacts.address
_KEYS = ContactKey.__table__
_NEW_KEY = {
    dialect.__name__.rpartition(".")[2]: dialect.insert(_KEYS)
    .values(contact_id=bindparam("cid"), wrapped=bindparam("wrapped"),
            master_key_id=bindparam("mid"), created_at=bindparam("now"))
    .on_conflict_do_nothing(index_elements=["contact_id"])
    for dialect in (postgresql, sqlite)
}
_NEW_CONTACT = {
    dialect.__name__.rpartition(".")[2]: dialect.insert(Contact)
    .values(address=bindparam("address"), name=bindparam("name"), language=None,
            bouncing=False, created_at=bindparam("now"))
    .on_conflict_do_nothing(index_elements=["address"])
    for dialect in (postgresql, sqlite)
}
_KEY_OF_CONTACT = select(ContactKey.id, ContactKey.wrapped, ContactKey.master_key_id).where(
    ContactKey.contact_id == bindparam("cid"))
_KEYS_OF_ADDRESSES = (
    select(Contact.address, ContactKey.id, ContactKey.contact_id, ContactKey.wrapped,
           ContactKey.master_key_id)
    .join(ContactKey, ContactKey.contact_id == Contact.id)
    .where(Contact.address.in_(bindparam("addresses", expanding=True)))
)


class KeyDestroyed(KeyProblem):
    """The data key was destroyed by an erasure: what it sealed is gone for good."""


def owner(contact_id: int | None) -> str:
    return f"contact:{contact_id}" if contact_id is not None else "desk"


def vault_of(session: Session) -> Vault | None:
    """The vault of this session's factory; None when encryption at rest is off."""
    return session.info.get("vault")


@dataclass(frozen=True)
class Vault:
    masters: MasterKeys

    def key(self, session: Session, key_id: int) -> DataKey:
        row = session.get(ContactKey, key_id)
        if row is None:
            raise KeyProblem(f"no data key {key_id}")
        return self._open(row.id, row.contact_id, row.wrapped, row.master_key_id)

    def key_of_contact(self, session: Session, contact_id: int) -> DataKey:
        """The contact's data key, made when the contact has none yet. Kept for the rest of
        the session: ingest asks again for the acknowledgement of the mail it just sealed."""
        cache = session.info.setdefault("data_keys", {})
        if contact_id in cache:
            return cache[contact_id]
        row = session.execute(_KEY_OF_CONTACT, {"cid": contact_id}).first()
        if row is None:
            self._insert(session, contact_id)
            row = session.execute(_KEY_OF_CONTACT, {"cid": contact_id}).one()
        cache[contact_id] = self._open(row.id, contact_id, row.wrapped, row.master_key_id)
        return cache[contact_id]

    def keys_of_senders(self, session: Session, senders: Iterable[tuple[str, str]]
                        ) -> tuple[dict[str, DataKey], list[str]]:
        """Address -> data key for each (address, name), making contacts and keys as needed;
        an address that cannot be a contact is left out (its mail takes the desk key). One
        query for the contacts that have a key already (the common case in a batch). Also
        the addresses that became contacts now."""
        wanted = {address: name for address, name in senders}
        if not wanted:
            return {}, []
        found = self._keys_of_addresses(session, list(wanted))
        new = {a: n for a, n in wanted.items()
               if a not in found and len(a) <= ADDRESS_MAX and "\x00" not in a}
        if new:
            try:  # a hostile address must not fail the whole batch: it gets the desk key
                with session.begin_nested():
                    self._insert_contacts(session, new)
            except sa_exc.StatementError as err:
                if isinstance(err, sa_exc.OperationalError | sa_exc.InterfaceError):
                    raise
            else:
                found.update(self._keys_of_addresses(session, list(new)))
        return found, [a for a in new if a in found]

    def _keys_of_addresses(self, session: Session, addresses: list[str]) -> dict[str, DataKey]:
        cache = session.info.setdefault("data_keys", {})
        found = {}
        for row in session.execute(_KEYS_OF_ADDRESSES, {"addresses": addresses}):
            found[row.address] = cache[row.contact_id] = self._open(
                row.id, row.contact_id, row.wrapped, row.master_key_id)
        return found

    def _insert_contacts(self, session: Session, new: dict[str, str]) -> None:
        """Contacts and data keys for new senders, a statement for each table: on PostgreSQL
        every statement is a round trip, and half of a backlog may be new senders."""
        dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
        now = utcnow()
        session.execute(_NEW_CONTACT[dialect], [
            {"address": a, "name": n[:200], "now": now} for a, n in new.items()])
        keyless = session.scalars(
            select(Contact.id).outerjoin(ContactKey, ContactKey.contact_id == Contact.id)
            .where(Contact.address.in_(list(new)), ContactKey.id.is_(None))).all()
        newest = self.masters.newest
        if keyless:
            session.execute(_NEW_KEY[dialect], [
                {"cid": cid, "wrapped": wrap(newest, new_data_key(), owner(cid)),
                 "mid": newest.id, "now": now} for cid in keyless])

    def desk_key(self, session: Session) -> DataKey:
        """The key of mail that names no contact (no readable sender); the oldest desk key,
        so that two daemons making one at once agree afterwards."""
        query = select(ContactKey).where(ContactKey.contact_id.is_(None),
                                         ContactKey.destroyed_at.is_(None)).order_by(ContactKey.id)
        row = session.scalars(query.limit(1)).first()
        if row is None:
            self._insert(session, None)
            row = session.scalars(query.limit(1)).first()
        assert row is not None
        return self._open(row.id, None, row.wrapped, row.master_key_id)

    def rewrap(self, session: Session, batch: int = 500) -> int:
        """Wrap every data key that an older master key wraps with the newest one; the number
        re-wrapped. Blobs are not touched: their data keys do not change."""
        newest = self.masters.newest
        done = 0
        while True:
            rows = session.execute(
                select(ContactKey.id, ContactKey.contact_id, ContactKey.wrapped,
                       ContactKey.master_key_id)
                .where(ContactKey.wrapped.is_not(None), ContactKey.master_key_id != newest.id)
                .order_by(ContactKey.id).limit(batch)).all()
            if not rows:
                return done
            for row in rows:
                secret = self._open(row.id, row.contact_id, row.wrapped, row.master_key_id).secret
                session.execute(update(ContactKey).where(ContactKey.id == row.id).values(
                    wrapped=wrap(newest, secret, owner(row.contact_id)),
                    master_key_id=newest.id))
            done += len(rows)
            session.flush()

    def check(self, session: Session) -> dict[str, int]:
        """Open one data key per master key id found in the database; master key id -> how
        many data keys it wraps. Raises KeyProblem when one is missing from the key file or
        does not open its keys (a wrong key file)."""
        counts = dict(session.execute(
            select(ContactKey.master_key_id, func.count()).where(ContactKey.wrapped.is_not(None))
            .group_by(ContactKey.master_key_id)).all())
        for master_id in counts:
            sample = session.execute(
                select(ContactKey.id, ContactKey.contact_id, ContactKey.wrapped)
                .where(ContactKey.master_key_id == master_id).limit(1)).one()
            self._open(sample.id, sample.contact_id, sample.wrapped, master_id)
        return counts

    def _insert(self, session: Session, contact_id: int | None) -> None:
        newest = self.masters.newest
        values = {"cid": contact_id, "wrapped": wrap(newest, new_data_key(), owner(contact_id)),
                  "mid": newest.id, "now": utcnow()}
        if contact_id is None:  # NULLs do not conflict: a plain insert
            session.execute(_KEYS.insert().values(
                contact_id=None, wrapped=values["wrapped"], master_key_id=values["mid"],
                created_at=values["now"]))
            return
        dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
        session.execute(_NEW_KEY[dialect], values)

    def _open(self, key_id: int, contact_id: int | None, wrapped: bytes | None,
              master_id: str | None) -> DataKey:
        if wrapped is None:
            raise KeyDestroyed(f"data key {key_id} was destroyed (erasure)")
        master = self.masters.by_id(master_id or "")
        if master is None:
            raise KeyProblem(f"data key {key_id} is wrapped by master key {master_id}, which is "
                             "not in the key file")
        return DataKey(key_id, unwrap(master, wrapped, owner(contact_id)))
