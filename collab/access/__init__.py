"""Who may do what: Origin and Host, signed tokens, document names, and the caps
on what a peer may consume."""
