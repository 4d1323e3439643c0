"""The server's key for per-org secrets, and sealing values with it (see _secrets)."""

from __future__ import annotations

import base64
import os
import secrets as random
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ENV = "BACKSTATE_SECRETS_KEY"


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a secrets key is 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """The key of ``BACKSTATE_SECRETS_KEY``, else of ``path`` (made if missing)."""
        given = os.environ.get(KEY_ENV)
        if given:
            return cls(base64.b64decode(given))
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(base64.b64encode(AESGCM.generate_key(bit_length=256)))
        return cls(base64.b64decode(path.read_bytes().strip()))

    def seal(self, org_id: str, name: str, value: str) -> str:
        nonce = random.token_bytes(12)
        sealed = self._aead.encrypt(nonce, value.encode(), _bound(org_id, name))
        return base64.b64encode(nonce + sealed).decode()

    def open(self, org_id: str, name: str, sealed: str) -> str | None:
        """The value, or None if it was sealed with another key (or tampered with)."""
        raw = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], _bound(org_id, name)).decode()
        except InvalidTag:
            return None


def _bound(org_id: str, name: str) -> bytes:
    return f"{org_id}\x00{name}".encode()
