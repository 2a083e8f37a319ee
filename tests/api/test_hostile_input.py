"""Hostile requests to the JSON API get a clean 4xx in JSON: wrong methods, oversized bodies, invalid UTF-8, huge
ids. (NUL, lone surrogates, infinite numbers and deep nesting are in test_errors.py.)"""

from __future__ import annotations

import re

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from tests.api.conftest import PREFIXES

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def test_no_path_is_routed_to_another_paths_rule_for_a_method_it_lacks(app):
    """A method a path does not have is 405, never a neighbouring rule whose variable happens to match."""
    adapter = app.url_map.bind("localhost")
    misrouted = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<[^>]+>", "x", rule.rule)
        for method in METHODS:
            try:
                matched, _ = adapter.match(path, method, return_rule=True)
            except (MethodNotAllowed, NotFound, RequestRedirect):
                continue
            if matched.rule != rule.rule:
                misrouted.append((method, path, matched.rule))
    assert misrouted == []


@pytest.mark.parametrize("prefix", PREFIXES)
def test_deleting_the_history_diff_is_405_not_a_version_named_diff(admin_api, sample, prefix):
    response = admin_api.client.delete(prefix + "/id/sample_filter/history/diff", headers=admin_api.headers())
    assert response.status_code == 405
    assert response.get_json() == {"detail": "Method not allowed"}
    allowed = response.headers["Allow"].split(", ")
    assert "GET" in allowed and "DELETE" not in allowed
    # A version id that merely starts with the word is still a version id.
    assert admin_api.delete("/id/sample_filter/history/diffs").status_code == 404
