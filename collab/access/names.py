"""Document names: validation, and the mapping from a name to one safe directory entry.

Names come from URLs, so they are untrusted. `storage_key` turns any valid name into a
single path component made of ``[A-Za-z0-9_%-]`` only: it can never be ``.``/``..``, contain
a separator, or name a reserved device, and two different names never share a key, even on
a case-insensitive filesystem. Unicode is not normalised: "é" (NFC) and "e\\u0301" (NFD) are
two different documents, as they are two different URLs.
"""

from __future__ import annotations

import functools
import hashlib

from collab.access.storable import first_unstorable

#: Keys longer than this are shortened with a hash (filesystems allow 255 bytes per entry).
MAX_PLAIN_KEY = 150
#: How much of the escaped name a hashed key keeps, to stay recognisable in `ls`.
HASHED_KEY_PREFIX = 80

_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-")
_HEX = "0123456789ABCDEF"
_REVERSIBLE = "n-"  # the rest of the key is the escaped name
_HASHED = "h-"  # escaped prefix, "-", then the SHA-256 of the whole name


class InvalidNameError(ValueError):
    """A document name that cannot be used; `reason` says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid document name {name[:50]!r}: {reason}")
        self.name = name
        self.reason = reason


def validate_name(name: str, max_length: int) -> str:
    """Return `name` if it can be a document name, else raise `InvalidNameError`.

    `name` is already URL-decoded. Any non-empty text of at most `max_length` characters
    (code points) is accepted except NUL and lone surrogates, which no filesystem or UTF-8
    encoder can carry.
    """
    if len(name) > max_length:
        raise InvalidNameError(name, f"longer than {max_length} characters ({len(name)})")
    _check_characters(name)
    return name


def validate_address(name: str, max_length: int) -> str:
    """Return `name` if a document may be opened or made under it from an address, else raise
    `InvalidNameError`.

    Beyond `validate_name`: a browser reads a trailing "/" and "."/".." segments of a URL
    path as "the same place" and "here"/"up", so such a name could never be opened from the
    page, and "notes/" would be a second document beside "notes". The doors that open a live
    document or make one refuse them; reading or deleting one stored earlier still works.
    """
    validate_name(name, max_length)
    if name.endswith("/"):
        raise InvalidNameError(name, f"it ends with '/' (did you mean {name.rstrip('/')!r}?)")
    if any(part in (".", "..") for part in name.split("/")):
        why = "'.' and '..' cannot be parts of a name: an address reads them as here and up"
        raise InvalidNameError(name, why)
    return name


def _check_characters(name: str) -> bytes:
    """The UTF-8 bytes of `name`, refusing empty names, NUL and lone surrogates."""
    if not name:
        raise InvalidNameError(name, "empty")
    at = first_unstorable(name)  # the rule every peer-chosen string follows
    if at is not None:
        nul = name[at] == "\x00"
        raise InvalidNameError(
            name, "contains a NUL character" if nul else f"lone surrogate at position {at}"
        )
    return name.encode("utf-8")


def _escape(data: bytes) -> str:
    return "".join(
        chr(byte) if byte in _PLAIN else f"%{_HEX[byte >> 4]}{_HEX[byte & 15]}" for byte in data
    )


@functools.lru_cache(maxsize=4096)  # on every append: escaping a name costs ~5 µs
def storage_key(name: str) -> str:
    """The directory entry for document `name` (validated for characters, not length).

    ``[a-z0-9_-]`` stay as they are; every other UTF-8 byte becomes ``%XX`` (uppercase hex),
    so "A" is "%41" and "." is "%2E". Lowercasing a key keeps it decodable (a ``%`` always
    starts exactly two hex digits), which is why keys stay distinct on case-insensitive
    filesystems. Long keys keep an escaped prefix and add the SHA-256 of the full name.
    """
    escaped = _escape(_check_characters(name))
    if len(_REVERSIBLE) + len(escaped) <= MAX_PLAIN_KEY:
        return _REVERSIBLE + escaped
    prefix = escaped[:HASHED_KEY_PREFIX]
    cut = prefix.rfind("%", len(prefix) - 2)  # do not keep half an escape
    if cut != -1:
        prefix = prefix[:cut]
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
    return f"{_HASHED}{prefix}-{digest}"


def name_from_key(key: str) -> str | None:
    """The name a reversible key stands for; None for a hashed key.

    Raises ValueError for anything `storage_key` cannot have produced.
    """
    if key.startswith(_HASHED):
        return None
    if not key.startswith(_REVERSIBLE):
        raise ValueError(f"not a storage key: {key!r}")
    out = bytearray()
    body = key[len(_REVERSIBLE) :]
    i = 0
    while i < len(body):
        char = body[i]
        if char == "%":
            digits = body[i + 1 : i + 3]
            if len(digits) != 2 or any(d not in _HEX for d in digits.upper()):
                raise ValueError(f"bad escape in storage key {key!r} at {i}")
            out.append(int(digits, 16))
            i += 3
        elif ord(char) < 128 and ord(char) in _PLAIN:
            out.append(ord(char))
            i += 1
        else:
            raise ValueError(f"unexpected character {char!r} in storage key {key!r}")
    name = out.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if storage_key(name) != key and storage_key(name).lower() != key.lower():
        raise ValueError(f"not a canonical storage key: {key!r}")
    return name
