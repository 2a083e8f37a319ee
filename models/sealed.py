"""Secret valves sealed at rest: password-type values are stored encrypted (Fernet) inside the valves JSON.

A sealed value is a string ``sluice-sealed:v1:<Fernet token>`` in place of the plain text, so the schema does not
change and a reader can tell sealed from plain. Reading a valves column opens every sealed value (``SealedJSON``),
so every reader (runtime, export, forms, sync) sees plain values. Which values are sealed depends on the function's
schema, which a column type cannot see: the service layer marks what it writes (``WithSecrets``), and the column
seals the marked keys on the way in. A value that no key here opens is kept sealed as it is (never dropped), so that
restoring the right key brings it back.

The keys: ``SLUICE_VALVES_KEY`` (one Fernet key, or several separated by commas: the first seals, every one opens,
which is how a key is rotated without downtime), and always a key derived from the instance's ``SECRET_KEY``, which
seals when no key is configured and opens what was sealed before one was.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import JSON
from sqlalchemy.types import TypeDecorator

SEALED_PREFIX = "sluice-sealed:v1:"
KEYRING_EXTENSION = "sluice.valves_keyring"

log = logging.getLogger(__name__)


def derived_key(secret_key: str) -> bytes:
    """A Fernet key from the instance secret, bound to this one use (so it is not the session-signing key)."""
    digest = hashlib.sha256(b"sluice valves at rest v1\0" + secret_key.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest)


def check_fernet_key(text: str) -> bytes:
    """``text`` as a Fernet key (32 bytes in URL-safe base64); ``ValueError`` when it is not one."""
    key = text.strip().encode("ascii", "replace")
    try:
        if len(base64.urlsafe_b64decode(key)) != 32:
            raise ValueError
    except (ValueError, TypeError):
        raise ValueError("not a Fernet key (32 bytes in URL-safe base64, 44 characters)") from None
    return key


class Keyring:
    """The keys that seal and open valves: the first seals, every one opens."""

    def __init__(self, keys: Iterable[bytes]):
        self.keys = list(dict.fromkeys(keys))
        if not self.keys:
            raise ValueError("a keyring needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in self.keys])

    @classmethod
    def for_settings(cls, configured: Iterable[str], secret_key: str) -> Keyring:
        return cls([*(check_fernet_key(key) for key in configured), derived_key(secret_key)])

    def seal(self, plain: str) -> str:
        return SEALED_PREFIX + self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        """The plain text of a sealed value; ``InvalidToken`` when no key here sealed it."""
        return self._fernet.decrypt(sealed[len(SEALED_PREFIX) :].encode("ascii")).decode("utf-8")

    def reseal(self, sealed: str) -> str:
        """The same value sealed with the first key (``InvalidToken`` when no key here opens it)."""
        return self.seal(self.open(sealed))


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def current_keyring() -> Keyring | None:
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    return current_app.extensions.get(KEYRING_EXTENSION)


class WithSecrets(dict):
    """Valves to store, with the names of the keys to seal (the function's password-type fields)."""

    def __init__(self, values: Mapping, secret_names: Iterable[str]):
        super().__init__(values)
        self.secret_names = frozenset(secret_names)


def seal_values(values: Mapping, secret_names: Iterable[str], keyring: Keyring) -> dict:
    """``values`` with each non-empty plain string under ``secret_names`` sealed (sealed ones are kept)."""
    names = set(secret_names)
    return {
        key: keyring.seal(value)
        if key in names and isinstance(value, str) and value and not is_sealed(value)
        else value
        for key, value in values.items()
    }


def open_values(values: Any, keyring: Keyring | None) -> Any:
    """``values`` with every sealed string opened; one no key opens stays sealed (and is logged)."""
    if not isinstance(values, dict) or keyring is None:
        return values
    opened = {}
    for key, value in values.items():
        if is_sealed(value):
            try:
                value = keyring.open(value)
            except InvalidToken:
                log.warning("A sealed valve (%s) cannot be opened with the configured SLUICE_VALVES_KEY", key)
        opened[key] = value
    return opened


class SealedJSON(TypeDecorator):
    """A JSON valves column: seals the marked secrets of a ``WithSecrets`` on write, opens sealed values on read."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if isinstance(value, WithSecrets) and value.secret_names:
            keyring = current_keyring()
            if keyring is None:
                raise RuntimeError("Secret valves cannot be stored without the app's valves keyring")
            return seal_values(value, value.secret_names, keyring)
        return dict(value) if isinstance(value, WithSecrets) else value

    def process_result_value(self, value, dialect):
        return open_values(value, current_keyring())
