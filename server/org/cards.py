"""Members' card tokens as keyed hashes: the database never holds a card's number, and a check-in still matches.

A card token is what a check-in reader reads from a member's card. Anyone who has it can make a card that checks in
as that member, so it is stored as HMAC-SHA256 under a key derived from the instance secret (`card_key`): the same
token always gives the same digest, so a check-in is matched by comparing digests, and a copied database or backup
does not give the tokens away. Changing the instance secret makes the stored digests unmatchable: import the
members' cards again afterwards.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "hmac-sha256:"


def is_digest(value: str) -> bool:
    """Whether VALUE is already a card digest (stored data, or an event whose credential was replaced)."""
    return value.startswith(PREFIX)


def digest(key: bytes, token: str) -> str:
    """The stored form of card TOKEN under KEY ("hmac-sha256:" and 64 hex digits); a digest stays as it is."""
    token = token.strip()
    if is_digest(token):
        return token
    return PREFIX + hmac.new(key, token.encode("utf-8"), hashlib.sha256).hexdigest()


def derive_key(secret: str) -> bytes:
    """The card key derived from the instance secret (its own key, so the secret itself signs nothing here)."""
    return hmac.new(secret.encode("utf-8"), b"lessoncast card tokens v1", hashlib.sha256).digest()


def credential_of(body: dict) -> str | None:
    """The credential a check-in event's body carries, as attendance reads it, or None."""
    credential = body.get("credential")
    if not isinstance(credential, str) or not credential.strip():
        return None
    return credential.strip()[:128]


def redact_checkin(body: dict, key: bytes, member_numbers: set[str]) -> dict:
    """A check-in event's body with its credential replaced by the digest, unless it is one of MEMBER_NUMBERS (a
    QR code or card printed with the member number, which is no secret); otherwise the same object."""
    credential = credential_of(body)
    if credential is None or credential in member_numbers or is_digest(credential):
        return body
    return {**body, "credential": digest(key, credential)}
