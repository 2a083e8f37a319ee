"""Import an export file in the console: read it, preview what each item would do, then create or update each.

Accepted files: Open WebUI's (and Sluice's) export, a list of FunctionModel objects; the community site's, where
each element wraps the function under a ``function`` key; and the body of ``POST /sync`` (``{"functions": [...]}``).
Each item is then created or updated through ``services.functions`` exactly as the API's create and update routes
do it, one at a time, so one bad item does not stop the others. An export made with its valves (or a backup of a
whole instance) also carries each function's valves and switches; the admin may ask for those to be restored too,
which an import into Open WebUI never does.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select

from extensions import db
from models import ID_PATTERN, Function, StagedImport, now
from services import function_checks, functions, loading, storable
from services.errors import ServiceError
from services.valves import clear_valves, update_valves

IMPORT_COMMIT_MESSAGE = "Imported from an export file"
# A preview loads each item's code to show what would fail; past this many items it only reads the file.
MAX_CODE_CHECKS = 200


class ImportFileError(ValueError):
    """The file as a whole cannot be imported; the message tells the admin why."""


@dataclass
class ImportItem:
    """One function found in the file, and what importing it would do."""

    index: int
    id: str
    name: str
    content: str = field(repr=False)
    meta: dict[str, Any]
    file_type: str | None
    action: str  # "create", "update", "unchanged" (identical to the stored function) or "skip" (invalid)
    problem: str | None = None
    # For an update, what differs from the stored function: any of "code", "name", "meta".
    changes: tuple[str, ...] = ()
    current_name: str | None = None
    type: str | None = None  # detected from the code by the preview's check
    warning: str | None = None  # what the check found, shown beside the item
    fails_to_load: bool = False  # the check loaded its code and it failed: saving it would fail too
    # Saved settings the file carries for this function (None: the file does not say).
    valves: dict[str, Any] | None = None
    is_active: bool | None = None
    is_global: bool | None = None

    @property
    def importable(self) -> bool:
        return self.problem is None

    @property
    def has_settings(self) -> bool:
        return self.valves is not None or self.is_active is not None or self.is_global is not None

    @property
    def ticked(self) -> bool:
        """Whether the preview offers it ticked: what would change and whose code loads, and an unchanged function
        only when the file carries settings that may be restored (its code is left alone in any case)."""
        if self.action == "unchanged":
            return self.has_settings
        return self.action in ("create", "update") and not self.fails_to_load

    @property
    def settings_summary(self) -> str:
        """What restoring this item's settings would set, for the preview: "2 valves, active, not global"."""
        parts = []
        if self.valves is not None:
            count = len(self.valves)
            parts.append(f"{count} valve{'s' if count != 1 else ''}" if count else "no valves")
        if self.is_active is not None:
            parts.append("active" if self.is_active else "inactive")
        if self.is_global is not None:
            parts.append("global" if self.is_global else "not global")
        return ", ".join(parts)


@dataclass
class ImportPlan:
    items: list[ImportItem]
    community_format: bool
    code_checked: bool = False

    @property
    def creates(self) -> int:
        return sum(1 for item in self.items if item.action == "create")

    @property
    def updates(self) -> int:
        return sum(1 for item in self.items if item.action == "update")

    @property
    def unchanged(self) -> int:
        return sum(1 for item in self.items if item.action == "unchanged")

    @property
    def skipped(self) -> int:
        return sum(1 for item in self.items if item.action == "skip")

    @property
    def has_settings(self) -> bool:
        return any(item.importable and item.has_settings for item in self.items)

    @property
    def failing(self) -> int:
        return sum(1 for item in self.items if item.importable and item.fails_to_load)


@dataclass
class ImportResult:
    index: int
    id: str
    name: str
    status: str  # "created", "updated", "unchanged", "failed" or "skipped"
    detail: str = ""
    line: int | None = None
    restored: str = ""  # the settings restored from the file, when asked for


def plan_import(raw: bytes | str, *, check_code: bool = False) -> ImportPlan:
    """Read an export file and say, item by item, whether it would be created, updated or skipped (and why).

    With ``check_code``, each item's code is also loaded (in the isolated loader, as a save would) so that code
    which would fail is reported before anything is applied.
    """
    elements = _elements(_parse(raw))
    community = False
    items: list[ImportItem] = []
    seen: dict[str, int] = {}
    for index, element in enumerate(elements):
        if isinstance(element, dict) and isinstance(element.get("function"), dict):
            element = element["function"]
            community = True
        items.append(_item(index, element, seen))

    existing = _existing([item.id for item in items if item.importable])
    for item in items:
        if not item.importable:
            continue
        stored = existing.get(item.id)
        if stored is None:
            item.action = "create"
            continue
        item.current_name = stored.name
        item.changes = _changes(item, stored)
        item.action = "update" if item.changes else "unchanged"
    code_checked = check_code and len(items) <= MAX_CODE_CHECKS
    if code_checked:
        for item in items:
            if item.action in ("create", "update"):  # unchanged code is stored and loads already
                _check_code(item)
    return ImportPlan(items=items, community_format=community, code_checked=code_checked)


