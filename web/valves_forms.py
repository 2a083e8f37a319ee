"""The valves form that the admin and the personal valves pages share: its context, reading a post, stale values.

Both pages are generated from the function's own JSON schema by ``services.valves_form`` and write through the same
service calls as the JSON API (``update_valves`` / ``update_user_valves``), so the API's rules hold here: only what
the user set is stored, and the function's own class has the last word.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import flash, request

from services import valves_form
from services.errors import ServiceError

STALE_VALUES = (
    "Some of your saved values no longer fit this version of the function. "
    "Fix or reset the fields marked below, then save."
)
SAVED = "Valves saved."
RESET_ALL = "Every valve is back to its default."
RESET_ALL_BUT_REQUIRED = (
    "Every valve is back to its default, except the required ones, which have none and were kept."
)


def form_context(
    spec: Mapping | None,
    stored: Mapping | None,
    *,
    field_errors: Mapping[str, str] | None = None,
    form_errors: list[str] | None = None,
    submission: valves_form.Submission | None = None,
) -> dict[str, Any]:
    """What ``valves/_form.html`` needs: one view per field (no secret in it), errors and stale keys."""
    fields = valves_form.describe(spec)
    return {
        "fields": valves_form.build_views(fields, stored, errors=field_errors, submission=submission),
        "form_errors": form_errors or [],
        "unknown_keys": valves_form.unknown_keys(fields, stored),
        "stored_count": sum(1 for f in fields if f.name in (stored or {})),
        # A refused save shows what was typed, not what is stored: leaving the page asks first (valves.js).
        "unsaved": submission is not None,
    }


def stale_errors(
    spec: Mapping | None, stored: Mapping | None, errors: list[dict]
) -> tuple[dict[str, str], list[str]]:
    """The field errors of stored values that the current class refuses, with any secret in them masked."""
    fields = valves_form.describe(spec)
    by_field, general = valves_form.map_errors(fields, errors)
    secrets = valves_form.secret_values(fields, stored)
    return (
        {name: valves_form.mask_secrets(text, secrets) for name, text in by_field.items()},
        [valves_form.mask_secrets(text, secrets) for text in general],
    )


def submit_valves(
    spec: Mapping | None,
    stored: Mapping | None,
    save: Callable[[dict], Any],
    check: Callable[[dict], list[dict]] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Read the posted form, save it through ``save`` and say whether it worked, with the context to re-render.

    Parse errors stop before ``save`` (then ``check``, a dry run of the function's class, reports the other fields'
    problems too, so that one round trip shows them all); the service's own validation errors come back beside
    their fields. What was typed is kept for the re-rendered form, except secrets (stored or typed), which never go
    back to the browser.
    """
    fields = valves_form.describe(spec)
    reset_all = request.form.get("action") == "reset_all"
    kept: dict[str, Any] = {}
    if reset_all:
        # Fields without a default keep their value: the function's class would refuse them empty.
        kept = {
            f.name: stored[f.name]
            for f in fields
            if f.required and not f.has_default and f.name in (stored or {})
        }
        submission = valves_form.Submission(
            values=kept, errors={}, typed={}, resets=set(), secrets_typed=set()
        )
    else:
        submission = valves_form.parse_submission(fields, request.form, stored)
    secrets = valves_form.secret_values(fields, stored, submission.values)
    if not submission.ok:
        field_errors = dict(submission.errors)
        general: list[str] = []
        if check is not None:
            by_field, general = valves_form.map_errors(fields, check(submission.values))
            for name, text in by_field.items():
                field_errors.setdefault(name, valves_form.mask_secrets(text, secrets))
            general = [valves_form.mask_secrets(text, secrets) for text in general]
        count = len(field_errors)
        message = f"Nothing was saved: {count} field{'s' if count > 1 else ''} need{'' if count > 1 else 's'} fixing."
        return False, form_context(
            spec, stored, field_errors=field_errors, form_errors=[message, *general], submission=submission
        )
    try:
        save(submission.values)
    except ServiceError as exc:
        by_field, general = valves_form.map_errors(fields, exc.extra.get("errors"))
        by_field = {name: valves_form.mask_secrets(text, secrets) for name, text in by_field.items()}
        messages = [valves_form.mask_secrets(text, secrets) for text in general]
        if not by_field and not messages:
            messages = [valves_form.mask_secrets(exc.detail, secrets)]
        messages.insert(0, "Nothing was saved: the function refused these values.")
        return False, form_context(
            spec, stored, field_errors=by_field, form_errors=messages, submission=submission
        )
    flash((RESET_ALL_BUT_REQUIRED if kept else RESET_ALL) if reset_all else SAVED, "success")
    return True, {}


def valves_page(
    spec: Mapping | None,
    stored: Mapping | None,
    *,
    class_name: str,
    save: Callable[[dict], Any],
    check: Callable[[dict], list[dict]],
    stale: Callable[[], list[dict]] | None = None,
) -> tuple[bool, dict[str, Any], int]:
    """Both valves pages' flow for this request: whether a post was saved, the form's context and the status.

    A function without the ``class_name`` class shows an empty form and refuses a post (400); a post is read and
    saved by ``submit_valves``; a read shows the stored values, with ``stale`` (the stored values' errors under the
    current code) beside their fields when given.
    """
    if spec is None:
        context = form_context(None, stored)
        if request.method != "POST":
            return False, context, 200
        context["form_errors"] = [f"This function has no {class_name} class, so there is nothing to set."]
        return False, context, 400
    if request.method == "POST":
        ok, context = submit_valves(spec, stored, save=save, check=check)
        return ok, context, 200 if ok else 400
    if stale is None:
        return False, form_context(spec, stored), 200
    # Stored values that the current code refuses are shown as errors beside their fields, never dropped.
    field_errors, form_errors = stale_errors(spec, stored, stale())
    if field_errors or form_errors:
        form_errors.insert(0, STALE_VALUES)
    return False, form_context(spec, stored, field_errors=field_errors, form_errors=form_errors), 200
