"""Revoked tokens: the rules `collab token revoke` stores, and the question each connection asks.

A rule revokes one token (its ``jti``), a user's tokens issued before a time, or every
token issued before a time. "Before a time" keeps a rule from outliving its purpose: the
user whose tokens were revoked at 10:00 gets in again with a token minted at 10:01. A
token without ``iat`` cannot show it was issued after a rule's time: a user's or an
"everyone" rule revokes it. The same rules apply to connections an authenticate hook let
in without a token (their user, issued at an unknown time).

The list answers in constant time whatever the number of rules (a set of ids, the latest
time per user, one time for everyone): every upgrade asks it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

REVOKED = "the token was revoked"


@dataclass(frozen=True)
class Revocation:
    """One rule: `token_id` alone, else `user`'s tokens (or everyone's) issued before `before`."""

    before: float  # unix seconds
    token_id: str | None = None
    user: str | None = None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.before))
        if self.token_id is not None:
            return f"token {self.token_id}"
        return (
            f"tokens of {self.user!r} issued before {when}"
            if self.user
            else (f"every token issued before {when}")
        )

    def to_json(self) -> dict[str, object]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: object) -> Revocation:
        """A rule as stored; raises ValueError for anything else."""
        if not isinstance(data, dict) or set(data) - {"before", "token_id", "user"}:
            raise ValueError(f"not a revocation: {data!r:.200}")
        before, token_id, user = data.get("before"), data.get("token_id"), data.get("user")
        if isinstance(before, bool) or not isinstance(before, int | float):
            raise ValueError(f"a revocation's 'before' must be a number: {data!r:.200}")
        for value in (token_id, user):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"a revocation's id and user are strings: {data!r:.200}")
        return cls(float(before), token_id, user)


def dumps(rules: Iterable[Revocation]) -> bytes:
    return json.dumps({"revocations": [rule.to_json() for rule in rules]}, indent=1).encode()


def loads(data: bytes) -> list[Revocation]:
    """The rules of a revocations file; raises ValueError when it is not one."""
    parsed = json.loads(data) if data.strip() else {"revocations": []}
    if not isinstance(parsed, dict) or not isinstance(parsed.get("revocations"), list):
        raise ValueError('not a revocations file: {"revocations": [...]} expected')
    return [Revocation.from_json(item) for item in parsed["revocations"]]


class RevocationList:
    """Every rule known, indexed so that a question costs the same whatever their number."""

    def __init__(self) -> None:
        self.count = 0
        self._ids: set[str] = set()
        self._users: dict[str, float] = {}  # user -> tokens issued before this are revoked
        self._everyone = 0.0  # every token issued before this is revoked

    def add(self, rule: Revocation) -> None:
        self.count += 1
        if rule.token_id is not None:
            self._ids.add(rule.token_id)
        elif rule.user is not None:
            self._users[rule.user] = max(rule.before, self._users.get(rule.user, 0.0))
        else:
            self._everyone = max(rule.before, self._everyone)

    def revokes(self, token_id: str | None, user: str | None, issued: float | None) -> bool:
        """Whether a token (or a hook's access: no id, no issue time) is revoked."""
        if token_id is not None and token_id in self._ids:
            return True
        ends = [self._everyone]
        if user is not None and user in self._users:
            ends.append(self._users[user])
        end = max(ends)
        if end <= 0.0:
            return False
        return issued is None or issued < end
