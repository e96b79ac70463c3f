"""Text operations over code points, the one conversion of positions between units,
and the text-operation client as a sans-I/O state machine."""
