"""Encryption at rest of the local health record with a passphrase.

The key is derived from the passphrase with scrypt (a random salt kept in the database) and every
health payload (consultations, answers, household members, diary entries, follow-ups) is sealed with
AES-256-GCM. Bookkeeping stays readable (ids, timestamps, due times), so the store can list and
order rows without the key. A check value sealed with the key tells a wrong passphrase from a
damaged file. Losing the passphrase loses the record: there is no recovery by design.
"""

from __future__ import annotations

import base64
import hashlib
import os

from diagnostician.errors import DiagnosticianError

PASSPHRASE_ENV = "DIAGNOSTICIAN_PASSPHRASE"
PREFIX = "enc1:"  # sealed values start with this; plain JSON never does
CHECK = b"diagnostician-record"
# scrypt cost: about 0.1 s and 32 MiB per opening on a laptop (RFC 7914's interactive-use range).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class RecordLockedError(DiagnosticianError):
    """The record is encrypted and no passphrase, or a wrong one, was given."""


def new_salt() -> bytes:
    """A fresh random salt for a new encrypted record."""
    return os.urandom(16)


class RecordCipher:
    """Seals and opens the record's payloads with a key derived from a passphrase."""

    def __init__(self, passphrase: str, salt: bytes) -> None:
        """Derive the key (slow on purpose: it is what a guessing attacker must pay per guess)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not passphrase:
            raise RecordLockedError("an empty passphrase cannot protect the record")
        key = hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32)
        self._aead = AESGCM(key)

    def seal(self, text: str) -> str:
        """The text encrypted and authenticated, as printable text."""
        nonce = os.urandom(12)
        return PREFIX + base64.b64encode(nonce + self._aead.encrypt(nonce, text.encode("utf-8"), None)).decode("ascii")

    def open(self, text: str) -> str:
        """The plain text of a sealed value (plain values pass through: records encrypted later keep old rows readable)."""
        if not text.startswith(PREFIX):
            return text
        from cryptography.exceptions import InvalidTag

        raw = base64.b64decode(text[len(PREFIX) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], None).decode("utf-8")
        except InvalidTag as exc:
            raise RecordLockedError("a record entry cannot be decrypted with this passphrase (wrong passphrase or damaged entry)") from exc

    def check_value(self) -> str:
        """A sealed known value, stored to recognise the right passphrase later."""
        return self.seal(CHECK.decode("ascii"))

    def verify(self, check: str) -> None:
        """Raise RecordLockedError unless `check` was sealed with this key."""
        try:
            ok = self.open(check) == CHECK.decode("ascii")
        except RecordLockedError:
            ok = False
        if not ok:
            raise RecordLockedError("wrong passphrase for this encrypted record")


def sealed(text: str | None) -> bool:
    """Whether a stored value is encrypted."""
    return isinstance(text, str) and text.startswith(PREFIX)
