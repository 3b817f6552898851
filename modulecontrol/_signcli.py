"""``modulecontrol recipe ...`` and ``modulecontrol records approve``: the recipe life cycle
and batch record approval from a terminal, with electronic signatures.

Why here and not in ``recipe/`` or ``records/``: signing needs the service's users (who may
sign, their password checked at the moment of signing), which are above those layers. The
password is always asked for with a hidden prompt, never taken from the command line or the
environment (a signature is its owner's act at that moment; docs/signatures.md).
Failed attempts are audited and count towards a lock-out read back from the audit trail, so
a script cannot guess by starting the command again and again.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from modulecontrol.records import RecipeBook, RecipeVersion, Signature
    from modulecontrol.service import LoginLimiter, Signer

recipe_app = typer.Typer(no_args_is_help=True,
                         help="Recipe versions: add, submit, review, approve, release, "
                              "obsolete, list, show, diff.")
records_app = typer.Typer(no_args_is_help=True,
                          help="Sign batch records: approve a run.")

Db = Annotated[Path, typer.Option("--db", help="Records database (also holds the users).")]
User = Annotated[str, typer.Option("--user", help="Your user name (the password is asked for).")]
Reason = Annotated[str, typer.Option("--reason", help="What you sign and why.")]
Key = Annotated[Path | None, typer.Option("--records-key", help="Records key file "
                                          "(default <db>.key).")]
Anchor = Annotated[Path | None, typer.Option("--anchor", help="Anchor file (default "
                                             "<db>.anchor).")]
DEFAULT_DB = Path("runs/modulecontrol.db")
ATTEMPTS = 3
"""Password prompts per command before it gives up (each failure is audited)."""


def _book(db: Path, key: Path | None, anchor: Path | None) -> RecipeBook:
    from modulecontrol.records import RecipeBook

    return RecipeBook(db, key_path=key, anchor_path=anchor)


UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""The audit trail's time stamps (``t_utc``): fixed width, so they compare as text."""


def limiter_from_audit(db: Path, user: str) -> LoginLimiter:
    """A lock-out seeded with this user's failed logins and signatures of the last window,
    as the audit trail records them (the service's and earlier commands' alike)."""
    import time

    from modulecontrol.records import AuditTrail
    from modulecontrol.service import LoginLimiter

    limiter = LoginLimiter()
    now_wall, now = datetime.now(UTC), time.monotonic()
    since = (now_wall - timedelta(seconds=limiter.window)).strftime(UTC_FORMAT)
    with AuditTrail(db) as trail:
        for e in trail.entries(user=user, since_utc=since):
            if not e.action.startswith(("refused: sign", "refused: login")):
                continue
            if "wrong user name or password" not in e.reason:
                continue
            age = (now_wall - datetime.strptime(e.t_utc, UTC_FORMAT)
                   .replace(tzinfo=UTC)).total_seconds()
            if age < limiter.window:
                limiter.failed(user, now - age)
    return limiter


def _signer(db: Path, book: RecipeBook, user: str) -> Signer:
    from modulecontrol.service import ServiceStore, Signer

    return Signer(ServiceStore(db), book, limiter_from_audit(db, user))


def _authenticate(signer: Signer, user: str, action: str, obj: str, scope: str) -> tuple[str,
                                                                                          str]:
    """Ask for the password (hidden) until it is right, at most :data:`ATTEMPTS` times; the
    signer's user name and printed name. Exits 1 when refused, 2 when the role may not."""
    from modulecontrol.service import ROLE_SCOPES, Role, SignRefused

    for _ in range(ATTEMPTS):
        password = typer.prompt(f"password for {user} (signing: {action})", hide_input=True,
                                default="", show_default=False)
        try:
            u = signer.authenticate(user, password, action=action, obj=obj)
        except SignRefused as exc:
            print(exc.detail, file=sys.stderr)
            if exc.status == 429:
                raise typer.Exit(1) from None
            continue
        if scope not in {str(s) for s in ROLE_SCOPES[Role(u.role)]}:
            signer.book.record_refusal(u.name, action, obj, f"role {u.role} lacks {scope}")
            print(f"{u.name} ({u.role}) may not sign {action}: it needs {scope}",
                  file=sys.stderr)
            raise typer.Exit(2)
        return u.name, u.printed_name
    print(f"not signed: {ATTEMPTS} wrong passwords", file=sys.stderr)
    raise typer.Exit(1)


def _fail(exc: Exception) -> typer.Exit:
    print(str(exc), file=sys.stderr)
    return typer.Exit(2)


def _print_version(rv: RecipeVersion, sigs: list[Signature]) -> None:
    print(f"{rv.id}  {rv.name}@{rv.version}  {rv.state.value}  author {rv.author}  "
          f"sha256 {rv.content_hash[:16]}")
    for s in sigs:
        print(f"    signed {s.t_utc} by {s.printed_name} ({s.user}): {s.meaning} - "
              f"{s.action}: {s.reason}")


@recipe_app.command("add")
def add(file: Annotated[Path, typer.Argument(help="Recipe YAML file.")], user: User,
        db: Db = DEFAULT_DB, records_key: Key = None, anchor: Anchor = None) -> None:
    """Register a recipe file as a new draft version (you are its author)."""
    from modulecontrol.errors import ConfigError
    from modulecontrol.recipe import recipe_from_doc
    from modulecontrol.records import RecordsError
    from modulecontrol.service import Scope
    from modulecontrol.yamlio import load_yaml

    try:
        recipe = recipe_from_doc(load_yaml(file))
    except ConfigError as exc:
        for p in exc.problems:
            print(str(p), file=sys.stderr)
        raise typer.Exit(2) from None
    with _book(db, records_key, anchor) as book:
        signer = _signer(db, book, user)
        name, _ = _authenticate(signer, user, "recipe add", str(file), str(Scope.RECIPE))
        try:
            rv = book.register(recipe.name, recipe.version, file.read_text(encoding="utf-8"),
                               name)
        except RecordsError as exc:
            raise _fail(exc) from None
        _print_version(rv, [])