def _check_code(item: ImportItem) -> None:
    try:
        result = loading.load_code(loading.prepare_code(item.content), item.id)
    except ServiceError as error:
        if error.kind == "busy":
            # Not the code's fault: say so, rather than call good code broken.
            item.warning = (
                "Its code could not be checked now because Sluice is busy; it is loaded when imported."
            )
            return
        # Still offered, but not ticked: the admin sees why it would fail, and may tick it to see it fail again.
        item.warning = f"Its code does not load: {error.detail}"
        item.fails_to_load = True
    else:
        item.type = result.type


# A preview left open longer than this is forgotten; its file must be chosen again.
STAGED_FOR_SECONDS = 24 * 3600
PREVIEW_GONE = (
    "This preview is no longer available (it was imported already, or is too old); choose the file again."
)


def stage(user, raw: bytes | str, filename: str) -> str:
    """Keep an uploaded file on the server for its preview; returns the token the preview's form sends back."""
    text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    moment = now()
    db.session.execute(delete(StagedImport).where(StagedImport.created_at < moment - STAGED_FOR_SECONDS))
    token = secrets.token_urlsafe(32)
    db.session.add(
        StagedImport(
            id=token, user_id=user.id, filename=(filename or "")[:256], payload=text, created_at=moment
        )
    )
    db.session.commit()
    return token


def staged(user, token: str) -> tuple[str, str]:
    """The file (and its name) a preview was made from; ``ImportFileError`` if it is gone or not this admin's."""
    row = db.session.get(StagedImport, token) if isinstance(token, str) and 0 < len(token) <= 64 else None
    if row is None or row.user_id != user.id or row.created_at < now() - STAGED_FOR_SECONDS:
        raise ImportFileError(PREVIEW_GONE)
    return row.payload, row.filename


def discard(token: str) -> None:
    db.session.execute(delete(StagedImport).where(StagedImport.id == token))
    db.session.commit()


def apply_import(
    user, plan: ImportPlan, chosen: set[int], *, restore_settings: bool = False
) -> list[ImportResult]:
    """Create or update each chosen, importable item through the service layer; report every item's outcome.

    With ``restore_settings``, the valves and switches the file carries are then set as well; valves are validated
    by the function's own class like any valves update, and a function whose valves cannot be restored is left
    switched off rather than run with settings other than the file's.
    """
    results: list[ImportResult] = []
    for item in plan.items:
        if not item.importable:
            results.append(ImportResult(item.index, item.id, item.name, "skipped", item.problem or ""))
            continue
        if item.index not in chosen:
            results.append(ImportResult(item.index, item.id, item.name, "skipped", "Not chosen."))
            continue
        if item.action == "unchanged":
            # Identical to what is stored: left alone (no new version, no new timestamp), settings aside.
            result = ImportResult(item.index, item.id, item.name, "unchanged", "Already the same here.")
            if restore_settings and item.has_settings:
                _restore_settings(item, result)
            results.append(result)
            continue
        try:
            if item.action == "update":
                functions.update_function(
                    user,
                    item.id,
                    name=item.name,
                    content=item.content,
                    meta=item.meta,
                    commit_message=IMPORT_COMMIT_MESSAGE,
                )
                status = "updated"
            else:
                functions.create_function(
                    user,
                    id=item.id,
                    name=item.name,
                    content=item.content,
                    meta=item.meta,
                    commit_message=IMPORT_COMMIT_MESSAGE,
                )
                status = "created"
        except ServiceError as error:
            load_error = error.extra.get("error") if isinstance(error.extra.get("error"), dict) else {}
            results.append(
                ImportResult(item.index, item.id, item.name, "failed", error.detail, load_error.get("line"))
            )
        else:
            result = ImportResult(item.index, item.id, item.name, status)
            if restore_settings and item.has_settings:
                _restore_settings(item, result)
            results.append(result)
    return results


def _restore_settings(item: ImportItem, result: ImportResult) -> None:
    if item.valves:
        try:
            update_valves(item.id, item.valves)
        except ServiceError as error:
            result.detail = (
                "Its code is the same here" if result.status == "unchanged" else "Its code was saved"
            ) + f", but its valves were not restored ({error.detail.rstrip('.')})."
            if result.status == "created":
                return  # new functions start switched off; they stay so
            functions.set_switches(item.id, is_active=False)
            result.detail += " It was switched off."
            return
    elif item.valves == {} and result.status == "updated":
        clear_valves(item.id)
    functions.set_switches(item.id, is_active=item.is_active, is_global=item.is_global)
    result.restored = item.settings_summary


