"""What an attacker at the sign-in form cannot do: reuse a CSRF token from before sign-in, keep a real user out,
or spray passwords across accounts from one client."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import PASSWORD, csrf_token

INCORRECT = b"The email or password is incorrect."
NETWORK_WAITS = b"Too many failed sign-ins from your network. Try again in "
ADDRESS_WAITS = b"Too many failed sign-ins for this email address. Try again in "


class Clock:
    """The throttle's clock, moved by hand: waits are checked without sleeping."""

    def __init__(self):
        import time

        self.moment = int(time.time())

    def __call__(self) -> int:
        return self.moment

    def advance(self, seconds: int) -> None:
        self.moment += seconds


@pytest.fixture
def clock(monkeypatch):
    from services import sign_in_throttle

    clock = Clock()
    monkeypatch.setattr(sign_in_throttle, "now", clock)
    return clock


def attempt(client, ip: str, email: str, password: str = "wrong password", headers=None):
    """A sign-in from the network address ``ip``."""
    client.environ_base["REMOTE_ADDR"] = ip
    token = csrf_token(client, "/auth")
    return client.post(
        "/auth", data={"email": email, "password": password, "csrf_token": token}, headers=headers or {}
    )


def waited(page) -> int:
    """The seconds a refusal asks to wait."""
    import re

    amount, unit = re.search(rb"Try again in (\d+) (second|minute)", page.data).groups()
    return int(amount) * (60 if unit == b"minute" else 1)


def test_the_csrf_token_from_before_sign_in_stops_working_at_sign_in(client, admin_id):
    planted = csrf_token(client, "/auth")  # what a shared computer or a fixated cookie would give an attacker
    answer = client.post(
        "/auth", data={"email": "admin@example.com", "password": PASSWORD, "csrf_token": planted}
    )
    assert answer.status_code == 302
    refused = client.post("/api/v1/functions/sync", json={"functions": []}, headers={"X-CSRFToken": planted})
    assert refused.status_code == 403 and "CSRF" in refused.get_json()["detail"]
    assert client.post("/auth/signout", data={"csrf_token": planted}).status_code == 400
    fresh = csrf_token(client, "/settings/keys")
    assert fresh != planted
    accepted = client.post("/api/v1/functions/sync", json={"functions": []}, headers={"X-CSRFToken": fresh})
    assert accepted.status_code == 200


def test_the_first_admin_also_starts_with_a_fresh_token(client):
    planted = csrf_token(client, "/auth")
    form = {"name": "Ada", "email": "ada@example.com", "password": PASSWORD, "csrf_token": planted}
    assert client.post("/auth", data=form).status_code == 302
    refused = client.post("/api/v1/functions/sync", json={"functions": []}, headers={"X-CSRFToken": planted})
    assert refused.status_code == 403


def test_misses_from_one_client_make_its_next_attempts_wait_longer_and_longer(app, client, admin_id, clock):
    limit = app.config["SLUICE_SIGNIN_MAX_FAILURES"]
    for _ in range(limit):  # the limit-th miss still says only "incorrect"
        assert INCORRECT in attempt(client, "10.0.0.66", "admin@example.com").data
    refused = attempt(client, "10.0.0.66", "admin@example.com", PASSWORD)  # even the right password waits
    assert refused.status_code == 400 and NETWORK_WAITS + b"15 seconds." in refused.data
    clock.advance(15)
    assert (
        INCORRECT in attempt(client, "10.0.0.66", "admin@example.com").data
    )  # one more check, then twice as long
    assert NETWORK_WAITS + b"30 seconds." in attempt(client, "10.0.0.66", "admin@example.com", PASSWORD).data
    clock.advance(30)
    assert attempt(client, "10.0.0.66", "admin@example.com", PASSWORD).status_code == 302


