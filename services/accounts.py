"""Accounts: creation, passwords, throttled sign-in, roles and API keys."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, replace

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, bindparam, case, func, inspect, or_, select, update
from sqlalchemy.orm import joinedload, make_transient_to_detached

from extensions import db
from models import ROLES, ApiKey, User, new_id, now
from services import audit, storable
from services import sign_in_throttle as throttle
from services.errors import NotFound, ServiceError
from services.function_search import LIKE_ESCAPE, MAX_PAGE, _positive_int, escape_like
from services.prepared import PreparedSelect

_hasher = PasswordHasher()
# Verified against when the email is unknown, so that a miss costs as long as a wrong password. Written out rather
# than hashed at import: hashing took half a second of every server start (a test checks it has `_hasher`'s
# parameters, so that the miss still costs the same). Its password is random and thrown away.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$7GQBc2rGzDH9JPwje7+V/A$ll+IeqMl1aNIbAiNEHLZXM29ogm67cBRK6W6meqtfZ0"
)

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
MIN_PASSWORD_LENGTH = 8
API_KEY_PREFIX = "sk-"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def validate_account(name: str, email: str, password: str | None, role: str) -> dict[str, str]:
    """Field errors for an account form, keyed by field name; empty when everything is fine."""
    errors: dict[str, str] = {}
    if not (name or "").strip():
        errors["name"] = "Enter a name."
    elif len(name.strip()) > 256:
        errors["name"] = "The name is longer than 256 characters."
    if not EMAIL_RE.match(normalise_email(email)):
        errors["email"] = "Enter a valid email address."
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        errors["password"] = f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if role not in ROLES:
        errors["role"] = f"The role must be one of: {', '.join(ROLES)}."
    return errors


class AccountError(ServiceError):
    """An account form that does not validate; ``fields`` holds one message per field."""

    def __init__(self, fields: dict[str, str]):
        super().__init__(" ".join(fields.values()), fields=fields)
        self.fields = fields


def create_user(name: str, email: str, password: str, role: str = "user") -> User:
    fields = validate_account(name, email, password, role)
    email = normalise_email(email)
    if not fields and db.session.scalar(select(User.id).where(User.email == email)):
        fields["email"] = "An account with this email already exists."
    if fields:
        raise AccountError(fields)
    user = User(id=new_id(), name=name.strip(), email=email, role=role, password_hash=hash_password(password))
    db.session.add(user)
    actor = audit.current_actor()
    # Nobody signed in creates an account in the console only for themself: the first admin, or a sign-up.
    by = actor.user if actor.user is not None or actor.face != "console" else user
    audit.record("user.created", "user", user.id, {"role": role}, by=by)
    db.session.commit()
    return user


def has_admin() -> bool:
    return db.session.scalar(select(func.count()).select_from(User).where(User.role == "admin")) > 0


def has_users() -> bool:
    # The sign-in page asks on every view: the first row answers, where a count would read every account.
    return db.session.scalar(select(User.id).limit(1)) is not None


def end_sessions(user: User) -> None:
    """End every signed-in browser session of ``user`` (API keys are not sessions: they stay valid)."""
    db.session.execute(update(User).where(User.id == user.id).values(session_epoch=User.session_epoch + 1))
    db.session.commit()


def create_first_admin(name: str, email: str, password: str) -> User:
    """Create the first admin account; refused once any account exists."""
    if has_users():
        raise ServiceError("Sluice already has an administrator. Sign in instead.", status=403)
    return create_user(name, email, password, role="admin")


@dataclass
class SignInResult:
    user: User | None
    error: str | None = None


def authenticate(
    email: str, password: str, max_failures: int, lock_seconds: int, client: str | None = None
) -> SignInResult:
    """Check a password, throttled per client and per address (``services.sign_in_throttle`` says how and why).

    ``client`` is the caller's network address. An unknown address costs a password check like a known one, and
    is throttled like one: neither the answers nor their timing tell a guesser which addresses have accounts.
    """
    address = normalise_email(email)
    by_client = throttle.client_key(client)
    by_address = throttle.address_key(address)
    # A client without misses of its own is not held up by the address's misses: those are someone else's.
    client_missed = throttle.has_misses(by_client)
    wait, client_claim = throttle.claim(by_client, max_failures, lock_seconds)
    if wait:
        _record_failure(address, "throttled")  # made to wait, password unchecked
        db.session.commit()
        return SignInResult(None, throttle.wait_message(wait, "from your network"))
    address_claim = None
    if client_missed:
        wait, address_claim = throttle.claim(by_address, max_failures, lock_seconds)
        if wait:
            _record_failure(address, "throttled")  # made to wait, password unchecked
            db.session.commit()
            return SignInResult(None, throttle.wait_message(wait, "for this email address"))
    user = db.session.scalar(select(User).where(User.email == address))
    if user is None:
        try:
            _hasher.verify(_DUMMY_HASH, password or "x")
        except VerificationError:
            pass
    if user is None or not check_password(user, password or ""):
        _record_failure(address, "incorrect")
        if address_claim is None:
            throttle.add_miss(by_address, max_failures, lock_seconds)
        db.session.commit()
        return SignInResult(None, "The email or password is incorrect.")
    throttle.clear(by_address)
    throttle.give_back(client_claim)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    audit.record("user.signed_in", "user", user.id, by=user)
    db.session.commit()
    return SignInResult(user)


def _record_failure(address: str, reason: str) -> None:
    """A failed sign-in names the address tried, never an account: whether one has it is not the trail's to say."""
    tried = (
        address[:320] if not storable.text_problem(address) else None
    )  # NUL or a lone surrogate: unstorable
    audit.record("user.sign_in_failed", "user", None, {"reason": reason}, by=None, email=tried)