def _parse(raw: bytes | str) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ImportFileError("The file is not UTF-8 text; choose a .json export file.") from None
    if not raw.strip():
        raise ImportFileError("The file is empty.")
    try:
        return storable.loads(raw)
    except json.JSONDecodeError as error:
        raise ImportFileError(
            f"The file is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        ) from None
    except storable.NotStrictJson as error:
        raise ImportFileError(f"The file is not valid JSON: {error}.") from None
    except RecursionError:
        raise ImportFileError("The file is not valid JSON: it is nested too deeply.") from None


def _elements(data: Any) -> list[Any]:
    if isinstance(data, dict):
        if isinstance(data.get("functions"), list):
            data = data["functions"]
        elif "content" in data or isinstance(data.get("function"), dict):
            data = [data]
    if not isinstance(data, list):
        raise ImportFileError(
            "The file does not hold a list of functions. Choose a file exported from the functions page of "
            "Open WebUI or Sluice, or downloaded from the community site."
        )
    if not data:
        raise ImportFileError("The file holds no functions.")
    return data


def _item(index: int, element: Any, seen: dict[str, int]) -> ImportItem:
    if not isinstance(element, dict):
        return ImportItem(index, "", "", "", {}, None, "skip", "This item is not a function object.")
    raw_id, name, content, meta = (element.get(key) for key in ("id", "name", "content", "meta"))
    function_id = raw_id.lower() if isinstance(raw_id, str) else ""
    item = ImportItem(
        index=index,
        id=function_id,
        name=name.strip() if isinstance(name, str) else "",
        content=content if isinstance(content, str) else "",
        meta=meta if isinstance(meta, dict) else {},
        file_type=element.get("type") if isinstance(element.get("type"), str) else None,
        action="skip",
        valves=element.get("valves") if isinstance(element.get("valves"), dict) else None,
        is_active=element.get("is_active") if isinstance(element.get("is_active"), bool) else None,
        is_global=element.get("is_global") if isinstance(element.get("is_global"), bool) else None,
    )
    if not isinstance(raw_id, str) or not raw_id:
        item.problem = "It has no id."
    elif not ID_PATTERN.fullmatch(raw_id):
        item.problem = "Its id may hold only letters, digits and underscores (at most 64)."
    elif function_id in seen:
        item.problem = (
            f"Item {seen[function_id] + 1} of the file has the same id; only the first is imported."
        )
    elif not item.name:
        item.problem = "It has no name."
    elif not item.content.strip():
        item.problem = "It has no code (content)."
    elif meta is not None and not isinstance(meta, dict):
        item.problem = "Its meta is not an object."
    else:
        # Caught here, not at save time: the preview itself could not show such a name.
        for what, value in (
            ("name", item.name),
            ("code", item.content),
            ("meta", item.meta),
            ("valves", item.valves),
        ):
            unstorable = storable.first_problem(value, f"Its {what}")
            if unstorable:
                item.problem = unstorable
                break
    # Text that cannot be encoded is shown as "—": the page could not carry it.
    if storable.text_problem(item.name):
        item.name = ""
    if storable.text_problem(item.id):
        item.id = ""
    if item.file_type and storable.text_problem(item.file_type):
        item.file_type = None
    if item.id and item.id not in seen:
        seen[item.id] = index
    return item


def _existing(ids: list[str]) -> dict[str, Any]:
    """The stored name, code and meta of each of these ids that exists."""
    if not ids:
        return {}
    rows = db.session.execute(
        select(Function.id, Function.name, Function.content, Function.meta).where(Function.id.in_(ids))
    )
    return {row.id: row for row in rows}


def _client_meta(meta: Any) -> dict[str, Any]:
    """The part of a meta the file decides (what Sluice derives from the code is left out), as it would be stored."""
    meta = meta if isinstance(meta, dict) else {}
    kept = {key: value for key, value in meta.items() if key not in function_checks.DERIVED_META_KEYS}
    kept.setdefault("description", None)
    return kept


def _changes(item: ImportItem, stored: Any) -> tuple[str, ...]:
    """What importing ``item`` would change in the stored function (its code as a save would store it)."""
    try:
        content = loading.prepare_code(item.content)
    except ServiceError:
        content = item.content  # a save would refuse it; it differs in any case
    changes = []
    if content != stored.content:
        changes.append("code")
    if item.name != stored.name:
        changes.append("name")
    if _client_meta(item.meta) != _client_meta(stored.meta):
        changes.append("meta")
    return tuple(changes)
