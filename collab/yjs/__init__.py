"""The Yjs side: the y-websocket protocol, a bounds-checked update decoder, the
checks an update passes, the text's items in Yjs order, and the one pycrdt call."""
