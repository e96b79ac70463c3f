"""The one way to apply an untrusted Yjs update to a pycrdt document."""

from __future__ import annotations

from pycrdt import Doc


class InvalidUpdateError(ValueError):
    """pycrdt refused the update (it may also have panicked: see `apply_update`)."""


def apply_update(doc: Doc, update: bytes) -> None:
    """Apply `update` to `doc`; any failure is an `InvalidUpdateError`.

    pycrdt raises ValueError for most bad updates, but some make the Rust side panic, and
    pyo3's PanicException derives from BaseException: `except Exception` misses it.
    """
    try:
        doc.apply_update(update)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        raise InvalidUpdateError(str(error) or type(error).__name__) from None
