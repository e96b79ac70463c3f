"""pycrdt's two traps, handled once: the one way to apply an untrusted Yjs update to a
pycrdt document, and observer callbacks that do not keep their object alive."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

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


def weakly(method: Callable[..., None]) -> Callable[..., None]:
    """A callback that does not keep its object alive.

    pycrdt holds observer callbacks on the Rust side, where Python's garbage collector
    cannot see the cycle document -> Text -> callback -> document: a bound method there
    kept every Document (and its pycrdt doc) alive forever after the session was dropped
    (found by bench/fuzz.py: ~16 KB per session, 744 MB over 250,000 inputs).
    """
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        target = ref()
        if target is not None:
            target(*args)

    return call
