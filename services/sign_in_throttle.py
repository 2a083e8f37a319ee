"""Sign-in throttling: growing waits per client and per email address, so that guessing is slow for an attacker
and a real user is never kept out.

Two threats, two counters (rows of ``sign_in_failures``, each keyed by a SHA-256 so that nothing typed into the form
is kept in clear):

- **Spraying** (one client trying a password or two on many addresses): the *client's* counter counts its misses
  on every address. After ``free`` misses, each further attempt from that client waits: 15 s, then twice as long
  after each miss, up to ``longest`` (``SLUICE_SIGNIN_LOCK_SECONDS``). A success does not reset it (an attacker's
  own account must not buy fresh guesses); it is forgotten after an hour without a miss. A client is an IPv4
  address or an IPv6 /64 (one host gets a whole /64). Behind a proxy the client is the proxy unless
  ``SLUICE_TRUSTED_PROXIES`` says how many proxies set ``X-Forwarded-For``: the header is ignored otherwise, so
  that an attacker cannot name a fresh client in each request.
- **Guessing one account, or keeping its owner out**: the *address's* counter counts misses on that address from
  every client, whether or not an account has it (so the answers never tell which addresses have accounts). After
  ``free`` misses, an attempt on the address from a client that has misses of its own waits as above; a client
  without recent misses is not held up by the address. So the real user, at home, signs in at once however hard the
  address is attacked, while the attacker's client, having missed, waits. Many clients each get a single free guess
  at the address, and ``free`` guesses over all addresses. A success clears the address's counter.

An attempt is counted (and the wait it leads to is set) before its password is checked, by a compare-and-set on the
row, so attempts sent all at once check at most ``free`` passwords before the first wait, then one per wait. An
attempt that comes while its wait runs is refused unchecked and not counted, so hammering does not lengthen the
wait of the real user. A success gives back the attempt it was counted as.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from extensions import db
from models import SignInFailures
from models.base import now

FIRST_WAIT_SECONDS = 15
QUIET_SECONDS = 3600  # misses of a counter with none for this long are forgotten
KEPT_SECONDS = 24 * 3600  # rows untouched for this long are deleted


def address_key(address: str) -> str:
    return hashlib.sha256(address.encode()).hexdigest()


def client_key(client: str | None) -> str:
    """The key of a client's counter: its IPv4 address or its IPv6 /64 (anything else as given)."""
    text = (client or "").strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        network = text
    else:
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        network = str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
    return hashlib.sha256(f"client:{network}".encode()).hexdigest()


def wait_after(misses: int, free: int, longest: int) -> int:
    """Seconds the next attempt waits after ``misses`` misses: none within ``free``, then 15 s doubling."""
    if misses < free:
        return 0
    return min(longest, FIRST_WAIT_SECONDS * 2 ** min(misses - free, 30))


@dataclass
class Counter:
    key: str
    misses: int
    waits_until: int | None

    def waiting(self, moment: int) -> int:
        """Seconds left to wait, 0 when an attempt may go ahead."""
        return max(0, (self.waits_until or 0) - moment)


def read(key: str, moment: int) -> tuple[Counter, tuple | None]:
    """The counter as it stands (a quiet one reads as empty), and the row's values for a compare-and-set."""
    row = db.session.execute(
        select(SignInFailures.failures, SignInFailures.locked_until, SignInFailures.updated_at).where(
            SignInFailures.email_hash == key
        )
    ).first()
    if row is None:
        return Counter(key, 0, None), None
    misses, waits_until, updated_at = row
    if updated_at < moment - QUIET_SECONDS and (waits_until or 0) <= moment:
        misses = 0
    return Counter(key, misses, waits_until), tuple(row)


def has_misses(key: str) -> bool:
    return read(key, now())[0].misses > 0


def _compare_and_set(key: str, seen: tuple | None, misses: int, waits_until: int | None, moment: int) -> bool:
    """Write the counter if nobody changed it since ``seen`` was read; False when somebody did."""
    if seen is None:
        db.session.execute(delete(SignInFailures).where(SignInFailures.updated_at < moment - KEPT_SECONDS))
        db.session.add(
            SignInFailures(email_hash=key, failures=misses, locked_until=waits_until, updated_at=moment)
        )
        try:
            db.session.commit()
        except IntegrityError:  # another attempt made the row first
            db.session.rollback()
            return False
        return True
    failures, locked_until, updated_at = seen
    same_lock = (
        SignInFailures.locked_until.is_(None)
        if locked_until is None
        else SignInFailures.locked_until == locked_until
    )
    changed = db.session.execute(
        update(SignInFailures)
        .where(
            SignInFailures.email_hash == key,
            SignInFailures.failures == failures,
            SignInFailures.updated_at == updated_at,
            same_lock,
        )
        .values(failures=misses, locked_until=waits_until, updated_at=moment)
    ).rowcount
    db.session.commit()
    return bool(changed)


def claim(key: str, free: int, longest: int) -> tuple[int, Counter | None]:
    """Count one attempt before its password is checked: ``(0, counter after)`` when it may go ahead, or
    ``(seconds, None)`` when it must wait that long (refused, not counted)."""
    while True:
        moment = now()
        counter, seen = read(key, moment)
        if counter.waiting(moment):
            return counter.waiting(moment), None
        misses = counter.misses + 1
        wait = wait_after(misses, free, longest)
        waits_until = moment + wait if wait else None
        if _compare_and_set(key, seen, misses, waits_until, moment):
            return 0, Counter(key, misses, waits_until)


def add_miss(key: str, free: int, longest: int) -> None:
    """Count a miss that was not claimed beforehand (an attempt the counter did not hold up)."""
    while True:
        moment = now()
        counter, seen = read(key, moment)
        misses = counter.misses + 1
        wait = wait_after(misses, free, longest)
        waits_until = max(counter.waits_until or 0, moment + wait) if wait else counter.waits_until
        if _compare_and_set(key, seen, misses, waits_until, moment):
            return


def give_back(claimed: Counter) -> None:
    """Undo a claimed attempt that turned out to be a success, unless other attempts have been counted since."""
    moment = now()
    _, seen = read(claimed.key, moment)
    if seen is None or seen[0] != claimed.misses or seen[1] != claimed.waits_until:
        return
    # The attempt was let through, so no wait ran before it: the wait it set was its own, and goes with it.
    _compare_and_set(claimed.key, seen, claimed.misses - 1, None, moment)


def clear(key: str) -> None:
    db.session.execute(delete(SignInFailures).where(SignInFailures.email_hash == key))
    db.session.commit()


def wait_message(seconds: int, what: str) -> str:
    if seconds < 60:
        amount = f"{seconds} second{'s' * (seconds != 1)}"
    else:
        minutes = (seconds + 59) // 60
        amount = f"{minutes} minute{'s' * (minutes != 1)}"
    return f"Too many failed sign-ins {what}. Try again in {amount}."
