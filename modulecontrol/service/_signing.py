"""Electronic signatures at the service: which actions are signed, and re-authentication.

21 CFR 11.200(a) asks that a signature outside one continuous session of controlled access
use both components (user name and password), and that within a session each signing use at
least one component that only its owner has. The service asks for both every time: a
bearer token proves a session, never a signature. Failed attempts go to the audit trail and
count towards the same lock-out as logins (:class:`~modulecontrol.service._auth.LoginLimiter`).

Which actions need a signature is the site's to declare (:class:`SignaturePolicy`, a small
YAML file); the defaults are those of issue 21. The recipe life-cycle steps are signatures
by nature (their meaning is what they record) and are always signed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modulecontrol.alarms import Duration
from modulecontrol.errors import ConfigError
from modulecontrol.records import RecipeBook
from modulecontrol.service._auth import LoginLimiter, verify_password
from modulecontrol.service._store import ServiceStore, User
from modulecontrol.yamlio import load_yaml, validation_problems

RECIPE_RELEASE: Final = "recipe release"
RECORD_APPROVAL: Final = "batch record approval"
INTERLOCK_BYPASS: Final = "interlock bypass"
OUT_OF_RANGE: Final = "parameter outside its normal range"
DIVERT_OVERRIDE: Final = "manual divert override"
SIGNED_ACTIONS: Final = (RECIPE_RELEASE, RECORD_APPROVAL, INTERLOCK_BYPASS, OUT_OF_RANGE,
                         DIVERT_OVERRIDE)
"""Every action a site may declare as signed (all are, by default)."""


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signed: list[str] = Field(default_factory=lambda: list(SIGNED_ACTIONS))
    two_person: list[str] = Field(default_factory=lambda: [RECIPE_RELEASE])
    normal_ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """``TAG.Assembly: [low, high]`` in the assembly's unit: a set point outside is a
    change outside its normal range (inside the assembly's hard limits, which refuse)."""
    max_bypass: Duration = 3600.0
    """The longest an interlock may be bypassed at once (``'30 min'``); longer is refused."""
    max_override: Duration = 3600.0
    """The longest the divert valve may be held by hand at once."""


@dataclass(frozen=True)
class SignaturePolicy:
    """The site's declaration of signed actions (docs/signatures.md)."""

    signed: frozenset[str] = frozenset(SIGNED_ACTIONS)
    two_person: frozenset[str] = frozenset({RECIPE_RELEASE})
    normal_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_bypass: float = 3600.0
    """Seconds: the longest interlock bypass a site allows at once."""
    max_override: float = 3600.0
    """Seconds: the longest manual divert override a site allows at once."""

    def requires(self, action: str) -> bool:
        return action in self.signed

    def outside_normal(self, target: str, value: float) -> bool:
        rng = self.normal_ranges.get(target)
        return rng is not None and not rng[0] <= value <= rng[1]

    @classmethod
    def load(cls, path: Path) -> SignaturePolicy:
        """Read a policy file; every problem is located (``file:line:col``)."""
        doc = load_yaml(path)
        try:
            raw = _PolicyFile.model_validate(doc.data if doc.data is not None else {})
        except ValidationError as exc:
            raise ConfigError(validation_problems(exc, doc, _PolicyFile)) from None
        problems = []
        for key in ("signed", "two_person"):
            for i, name in enumerate(getattr(raw, key)):
                if name not in SIGNED_ACTIONS:
                    problems.append(ConfigError.single(
                        f"'{name}' is not a signed action (one of: {', '.join(SIGNED_ACTIONS)})",
                        doc.locate((key, i))).problems[0])
        for target, (lo, hi) in raw.normal_ranges.items():
            if lo > hi:
                problems.append(ConfigError.single(
                    f"normal range of {target}: low {lo:g} is above high {hi:g}",
                    doc.locate(("normal_ranges", target))).problems[0])
        if problems:
            raise ConfigError(problems)
        return cls(frozenset(raw.signed), frozenset(raw.two_person), dict(raw.normal_ranges),
                   raw.max_bypass, raw.max_override)


class SignRefused(Exception):
    """Re-authentication failed or is not allowed; ``status`` as HTTP would say it."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


class Signer:
    """Checks a signer's user name and password at the moment of signing.

    Blocking (argon2 takes tens of milliseconds on purpose): call :meth:`authenticate` in a
    worker thread from the event loop. ``book`` records refusals in the audit trail.
    """

    def __init__(self, store: ServiceStore, book: RecipeBook,
                 limiter: LoginLimiter | None = None) -> None:
        self.store = store
        self.book = book
        self.limiter = limiter or LoginLimiter()

    def authenticate(self, username: str, password: str, *, action: str, obj: str,
                     session_user: str | None = None) -> User:
        """The signer, if ``username`` and ``password`` are right now; else :class:`SignRefused`
        (403 wrong or not the session's user, 429 locked out), audited."""
        if session_user is not None and username != session_user:
            why = f"signed as {username} in a session of {session_user}"
            self.book.record_refusal(session_user, action, obj, why)
            raise SignRefused(403, "sign as yourself",
                              f"{session_user} is logged in: a signature is its owner's own; "
                              f"{username} signs in a session of their own")
        wait = self.limiter.blocked_for(username)
        if wait > 0:
            self.book.record_refusal(username, action, obj, "too many failed attempts")
            raise SignRefused(429, "too many failed attempts",
                              f"too many failed logins or signatures for '{username}': try "
                              f"again in {wait:.0f} s")
        user = self.store.user(username)
        if not verify_password(user.pw_hash if user else None, password) or user is None:
            self.limiter.failed(username)
            self.book.record_refusal(username, action, obj, "wrong user name or password")
            # 403, not 401: the session (the token) is valid; it is the signature that fails
            raise SignRefused(403, "signature refused", "wrong user name or password")
        self.limiter.succeeded(username)
        return user
