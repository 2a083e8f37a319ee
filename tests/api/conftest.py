"""Fixtures for the functions API tests: an authenticated API helper for each role and both prefixes."""

from __future__ import annotations

import pytest

from tests.conftest import bearer
from tests.factories import FILTER, FUNCTION_MODEL_KEYS, form

PREFIXES = ("/api/functions", "/api/v1/functions")
NOT_AUTHENTICATED = "Not authenticated"
INVALID = "Your session has expired or the token is invalid. Please sign in again."
NO_PERMISSION = (
    "You do not have permission to access this resource. Please contact your administrator for assistance."
)
NOT_FOUND = "We could not find what you're looking for :/"

WITH_VALVES_KEYS = FUNCTION_MODEL_KEYS[:7] + ["valves"] + FUNCTION_MODEL_KEYS[7:]
RESPONSE_KEYS = [
    "version_id",
    "id",
    "user_id",
    "type",
    "name",
    "meta",
    "is_active",
    "is_global",
    "updated_at",
    "created_at",
]
USER_RESPONSE_KEYS = RESPONSE_KEYS + ["user"]


class Api:
    """A test client that speaks to the functions API with one API key, under one prefix."""

    def __init__(self, client, key: str | None, prefix: str = "/api/v1/functions"):
        self.client = client
        self.key = key
        self.prefix = prefix

    def headers(self, extra=None):
        headers = bearer(self.key) if self.key else {}
        headers.update(extra or {})
        return headers

    def get(self, path: str, **kw):
        return self.client.get(self.prefix + path, headers=self.headers(kw.pop("headers", None)), **kw)

    def post(self, path: str, json=None, **kw):
        return self.client.post(
            self.prefix + path, json=json, headers=self.headers(kw.pop("headers", None)), **kw
        )

    def delete(self, path: str, **kw):
        return self.client.delete(self.prefix + path, headers=self.headers(kw.pop("headers", None)), **kw)

    def create(self, id="sample_filter", content=FILTER, name=None, **kw):
        response = self.post(
            "/create", form(id=id, name=name or id.replace("_", " ").title(), content=content, **kw)
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def with_prefix(self, prefix: str) -> Api:
        return Api(self.client, self.key, prefix)


@pytest.fixture
def admin_api(client, admin_key):
    return Api(client, admin_key)


@pytest.fixture
def user_api(app, user_key):
    return Api(app.test_client(), user_key)


@pytest.fixture
def other_api(app, other_user_key):
    return Api(app.test_client(), other_user_key)


@pytest.fixture
def sample(admin_api):
    """The sample filter, created through the API."""
    return admin_api.create()