def get_user(user_id: str) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("This user does not exist.")
    return user


# --- the users page: accounts a page at a time -----------------------------------------------------------------

USERS_PER_PAGE = 50
MAX_USERS_PER_PAGE = 200
ROLE_FILTERS = ROLES  # what the page's role filter offers besides "any"


@dataclass(frozen=True)
class UsersQuery:
    """What the users page shows: words every account shown has in its name or email (`q`), one role or any,
    and which page. Read leniently from the query string, like the functions list's."""

    q: str = ""
    role: str = ""
    page: int = 1
    per_page: int = USERS_PER_PAGE

    @classmethod
    def from_args(cls, args) -> UsersQuery:
        role = args.get("role", "")
        return cls(
            q=" ".join(str(args.get("q", "")).split())[:200],
            role=role if role in ROLE_FILTERS else "",
            page=_positive_int(args.get("page"), 1, MAX_PAGE),
            per_page=_positive_int(args.get("per_page"), USERS_PER_PAGE, MAX_USERS_PER_PAGE),
        )

    def to_args(self, **changes) -> dict:
        """Query-string arguments that reproduce this query (with ``changes``), omitting the defaults."""
        query = replace(self, **changes)
        args: dict = {}
        if query.q:
            args["q"] = query.q
        if query.role:
            args["role"] = query.role
        if query.page != 1:
            args["page"] = query.page
        if query.per_page != USERS_PER_PAGE:
            args["per_page"] = query.per_page
        return args

    @property
    def is_filtered(self) -> bool:
        return bool(self.q or self.role)


@dataclass
class UsersPage:
    users: list[User]
    matching: int  # accounts the query finds, on every page
    total: int  # every account
    pending: int  # every account waiting for approval
    pages: int


