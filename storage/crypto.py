"""Encryption at rest, the pure part: master keys, data keys, sealed blobs and blob names.

Every contact has a data key (32 random bytes). It encrypts that contact's raw mails,
attachments and the mails we send about them, with AES-256-GCM, and is kept in the
database only wrapped (AES-256-GCM again) by a master key that the database never holds:
the master keys come from `[privacy] key_file`. Destroying a data key makes every copy of
what it sealed unreadable, backups included (crypto-shredding).

Blob names are HMAC(data key, sha256 of the content): the same content from one contact is
stored once, two contacts never share a file, and a name says nothing about the content to
anyone without the key. A sealed blob carries its name as associated data, so a file moved
or copied under another name does not open.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
MAGIC = b"tkd1"  # the sealed-blob format; a new one gets a new prefix


class KeyProblem(Exception):
    """A key that is missing, malformed or does not open what it should."""


class WrongKey(KeyProblem):
    """Ciphertext that does not open with the key given: a wrong key or altered bytes."""


@dataclass(frozen=True)
class MasterKey:
    secret: bytes = b""

    @property
    def id(self) -> str:
        """A name for the key that reveals nothing of it: stored beside each wrapped key."""
        return hmac.new(self.secret, b"ticketd master key id", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:  # never print the secret
        return f"MasterKey(id={self.id})"


@dataclass(frozen=True)
class MasterKeys:
    """The key file's keys, newest first: new data keys are wrapped with the first, any
    opens what it wrapped. Rotation adds a key on top and re-wraps (`privacy rotate-master`)."""

    keys: tuple[MasterKey, ...]

    @classmethod
    def of(cls, secrets: tuple[bytes, ...]) -> MasterKeys:
        """From the decoded keys of `[privacy] key_file` (config.schema checks their form)."""
        if not secrets or any(len(k) != KEY_BYTES for k in secrets):
            raise KeyProblem(f"master keys must be {KEY_BYTES} bytes each, at least one")
        return cls(tuple(MasterKey(k) for k in secrets))

    @property
    def newest(self) -> MasterKey:
        return self.keys[0]

    def by_id(self, key_id: str) -> MasterKey | None:
        return next((k for k in self.keys if k.id == key_id), None)


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


def wrap(master: MasterKey, data_key: bytes, owner: str) -> bytes:
    """The data key sealed by the master key; `owner` (e.g. "contact:17") is bound to it, so
    a wrapped key copied onto another contact's row does not open."""
    return seal(master.secret, data_key, f"key/{owner}".encode())


def unwrap(master: MasterKey, wrapped: bytes, owner: str) -> bytes:
    return open_sealed(master.secret, wrapped, f"key/{owner}".encode())


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    if not is_sealed(sealed):
        raise WrongKey("not a sealed blob")
    nonce = sealed[len(MAGIC):len(MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, sealed[len(MAGIC) + NONCE_BYTES:], associated)
    except InvalidTag:
        raise WrongKey("does not open: wrong key, or the bytes or their name were altered") \
            from None


def is_sealed(data: bytes) -> bool:
    return data[:len(MAGIC)] == MAGIC and len(data) >= len(MAGIC) + NONCE_BYTES + 16


def blob_name(data_key: bytes, digest: str) -> str:
    """The file name of content with this sha256 under this data key."""
    return hmac.new(data_key, b"blob\0" + digest.encode(), hashlib.sha256).hexdigest()


def tombstone(key: bytes, address: str) -> str:
    """What stays of an erased address: recognisable when it comes again, not readable."""
    return hmac.new(key, b"tombstone\0" + address.strip().lower().encode(),
                    hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DataKey:
    """One contact's (or the desk's) data key, unwrapped, with its row id."""

    id: int
    secret: bytes

    def __repr__(self) -> str:
        return f"DataKey(id={self.id})"
