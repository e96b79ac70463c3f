"""Replaying what was stored, above the session it drives: rebuilt documents, the
history index, byte-level verification and recordings of inbound messages."""