def search_users(query: UsersQuery) -> UsersPage:
    """One page of accounts: those waiting for approval first (someone has to act on them), then the others; each
    part by creation time, then email. Filtered by a role, only that role's accounts, in the same order.

    At most three statements whatever the number of accounts: the counts (one pass over the table), then the
    page's part of each list, read in the order of an index and stopped at the page's end."""
    words = _words_found(query.q)
    is_pending = User.role == "pending"
    filtered = query.is_filtered
    found = and_(*words, *([User.role == query.role] if query.role else [])) if filtered else None
    counts = db.session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((is_pending, 1), else_=0)), 0),
            *(
                (
                    func.coalesce(func.sum(case((found, 1), else_=0)), 0),
                    func.coalesce(func.sum(case((and_(found, is_pending), 1), else_=0)), 0),
                )
                if filtered
                else ()
            ),
        ).select_from(User)
    ).one()
    total, pending = int(counts[0]), int(counts[1])
    matching, matching_pending = (int(counts[2]), int(counts[3])) if filtered else (total, pending)
    start = (query.page - 1) * query.per_page
    end = start + query.per_page

    def part(condition, offset: int, limit: int) -> list[User]:
        if limit <= 0:
            return []
        statement = select(User).where(condition, *words).order_by(User.created_at, User.email)
        return list(db.session.scalars(statement.offset(offset).limit(limit)))

    if query.role:
        users = part(User.role == query.role, start, query.per_page)
    else:
        users = part(is_pending, start, min(end, matching_pending) - start)
        users += part(
            User.role != "pending", max(0, start - matching_pending), end - max(start, matching_pending)
        )
    return UsersPage(
        users=users,
        matching=matching,
        total=total,
        pending=pending,
        pages=max(1, -(-matching // query.per_page)),
    )


def _words_found(text: str) -> list:
    """Conditions that every word of ``text`` appears in the account's name or email: "ann example.org" finds Ann
    at example.org."""
    conditions = []
    for term in text.lower().split():
        pattern = f"%{escape_like(term)}%"
        conditions.append(
            or_(
                func.lower(User.name).like(pattern, escape=LIKE_ESCAPE),
                func.lower(User.email).like(pattern, escape=LIKE_ESCAPE),
            )
        )
    return conditions


def change_role(acting: User, user_id: str, role: str) -> User:
    if role not in ROLES:
        raise ServiceError(f"The role must be one of: {', '.join(ROLES)}.")
    user = get_user(user_id)
    if user.id == acting.id and role != "admin":
        raise ServiceError("You cannot remove your own admin role.")
    if user.role != role:
        action = "user.approved" if user.role == "pending" else "user.role_changed"
        audit.record(action, "user", user.id, {"from": user.role, "to": role})
    user.role = role
    db.session.commit()
    return user


def delete_user(acting: User, user_id: str) -> None:
    user = get_user(user_id)
    if user.id == acting.id:
        raise ServiceError("You cannot delete your own account.")
    audit.record("user.deleted", "user", user.id, {"email": user.email, "name": user.name})
    db.session.delete(user)
    db.session.commit()


# --- API keys ---------------------------------------------------------------------------------


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(user: User, name: str = "", *, connection: bool = False) -> tuple[ApiKey, str]:
    """Create a key and return it with its plain text, which is never stored and never shown again.

    A ``connection`` key (admins only) is for an Open WebUI connection: the gateway lets it act for the user a
    request names, and the JSON API refuses it.
    """
    if connection and not user.is_admin:
        raise ServiceError("Only an administrator can make a connection key.", status=403, kind="forbidden")
    plain = API_KEY_PREFIX + secrets.token_urlsafe(32)  # 43 characters of randomness
    key = ApiKey(
        id=new_id(),
        user_id=user.id,
        name=(name or "").strip()[:128],
        key_hash=_key_digest(plain),
        prefix=plain[:10],
        is_connection=connection,
    )
    db.session.add(key)
    audit.record(
        "api_key.created",
        "api_key",
        key.id,
        {"name": key.name, "owner": user.email, "connection": connection},
    )
    db.session.commit()
    return key, plain


def api_key_for(plain: str) -> ApiKey | None:
    """The key record of a presented key (its ``user`` the owner), or None for an unknown, revoked or malformed key."""
    digest = key_digest(plain)
    if digest is None:
        return None
    # The owner comes in the same query: every API request needs it, and a lazy load would be a second round trip.
    key = db.session.scalar(select(ApiKey).options(joinedload(ApiKey.user)).where(ApiKey.key_hash == digest))
    if key is None or key.is_revoked:
        return None
    # Written at most once a minute so that busy scripts do not turn every read into a write.
    if key.last_used_at is None or now() - key.last_used_at > 60:
        key.last_used_at = now()
        db.session.commit()
    return key


# The owner's every column comes with the key, in one prepared read (``services.prepared``): this runs before every
# API request, and through the ORM (statement, joined eager load, identity map) it cost several times the query.
# The owner is returned as a detached snapshot (``_caller_snapshot``).
_USER_COLUMNS = tuple(User.__table__.columns)
_USER_MANAGER = inspect(User).class_manager
_KEY_COLUMNS = (ApiKey.id, ApiKey.is_connection, ApiKey.revoked_at, ApiKey.last_used_at)
# The same columns as a subquery that an API read joins its own rows to (``key_owner_of``), so that the caller and
# what it asked for come in one round trip; labelled, since the key's, the owner's and the read's names overlap.
KEY_OWNER = (
    select(
        *(column.label(f"key_{column.key}") for column in _KEY_COLUMNS),
        *(column.label(f"owner_{column.key}") for column in _USER_COLUMNS),
    )
    .join(User, User.id == ApiKey.user_id)
    .where(ApiKey.key_hash == bindparam("digest"))
    .subquery("key_owner")
)
KEY_OWNER_WIDTH = len(KEY_OWNER.c)  # a joined read's row starts with these values
# Whether the key may call the API at all (not revoked, not a connection key, its owner approved), for a join to
# read nothing for a caller that is turned away anyway.
KEY_OWNER_MAY_CALL = and_(
    KEY_OWNER.c.key_revoked_at.is_(None),
    KEY_OWNER.c.key_is_connection.is_(False),
    KEY_OWNER.c.owner_role != "pending",
)
KEY_OWNER_IS_ADMIN = and_(KEY_OWNER_MAY_CALL, KEY_OWNER.c.owner_role == "admin")
_KEY_WITH_OWNER = PreparedSelect(select(*KEY_OWNER.c))


def key_digest(plain: str) -> str | None:
    """What a presented key is looked up by, or None when it cannot be a key (so the database is not asked)."""
    if not plain.startswith(API_KEY_PREFIX) or len(plain) < len(API_KEY_PREFIX) + 32:
        return None
    return _key_digest(plain)


def user_for_api_key(plain: str) -> User | None:
    """The owner of an ordinary key, or None for an unknown, revoked or malformed key or a connection key (which
    only the gateway takes)."""
    digest = key_digest(plain)
    return owner_for_digest(digest) if digest is not None else None


def owner_for_digest(digest: str) -> User | None:
    """``user_for_api_key`` for a key's digest (``key_digest``)."""
    row = _KEY_WITH_OWNER.first(digest=digest)
    return key_owner_of(row) if row is not None else None


def key_owner_of(row) -> User | None:
    """The caller a row of ``KEY_OWNER`` names (its first ``KEY_OWNER_WIDTH`` values; a read joined to it may
    follow), or None when the key is revoked or a connection key. Notes the key's use, at most once a minute."""
    key_id, is_connection, revoked_at, last_used_at, *user_values = row[:KEY_OWNER_WIDTH]
    if revoked_at is not None or is_connection:
        return None
    if last_used_at is None or now() - last_used_at > 60:  # as api_key_for: at most one write a minute
        db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now()))
        db.session.commit()
    return _caller_snapshot(dict(zip((column.key for column in _USER_COLUMNS), user_values, strict=True)))


def _caller_snapshot(values: dict) -> User:
    """The caller's account as read with the key, detached from the session.

    An API request only reads its caller (role, id, name, email for the audit trail); attaching it to the session
    as if loaded cost as much as the key's query. Nothing writes through it: to change the account, load it
    (``db.session.get``) or ``merge`` it, which its identity allows.
    """
    # As the ORM's own loading does: the values go straight into the instance's dict, without the constructor's
    # attribute events (which recorded each as a change, for make_transient_to_detached to reset).
    user = _USER_MANAGER.new_instance()
    user.__dict__.update(values)
    make_transient_to_detached(user)
    return user


def list_api_keys(user: User) -> list[ApiKey]:
    return list(
        db.session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at.desc()))
    )


def revoke_api_key(user: User, key_id: str) -> ApiKey:
    key = db.session.get(ApiKey, key_id)
    if key is None or key.user_id != user.id:
        raise NotFound("This API key does not exist.")
    if key.revoked_at is None:
        key.revoked_at = now()
        audit.record("api_key.revoked", "api_key", key.id, {"name": key.name, "owner": user.email})
        db.session.commit()
    return key