def test_waits_stop_growing_at_the_longest(app, client, admin_id, clock):
    longest = app.config["SLUICE_SIGNIN_LOCK_SECONDS"]
    seen = []
    for _ in range(19):  # 5 free misses, then a refusal and a miss per wait
        page = attempt(client, "10.0.0.66", "admin@example.com")
        if INCORRECT not in page.data:
            seen.append(waited(page))
            clock.advance(waited(page))
    assert seen == [15, 30, 60, 120, 240, longest, longest]


def test_an_attacker_cannot_keep_the_real_user_out(app, client, admin_id, clock):
    """However many misses an attacker piles on an address, its owner, from a client without misses, gets in."""
    for _ in range(40):
        page = attempt(client, "10.0.0.66", "admin@example.com")
        clock.advance(waited(page) if INCORRECT not in page.data else 1)
    attempt(client, "10.0.0.66", "admin@example.com")
    assert NETWORK_WAITS in attempt(client, "10.0.0.66", "admin@example.com").data  # a wait runs now
    owner = app.test_client()
    assert attempt(owner, "192.0.2.7", "admin@example.com", PASSWORD).status_code == 302


def test_the_real_user_who_mistypes_during_an_attack_is_slowed_not_blocked(app, client, admin_id, clock):
    for _ in range(12):
        page = attempt(client, "10.0.0.66", "admin@example.com")
        clock.advance(waited(page) if INCORRECT not in page.data else 1)
    owner = app.test_client()
    assert INCORRECT in attempt(owner, "192.0.2.7", "admin@example.com", "typo").data
    slowed = attempt(owner, "192.0.2.7", "admin@example.com", PASSWORD)
    assert ADDRESS_WAITS in slowed.data
    assert waited(slowed) <= app.config["SLUICE_SIGNIN_LOCK_SECONDS"]
    # The attacker keeps trying meanwhile; refused attempts are not counted, so the owner's wait does not grow.
    for _ in range(5):
        attempt(client, "10.0.0.66", "admin@example.com")
    clock.advance(waited(slowed))
    assert attempt(owner, "192.0.2.7", "admin@example.com", PASSWORD).status_code == 302


def test_one_client_cannot_spray_passwords_across_addresses(app, client, admin_id, user_id, clock):
    limit = app.config["SLUICE_SIGNIN_MAX_FAILURES"]
    addresses = ["admin@example.com", "user@example.com"] + [f"person{n}@example.com" for n in range(18)]
    checked = sum(INCORRECT in attempt(client, "10.0.0.66", address).data for address in addresses)
    assert checked == limit
    # Over an hour of trying, waiting out each wait, it checks a couple of dozen passwords, not thousands.
    checked, elapsed, n = 0, 0, 0
    while elapsed < 3600:
        page = attempt(client, "10.0.0.66", addresses[n % len(addresses)])
        n += 1
        if INCORRECT in page.data:
            checked += 1
        else:
            elapsed += waited(page)
            clock.advance(waited(page))
    assert checked <= 3600 // app.config["SLUICE_SIGNIN_LOCK_SECONDS"] + 6
    # Another client is not held up by it.
    assert attempt(app.test_client(), "192.0.2.7", "user@example.com", PASSWORD).status_code == 302


def test_a_success_does_not_give_a_client_fresh_guesses(app, client, admin_id, user_id, clock):
    """An attacker's own account must not reset the count of the misses it made on other addresses."""
    limit = app.config["SLUICE_SIGNIN_MAX_FAILURES"]
    for _ in range(limit - 1):
        attempt(client, "10.0.0.66", "admin@example.com")
    assert attempt(client, "10.0.0.66", "user@example.com", PASSWORD).status_code == 302
    attacker = app.test_client()
    assert INCORRECT in attempt(attacker, "10.0.0.66", "admin@example.com").data
    assert NETWORK_WAITS in attempt(attacker, "10.0.0.66", "admin@example.com").data


