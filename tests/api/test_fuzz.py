"""A bounded fuzzing run over the whole JSON API (schemathesis, from the OpenAPI description): cases generated from
every operation's declared parameters and bodies, sent with an admin's key and a user's key, must never get a 5xx.

Bounded: a fixed number of examples per operation (`SLUICE_FUZZ_EXAMPLES`, default 8), derandomised so that a run is
repeatable; `SLUICE_FUZZ_EXAMPLES=100` for a long run by hand.
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "8"))


def test_no_generated_request_gets_a_server_error(app, admin_key, user_key, tmp_path):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    keys = {"admin": admin_key, "user": user_key}
    failures: list[str] = []
    counted = {"operations": 0, "requests": 0}

    for result in schema.get_all_operations():
        operation = result.ok()
        counted["operations"] += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def send(case):
            for who, key in keys.items():
                response = case.call(headers={"Authorization": f"Bearer {key}"})
                counted["requests"] += 1
                if response.status_code >= 500:
                    failures.append(f"{who}: {case.method} {case.formatted_path} -> {response.status_code}")

        send()

    print(f"fuzzed {counted['operations']} operations with {counted['requests']} requests")
    assert counted["operations"] >= 40 and counted["requests"] >= counted["operations"] * 2
    assert not failures, failures[:20]
