"""Text clients in tests: a readable name stands for a secret, and the id derived from it."""

from collab.wire import client_id_from_secret


def secret_for(name: str) -> str:
    """The hello secret of the test client called `name` (at least 16 characters)."""
    return f"test-secret-of-{name}"


def client_of(name: str) -> str:
    """The public client id the server derives for the test client called `name`."""
    return client_id_from_secret(secret_for(name))
