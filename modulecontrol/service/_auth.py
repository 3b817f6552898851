"""Users, roles, scopes and tokens of the control service.

A role is a set of scopes (the shape of bluesky-httpserver's ``read:status``,
``write:queue:control``); a token carries the scopes asked for at login, cut down to the
role's, and an expiry. Passwords are argon2id hashes. There are no default credentials:
the first admin is made with ``modulecontrol user add NAME --role admin``.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from enum import StrEnum
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Scope(StrEnum):
    READ = "read:status"
    """Plant, runs, events, historian."""
    CONTROL = "write:run:control"
    """Hold, resume, stop, abort, acknowledge, answer prompts."""
    QUEUE = "write:queue"
    """Queue runs and take queued runs off the queue."""
    USERS = "admin:users"
    """Manage users (reserved for the admin role)."""
    RECIPE = "write:recipe"
    """Register recipe versions and submit them for review (sign as author)."""
    APPROVE = "sign:approve"
    """Review, approve, release and make obsolete recipe versions; approve batch records."""


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ENGINEER = "engineer"
    QA = "qa"
    ADMIN = "admin"


ROLE_SCOPES: Final[dict[Role, frozenset[Scope]]] = {
    Role.VIEWER: frozenset({Scope.READ}),
    Role.OPERATOR: frozenset({Scope.READ, Scope.CONTROL}),
    Role.ENGINEER: frozenset({Scope.READ, Scope.CONTROL, Scope.QUEUE, Scope.RECIPE}),
    Role.QA: frozenset({Scope.READ, Scope.APPROVE}),
    Role.ADMIN: frozenset(Scope),
}
"""What each role may do: a viewer watches, an operator commands the running recipe, an
engineer also decides what runs and authors recipe versions, quality assurance (qa) reviews,
approves and releases recipe versions and approves batch records, an admin does all of it
and manages users. Authoring and approving are separate roles so that the two-person rule
also holds by role (the records refuse an author approving their own version)."""

_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("not a password of anyone")
"""Verified against for unknown users, so a login takes as long whether or not the name
exists (no user enumeration by timing)."""

MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def verify_password(pw_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(pw_hash or _DUMMY, password) and pw_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def granted(role: str, asked: frozenset[str] | None) -> frozenset[str]:
    """The scopes a token gets: those asked for (all if none) that the role has."""
    have = {str(s) for s in ROLE_SCOPES[Role(role)]}
    return frozenset(have if asked is None else have & asked)


class LoginLimiter:
    """At most ``attempts`` failed logins per user name within ``window`` seconds; further
    attempts are refused without checking the password until the window has passed."""

    def __init__(self, attempts: int = 5, window: float = 60.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def blocked_for(self, name: str, now: float | None = None) -> float:
        """Seconds until ``name`` may try again (0 if it may now)."""
        t = time.monotonic() if now is None else now
        fails = self._failures.get(name)
        if not fails:
            return 0.0
        while fails and fails[0] <= t - self.window:
            fails.popleft()
        if len(fails) < self.attempts:
            return 0.0
        return fails[0] + self.window - t

    def failed(self, name: str, now: float | None = None) -> None:
        self._failures.setdefault(name, deque()).append(
            time.monotonic() if now is None else now)

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
