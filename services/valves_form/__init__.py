"""Valves forms: a function's JSON schema becomes form fields, and a submitted form becomes a valves object.

Flask-free on purpose, so the rules can be unit-tested against schemas shaped like real community functions. Each
kind of field (text, password, number, select, list, JSON…) is one class in ``kinds.py``, registered in
``registry.py``, with one partial under ``templates/valves/fields/``. The contract it keeps (SPEC §3 "valves
update", §5):

- only what the user set is stored: a field left at its default (unless pinned), emptied when it may be null, or
  reset, is left out;
- a stored secret is never put back into a form: a password field renders empty and, left empty, keeps the stored
  value (the server copies it from what is stored, the browser never sees it);
- what cannot be parsed (``"abc"`` for an integer, broken JSON) is a field error before anything is validated by
  the function's own class, whose errors (``[{loc, msg, type}]``) are then mapped back to their fields;
- a stored number or JSON value that is emptied is a field error too, not a silent reset: resetting is the
  field's own "Reset to default" box. Number fields are text inputs, so a browser always sends what was typed
  (Chromium sends ``""`` for a ``type=number`` input it cannot parse, which read as "use the default").

Every field's input is named ``valve-<name>``; its reset checkbox ``reset-<name>``.
"""

from services.valves_form import kinds as _kinds  # noqa: F401 - registers the built-in kinds
from services.valves_form.field import ValveField, describe, humanise
from services.valves_form.kinds import DEFAULT_SECRET_PLACEHOLDER, STORED_SECRET_PLACEHOLDER
from services.valves_form.registry import REGISTRY, FieldKind, register
from services.valves_form.secrets import SECRET_MASK, mask_secrets, secret_values
from services.valves_form.submission import (
    Submission,
    map_errors,
    parse_submission,
    parse_value,
    unknown_keys,
)
from services.valves_form.values import (
    INPUT_PREFIX,
    PIN_PREFIX,
    RESET_PREFIX,
    UNSET,
    FieldParseError,
    Option,
)
from services.valves_form.views import FieldView, build_views

# The built-in kinds' names, in detection order.
KINDS = REGISTRY.names()

__all__ = [
    "DEFAULT_SECRET_PLACEHOLDER",
    "INPUT_PREFIX",
    "KINDS",
    "REGISTRY",
    "PIN_PREFIX",
    "RESET_PREFIX",
    "SECRET_MASK",
    "STORED_SECRET_PLACEHOLDER",
    "UNSET",
    "FieldKind",
    "FieldParseError",
    "FieldView",
    "Option",
    "Submission",
    "ValveField",
    "build_views",
    "describe",
    "humanise",
    "map_errors",
    "mask_secrets",
    "parse_submission",
    "parse_value",
    "register",
    "secret_values",
    "unknown_keys",
]
