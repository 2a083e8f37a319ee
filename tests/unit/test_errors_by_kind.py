"""Errors carry a kind and a field, and callers route on those: rewording a message changes no decision."""

from __future__ import annotations

import pytest

from services.errors import Forbidden, NotFound, ServiceError
from web import console_wording

REWORDED = "A sentence nobody has written before."


def test_an_error_is_invalid_by_default_and_its_answer_shows_neither_kind_nor_field():
    error = ServiceError(REWORDED, field="name", errors=[{"loc": ["name"]}])
    assert (error.kind, error.field, error.status) == ("invalid", "name", 400)
    assert error.to_dict() == {"detail": REWORDED, "errors": [{"loc": ["name"]}]}
    assert (NotFound().kind, NotFound().status) == ("not_found", 404)
    assert Forbidden(REWORDED).kind == "forbidden"
    assert NotFound(REWORDED, kind="version_not_found").kind == "version_not_found"


def test_the_service_checks_say_which_field_they_refuse():
    from services import function_checks, loading

    with pytest.raises(ServiceError) as caught:
        function_checks.check_new_id("not an id")
    assert (caught.value.kind, caught.value.field) == ("invalid_id", "id")
    assert (function_checks.id_taken().kind, function_checks.id_taken().field) == ("duplicate_id", "id")
    with pytest.raises(ServiceError) as caught:
        function_checks.check_name("  ")
    assert caught.value.field == "name"
    with pytest.raises(ServiceError) as caught:
        loading.check_content("")
    assert caught.value.field == "content"
    with pytest.raises(ServiceError) as caught:
        loading.check_content("x" * (loading.MAX_CONTENT_BYTES + 1))
    assert (caught.value.kind, caught.value.field, caught.value.status) == (
        "content_too_large",
        "content",
        413,
    )


INCOMPATIBLE = console_wording.INCOMPATIBLE_VALVES + "x: bad."


@pytest.mark.parametrize(
    "error, expected",
    [
        # Where Open WebUI's wording is the API's, the console says it in its own words (web.console_wording).
        (ServiceError(REWORDED, kind="invalid_id", field="id"), ({"id": console_wording.INVALID_ID}, None)),
        (
            ServiceError(REWORDED, kind="duplicate_id", field="id"),
            ({"id": console_wording.DUPLICATE_ID}, None),
        ),
        (ServiceError(REWORDED, field="name"), ({"name": REWORDED}, None)),
        (ServiceError(REWORDED, kind="content_too_large", field="content"), ({"content": REWORDED}, None)),
        (
            ServiceError(REWORDED, kind="load_failed", field="content", error={"line": 3}),
            ({"content": REWORDED}, {"line": 3}),
        ),
        (
            ServiceError(REWORDED, kind="incompatible_valves", errors=[{"loc": ["x"], "msg": "bad"}]),
            ({"form": INCOMPATIBLE, "incompatible_valves": INCOMPATIBLE}, None),
        ),
        # The old texts alone no longer place an error: without a field it belongs to the whole form.
        (
            ServiceError("Only alphanumeric characters and underscores are allowed in the id"),
            ({"form": "Only alphanumeric characters and underscores are allowed in the id"}, None),
        ),
        (ServiceError(REWORDED, field="valves"), ({"form": REWORDED}, None)),
    ],
)
def test_the_editor_places_an_error_by_its_kind_and_field_whatever_its_wording(error, expected):
    from blueprints.admin.functions import _form_errors

    assert _form_errors(error) == expected


def test_sync_reports_a_missing_valves_class_by_kind(monkeypatch):
    from services import loading, sync

    def no_class(*args, **kwargs):
        raise ServiceError(REWORDED, kind="no_valves_class")

    monkeypatch.setattr(loading, "validate_valves", no_class)
    with pytest.raises(ServiceError) as caught:
        sync._check_valves("code", "an_id", {"priority": 1}, None)
    assert (caught.value.kind, caught.value.detail) == ("no_valves_class", sync.NO_VALVES_CLASS_ERROR)

    def refused(*args, **kwargs):
        raise ServiceError(REWORDED, kind="invalid_valves")

    monkeypatch.setattr(loading, "validate_valves", refused)
    with pytest.raises(ServiceError) as caught:
        sync._check_valves("code", "an_id", {"priority": 1}, None)
    assert caught.value.detail == REWORDED