def test_an_ipv6_client_is_its_whole_64(app, client, admin_id, clock):
    limit = app.config["SLUICE_SIGNIN_MAX_FAILURES"]
    for n in range(limit):
        attempt(client, f"2001:db8:1:2::{n + 1}", "admin@example.com")
    assert NETWORK_WAITS in attempt(client, "2001:db8:1:2:ffff::9", "admin@example.com").data
    assert INCORRECT in attempt(client, "2001:db8:1:3::1", "person@example.com").data


def test_an_address_without_an_account_is_throttled_the_same_way(app, admin_id, clock):
    """Otherwise the answers would tell a guesser which addresses have accounts."""
    limit = app.config["SLUICE_SIGNIN_MAX_FAILURES"]
    answers = {}
    for ip, address in (("10.0.0.1", "admin@example.com"), ("10.0.0.2", "nobody@example.com")):
        client = app.test_client()
        pages = [attempt(client, ip, address) for _ in range(limit + 1)]
        answers[address] = [
            (page.status_code, page.data.count(b"Too many failed sign-ins")) for page in pages
        ]
    assert answers["admin@example.com"] == answers["nobody@example.com"]
    assert answers["nobody@example.com"][-2:] == [(400, 0), (400, 1)]


def test_a_success_clears_the_address_count(app, client, admin_id, clock):
    limit = app.config["SLUICE_SIGNIN_MAX_FAILURES"]
    for n in range(limit - 1):
        attempt(client, f"10.0.1.{n}", "admin@example.com")
    assert attempt(client, "10.0.2.1", "admin@example.com", PASSWORD).status_code == 302
    client = app.test_client()
    attempt(client, "10.0.3.1", "ADMIN@example.com ")  # the same address, however typed
    # A client with a miss of its own would wait for the address now, had the success not cleared it.
    assert attempt(client, "10.0.3.1", "admin@example.com", PASSWORD).status_code == 302


@pytest.mark.parametrize("app_config", [{}, {"SLUICE_TRUSTED_PROXIES": 1}])
def test_forwarded_for_names_the_client_only_behind_trusted_proxies(app, client, admin_id, app_config, clock):
    limit = app.config["SLUICE_SIGNIN_MAX_FAILURES"]
    pages = [
        attempt(client, "127.0.0.1", "admin@example.com", headers={"X-Forwarded-For": f"198.51.100.{n}"})
        for n in range(limit + 1)
    ]
    if app_config:  # each forwarded address is a client of its own, checked
        assert all(INCORRECT in page.data for page in pages)
    else:  # a header anybody can send must not make a fresh client
        assert NETWORK_WAITS in pages[-1].data


def test_attempts_sent_all_at_once_check_no_more_passwords_than_the_limit(app, admin_id, monkeypatch):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from services import accounts

    checked = []
    lock = threading.Lock()
    real_check = accounts.check_password

    def slow_check(user, password):
        with lock:
            checked.append(password)
        time.sleep(0.05)  # as slow as a real hash: every attempt is in flight at once
        return real_check(user, password)

    monkeypatch.setattr(accounts, "check_password", slow_check)

    def guess(number):
        with app.app_context():
            return accounts.authenticate("admin@example.com", f"guess-{number}", 5, 60, "10.0.0.66").error

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(guess, range(40)))
    assert len(checked) <= 5
    assert sum("Too many failed sign-ins" in answer for answer in answers) >= 35


def test_misses_sent_at_once_are_all_counted_and_no_address_is_kept_in_clear(app, admin_id):
    from concurrent.futures import ThreadPoolExecutor

    from extensions import db
    from models import SignInFailures
    from services import accounts

    def miss(_):
        with app.app_context():
            accounts.authenticate("admin@example.com", "wrong password", 1000, 60, "10.0.0.66")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(miss, range(12)))
    with app.app_context():
        rows = db.session.execute(select(SignInFailures.email_hash, SignInFailures.failures)).all()
    assert sorted(failures for _, failures in rows) == [12, 12]  # the client's count and the address's
    assert all("admin" not in key and "10.0" not in key and len(key) == 64 for key, _ in rows)
