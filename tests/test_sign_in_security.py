"""What an attacker at the sign-in form cannot do: reuse a CSRF token from before sign-in, keep a real user out,
or spray passwords across accounts from one client."""

from __future__ import annotations

import re

from tests.conftest import PASSWORD, csrf_token


def _form_token(page: bytes) -> str:
    return re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()


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