def _step(action: str) -> None:
    from modulecontrol.records import LIFECYCLE

    meaning = LIFECYCLE[action].meaning.value

    def step(ref: Annotated[str, typer.Argument(help="Version: ID or NAME@VERSION.")],
             user: User, reason: Reason, db: Db = DEFAULT_DB, records_key: Key = None,
             anchor: Anchor = None) -> None:
        from modulecontrol.records import RecordsError
        from modulecontrol.service import Scope

        scope = Scope.RECIPE if action == "submit" else Scope.APPROVE
        with _book(db, records_key, anchor) as book:
            try:
                rv = book.version(ref)
            except RecordsError as exc:
                raise _fail(exc) from None
            signer = _signer(db, book, user)
            name, printed = _authenticate(signer, user, f"recipe {action}", rv.object,
                                          str(scope))
            try:
                rv, _sig = book.transition(rv.id, action, user=name, printed_name=printed,
                                           reason=reason)
            except RecordsError as exc:
                book.record_refusal(name, f"recipe {action}", rv.object, str(exc))
                raise _fail(exc) from None
            _print_version(rv, book.signatures(rv.object))

    step.__doc__ = (f"Sign '{action}' of a recipe version (meaning: {meaning}); asks for "
                    "your password.")
    recipe_app.command(action)(step)


for _action in ("submit", "review", "reject", "approve", "release", "obsolete"):
    _step(_action)


@recipe_app.command("list")
def list_cmd(name: Annotated[str | None, typer.Argument(help="Only this recipe.")] = None,
             db: Db = DEFAULT_DB) -> None:
    """Recipe versions with their state."""
    with _book(db, None, None) as book:
        for rv in book.versions(name):
            _print_version(rv, [])


@recipe_app.command("show")
def show(ref: Annotated[str, typer.Argument(help="Version: ID or NAME@VERSION.")],
         db: Db = DEFAULT_DB) -> None:
    """A version with its signatures and its text."""
    from modulecontrol.records import RecordsError

    with _book(db, None, None) as book:
        try:
            rv = book.version(ref)
        except RecordsError as exc:
            raise _fail(exc) from None
        _print_version(rv, book.signatures(rv.object))
        print(rv.text, end="")


def _text(ref: str, db: Path) -> tuple[str, str]:
    from modulecontrol.records import RecordsError

    p = Path(ref)
    if p.is_file():
        return p.read_text(encoding="utf-8"), str(p)
    if not db.exists():
        raise _fail(RecordsError(f"'{ref}' is no file, and there is no database {db}"))
    with _book(db, None, None) as book:
        try:
            rv = book.version(ref)
        except RecordsError as exc:
            raise _fail(exc) from None
        return rv.text, f"{rv.name}@{rv.version}"


@recipe_app.command("diff")
def diff(a: Annotated[str, typer.Argument(help="Recipe file, or version ID / NAME@VERSION.")],
         b: Annotated[str, typer.Argument(help="Recipe file, or version ID / NAME@VERSION.")],
         db: Db = DEFAULT_DB) -> None:
    """What changed from A to B in recipe terms: steps, parameters, limits, alarms,
    interlocks, divert. Exit 0 when none, 1 when something changed."""
    from modulecontrol.errors import ConfigError
    from modulecontrol.recipe import diff_recipe_texts

    (ta, na), (tb, nb) = _text(a, db), _text(b, db)
    try:
        changes = diff_recipe_texts(ta, tb, na, nb)
    except ConfigError as exc:
        for p in exc.problems:
            print(str(p), file=sys.stderr)
        raise typer.Exit(2) from None
    for c in changes:
        print(c)
    if not changes:
        print(f"no change in recipe terms between {na} and {nb}")
    raise typer.Exit(1 if changes else 0)


@records_app.command("approve")
def approve(run: Annotated[int, typer.Argument(help="Run id (modulecontrol runs).")],
            user: User, reason: Reason, db: Db = DEFAULT_DB,
            meaning: Annotated[str, typer.Option("--meaning", help="approved, reviewed or "
                                                 "'responsible for'.")] = "approved",
            records_key: Key = None, anchor: Anchor = None) -> None:
    """Sign a finished run's batch record; asks for your password."""
    from modulecontrol.records import Meaning, RecordsError
    from modulecontrol.service import Scope

    try:
        sense = Meaning(meaning)
    except ValueError:
        raise _fail(ValueError(f"--meaning: '{meaning}' is not one of "
                               f"{', '.join(m.value for m in Meaning)}")) from None
    with _book(db, records_key, anchor) as book:
        signer = _signer(db, book, user)
        name, printed = _authenticate(signer, user, "batch record approval", f"run:{run}",
                                      str(Scope.APPROVE))
        try:
            sig = book.sign_run(run, user=name, printed_name=printed, meaning=sense,
                                reason=reason)
        except RecordsError as exc:
            raise _fail(exc) from None
    print(f"run {run} signed by {sig.printed_name} ({sig.user}) at {sig.t_utc}: "
          f"{sig.meaning}; record sha256 {sig.signed_hash[:16]}")
