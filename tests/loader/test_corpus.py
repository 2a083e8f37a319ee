"""Every fixture in tests/fixtures/functions loads (or fails) as expected.json says, and as Open WebUI did.

expected.json was written with Open WebUI 0.12.4's own answers beside Sluice's expectations
(``tools/compare_with_openwebui.py compare --record``); its valves schemas are in openwebui/<name>.json. Each
fixture is loaded the way the app loads it: imports rewritten, then ``loader.load_function`` in an isolated child.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "functions"
EXPECTED = {
    name: entry
    for name, entry in json.loads((FIXTURES / "expected.json").read_text()).items()
    if name[0] != "_"
}
# Open WebUI resolved input.options methods for its admin; the loader is given the same kind of user.
ADMIN = {"id": "admin-id", "name": "Admin", "email": "admin@example.com", "role": "admin"}

loader = pytest.importorskip("loader")


@pytest.fixture(scope="module", autouse=True)
def stop_loader_afterwards():
    yield
    loader.shutdown()


def load(name: str):
    content = (FIXTURES / f"{name}.py").read_text(encoding="utf-8")
    return loader.load_function(loader.rewrite_imports(content), function_id=name, user=ADMIN)


def openwebui_schemas(name: str) -> dict:
    return json.loads((FIXTURES / "openwebui" / f"{name}.json").read_text(encoding="utf-8"))


def test_every_fixture_has_an_expectation():
    assert sorted(path.stem for path in FIXTURES.glob("*.py")) == sorted(EXPECTED)


LOADING = sorted(name for name, entry in EXPECTED.items() if "error" not in entry)
FAILING = sorted(name for name, entry in EXPECTED.items() if "error" in entry)


@pytest.mark.parametrize("name", LOADING)
def test_fixture_loads_as_expected(name):
    expected = EXPECTED[name]
    result = load(name)

    assert result.ok, result.error and result.error.detail
    assert result.type == expected["type"]
    assert result.toggle is expected["toggle"]
    assert result.manifest == expected["manifest"]
    assert (result.valves_schema is not None) is expected["valves"]
    assert (result.user_valves_schema is not None) is expected["user_valves"]
    # The icon Open WebUI shows for a filter or action without a frontmatter `icon_url` (`self.icon`).
    assert result.icon == expected.get("icon")


@pytest.mark.parametrize("name", sorted(n for n in LOADING if "warning_lines" in EXPECTED[n]))
def test_deprecated_valves_load_with_a_warning_naming_the_line(name):
    result = load(name)

    assert result.ok
    assert [warning.rsplit("(line ", 1)[-1].rstrip(")") for warning in result.warnings] == [
        str(line) for line in EXPECTED[name]["warning_lines"]
    ]


@pytest.mark.parametrize("name", sorted(n for n in LOADING if EXPECTED[n].get("same_as_openwebui")))
def test_fixture_schemas_match_open_webui(name):
    result = load(name)
    schemas = openwebui_schemas(name)

    assert result.valves_schema == schemas["valves_spec"]
    assert result.user_valves_schema == schemas["user_valves_spec"]


@pytest.mark.parametrize("name", sorted(n for n in LOADING if EXPECTED[n].get("same_as_openwebui") is True))
def test_expectation_is_what_open_webui_answered(name):
    """Guards expected.json itself: where Sluice must match Open WebUI, the expectation is Open WebUI's answer."""
    expected = EXPECTED[name]
    answered = expected["openwebui"]

    assert answered["loaded"]
    for key in ("type", "toggle", "manifest", "valves", "user_valves"):
        assert expected[key] == answered[key], key


@pytest.mark.parametrize("name", FAILING)
def test_fixture_fails_with_a_clear_error(name, request):
    expected = EXPECTED[name]["error"]
    if "gap" in EXPECTED[name]:
        request.applymarker(pytest.mark.xfail(reason=EXPECTED[name]["gap"], strict=False))
    result = load(name)

    assert not result.ok
    assert result.error.type == expected["type"]
    if "line" in expected:
        assert result.error.line == expected["line"]
    if "missing_package" in expected:
        assert f"'{expected['missing_package']}'" in result.error.message
    # Open WebUI could not load these either.
    assert EXPECTED[name]["openwebui"]["loaded"] is False
