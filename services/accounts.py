"""Accounts: creation, passwords, sign-in with lockout, roles and API keys."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from extensions import db
from models import ROLES, ApiKey, SignInFailures, User, now
from services.errors import NotFound, ServiceError

_hasher = PasswordHasher()
# Verified against when the email is unknown, so that a miss costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("sluice-dummy-password")

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
    user = User(name=name.strip(), email=email, role=role, password_hash=hash_password(password))
    db.session.add(user)
    db.session.commit()
    return user


def has_admin() -> bool:
    return db.session.scalar(select(func.count()).select_from(User).where(User.role == "admin")) > 0


def has_users() -> bool:
    return db.session.scalar(select(func.count()).select_from(User)) > 0


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


# Counts of misses older than this are forgotten, so addresses typed once by strangers do not pile up.
FAILURES_KEPT_SECONDS = 24 * 3600


def authenticate(email: str, password: str, max_failures: int, lock_seconds: int) -> SignInResult:
    """Check a password; after ``max_failures`` misses in a row the address is locked for a while.

    Misses are counted per address, whether or not an account has it, and an unknown address costs a password
    check like a known one: neither the answer nor its timing tells a guesser which addresses have accounts. Each
    attempt is counted before its password is checked, so attempts sent all at once cannot check more than
    ``max_failures`` passwords between two locks.
    """
    address = normalise_email(email)
    key = hashlib.sha256(address.encode()).hexdigest()
    locked = _lock_message(key)
    if locked:
        return SignInResult(None, locked)
    _end_expired_lock(key)
    attempt = _count_attempt(key)
    if attempt > max_failures:  # more attempts arrived together than the limit allows: refused unchecked
        _lock(key, lock_seconds)
        return SignInResult(None, _lock_message(key) or "Too many failed sign-ins. Try again later.")
    user = db.session.scalar(select(User).where(User.email == address))
    if user is None:
        try:
            _hasher.verify(_DUMMY_HASH, password or "x")
        except VerificationError:
            pass
    if user is None or not check_password(user, password or ""):
        if attempt >= max_failures:
            _lock(key, lock_seconds)  # the lock starts at the miss that reaches the limit
        return SignInResult(None, "The email or password is incorrect.")
    db.session.execute(delete(SignInFailures).where(SignInFailures.email_hash == key))
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    db.session.commit()
    return SignInResult(user)


def _lock_message(key: str) -> str | None:
    moment = now()
    locked_until = db.session.scalar(
        select(SignInFailures.locked_until).where(SignInFailures.email_hash == key)
    )
    if not locked_until or locked_until <= moment:
        return None
    minutes = max(1, (locked_until - moment + 59) // 60)
    return f"Too many failed sign-ins. Try again in {minutes} minute{'s' * (minutes > 1)}."


def _count_attempt(key: str) -> int:
    """Count one more attempt for the address in a single statement, and say which attempt this is."""
    moment = now()
    counted = db.session.execute(
        update(SignInFailures)
        .where(SignInFailures.email_hash == key)
        .values(failures=SignInFailures.failures + 1, updated_at=moment)
        .returning(SignInFailures.failures)
    ).scalar()
    if counted is None:
        db.session.execute(
            delete(SignInFailures).where(SignInFailures.updated_at < moment - FAILURES_KEPT_SECONDS)
        )
        db.session.add(SignInFailures(email_hash=key, failures=1, updated_at=moment))
        try:
            db.session.commit()
        except IntegrityError:  # another request added the first row just now: count on it instead
            db.session.rollback()
            return _count_attempt(key)
        return 1
    db.session.commit()
    return int(counted)


def _lock(key: str, lock_seconds: int) -> None:
    """Lock the address for ``lock_seconds``.

    The count is left as it is until the lock ends: reset now, attempts already past the lock check would each
    get a fresh budget.
    """
    db.session.execute(
        update(SignInFailures)
        .where(SignInFailures.email_hash == key)
        .values(locked_until=now() + lock_seconds)
    )
    db.session.commit()


def _end_expired_lock(key: str) -> None:
    """After a lock has run out, the address starts again with a full set of attempts."""
    ended = db.session.execute(
        update(SignInFailures)
        .where(SignInFailures.email_hash == key, SignInFailures.locked_until <= now())
        .values(failures=0, locked_until=None)
    ).rowcount
    if ended:
        db.session.commit()


def get_user(user_id: str) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("This user does not exist.")
    return user


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.created_at, User.email)))


def change_role(acting: User, user_id: str, role: str) -> User:
    if role not in ROLES:
        raise ServiceError(f"The role must be one of: {', '.join(ROLES)}.")
    user = get_user(user_id)
    if user.id == acting.id and role != "admin":
        raise ServiceError("You cannot remove your own admin role.")
    user.role = role
    db.session.commit()
    return user


def delete_user(acting: User, user_id: str) -> None:
    user = get_user(user_id)
    if user.id == acting.id:
        raise ServiceError("You cannot delete your own account.")
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
        user_id=user.id,
        name=(name or "").strip()[:128],
        key_hash=_key_digest(plain),
        prefix=plain[:10],
        is_connection=connection,
    )
    db.session.add(key)
    db.session.commit()
    return key, plain


def api_key_for(plain: str) -> ApiKey | None:
    """The key record of a presented key (its ``user`` the owner), or None for an unknown, revoked or malformed key."""
    if not plain.startswith(API_KEY_PREFIX) or len(plain) < len(API_KEY_PREFIX) + 32:
        return None
    # The owner comes in the same query: every API request needs it, and a lazy load would be a second round trip.
    key = db.session.scalar(
        select(ApiKey).options(joinedload(ApiKey.user)).where(ApiKey.key_hash == _key_digest(plain))
    )
    if key is None or key.is_revoked:
        return None
    # Written at most once a minute so that busy scripts do not turn every read into a write.
    if key.last_used_at is None or now() - key.last_used_at > 60:
        key.last_used_at = now()
        db.session.commit()
    return key


def user_for_api_key(plain: str) -> User | None:
    """The owner of an ordinary key, or None for an unknown, revoked or malformed key or a connection key (which
    only the gateway takes)."""
    key = api_key_for(plain)
    if key is None or key.is_connection:
        return None
    return key.user


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
        db.session.commit()
    return key
