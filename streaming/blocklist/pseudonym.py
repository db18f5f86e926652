"""Keyed pseudonyms for phone numbers in what a regulator sees.

``<key id>-<16 hex of HMAC-SHA256(key, number)>``: the same number gives the same pseudonym
under the same key, everywhere; without the key nobody can go back (an unkeyed hash of a phone
number is reversed by hashing the whole numbering plan). Rotating the key means a new key id,
so pseudonyms from two keys are never mistaken for each other.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pydantic import SecretStr

from streaming.blocklist.errors import BlocklistError

#: something that looks like an E.164 number or a national one (for the report's own check)
NUMBER_PATTERN = re.compile(r"\+?\d{8,15}")


class Pseudonymizer:
    def __init__(self, key: SecretStr | None, key_id: str) -> None:
        if key is None or not key.get_secret_value():
            raise BlocklistError(
                "no pseudonym key: set audit.pseudonym_key (environment SIMGUARD_AUDIT__PSEUDONYM_KEY)"
            )
        self._key = key.get_secret_value().encode()
        self.key_id = key_id
        self._cache: dict[str, str] = {}

    def __call__(self, number: str | None) -> str | None:
        if number is None:
            return None
        found = self._cache.get(number)
        if found is None:
            digest = hmac.new(self._key, number.encode(), hashlib.sha256).hexdigest()[:16]
            found = self._cache[number] = f"{self.key_id}-{digest}"
        return found

    def __repr__(self) -> str:
        return f"Pseudonymizer(key_id={self.key_id!r}, key=**********)"
