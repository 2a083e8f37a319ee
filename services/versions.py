"""A function's version history: list, read, compare, restore and delete the versions its saves recorded.

Versions are recorded by ``services.functions.write_function``; this module only reads and manages them.
"""

from __future__ import annotations

import difflib
import threading
from collections import OrderedDict

from sqlalchemy import func, select

from extensions import db
from models import Function, FunctionVersion, User
from services import audit, diffs, function_reads, functions
from services.errors import NotFound, ServiceError

HISTORY_PAGE_SIZE = 20
# Far beyond any real history, and small enough that the row offset it makes fits every database's integers.
MAX_HISTORY_PAGE = 1_000_000

VERSION_NOT_FOUND_ERROR = "Version not found"
CURRENT_VERSION_ERROR = "Cannot delete the current version"


# --- reading ---------------------------------------------------------------------------------------------------


def _author(user_id: str) -> dict | None:
    name = db.session.scalar(select(User.name).where(User.id == user_id))
    return {"name": name} if name else None


def _version_order():
    return (FunctionVersion.created_at.desc(), FunctionVersion.id.desc())


def _parent_id(version: FunctionVersion) -> str | None:
    """The version made just before this one, which is what it was edited from."""
    return db.session.scalar(
        select(FunctionVersion.id)
        .where(
            FunctionVersion.function_id == version.function_id,
            (FunctionVersion.created_at < version.created_at)
            | ((FunctionVersion.created_at == version.created_at) & (FunctionVersion.id < version.id)),
        )
        .order_by(*_version_order())
        .limit(1)
    )


def version_response(version: FunctionVersion, parent_id: str | None, author: dict | None) -> dict:
    return {
        "id": version.id,
        "function_id": version.function_id,
        "parent_id": parent_id,
        "user_id": version.user_id,
        "commit_message": version.commit_message,
        "created_at": version.created_at,
        "user": author,
    }


def version_model(version: FunctionVersion) -> dict:
    return {
        **version_response(version, _parent_id(version), _author(version.user_id)),
        "snapshot": {"name": version.name, "content": version.content, "meta": version.meta or {}},
    }


def _page_rows(function_id: str, page: int) -> list[tuple[FunctionVersion, str | None]]:
    """One page of versions with their authors' names, newest first, and the version before the page's last one."""
    page = max(1, int(page or 1))
    if page > MAX_HISTORY_PAGE:
        return []
    # One more than a page, so the last one on the page knows its parent.
    return [
        (version, author)
        for version, author in db.session.execute(
            select(FunctionVersion, User.name)
            .outerjoin(User, User.id == FunctionVersion.user_id)
            .where(FunctionVersion.function_id == function_id)
            .order_by(*_version_order())
            .offset((page - 1) * HISTORY_PAGE_SIZE)
            .limit(HISTORY_PAGE_SIZE + 1)
        )
    ]


def list_versions(function_id: str, page: int = 1) -> list[dict]:
    """One page of a function's versions, newest first."""
    f = function_reads.get_function(function_id)
    rows = _page_rows(f.id, page)
    answer = []
    for index, (version, author) in enumerate(rows[:HISTORY_PAGE_SIZE]):
        parent = rows[index + 1][0].id if index + 1 < len(rows) else None
        answer.append(version_response(version, parent, {"name": author} if author else None))
    return answer


def count_versions(function_id: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(FunctionVersion).where(FunctionVersion.function_id == function_id)
    )


def history_page(function_id: str, page: int = 1) -> dict:
    """One page of the console's history: each version with its author, message and size of change (the lines it
    added and removed against the version before it; the first version adds all its lines)."""
    f = function_reads.get_function(function_id)
    total = count_versions(f.id)
    pages = max(1, -(-total // HISTORY_PAGE_SIZE))
    page = min(max(1, page), pages)
    rows = _page_rows(f.id, page)
    entries = []
    for index, (version, author) in enumerate(rows[:HISTORY_PAGE_SIZE]):
        parent = rows[index + 1][0] if index + 1 < len(rows) else None
        added, removed = _change_size(parent, version)
        entry = version_response(version, parent.id if parent else None, {"name": author} if author else None)
        entry.update(
            added=added,
            removed=removed,
            name=version.name,
            renamed=parent is not None and parent.name != version.name,
            is_current=version.id == f.version_id,
        )
        entries.append(entry)
    return {"function": f, "versions": entries, "page": page, "pages": pages, "total": total}


# The size of each listed change, by (parent id, version id): a version's snapshot never changes once recorded, so
# the pair names the result for good. Diffing a large function's rewrite takes most of a second; a history page
# diffs twenty pairs, and is opened again and again.
_change_sizes: OrderedDict[tuple[str | None, str], tuple[int, int]] = OrderedDict()
_change_sizes_lock = threading.Lock()
CHANGE_SIZES_KEPT = 4096


def _change_size(parent: FunctionVersion | None, version: FunctionVersion) -> tuple[int, int]:
    key = (parent.id if parent else None, version.id)
    with _change_sizes_lock:
        if key in _change_sizes:
            _change_sizes.move_to_end(key)
            return _change_sizes[key]
    size = diffs.line_changes(parent.content if parent else "", version.content or "")
    with _change_sizes_lock:
        _change_sizes[key] = size
        while len(_change_sizes) > CHANGE_SIZES_KEPT:
            _change_sizes.popitem(last=False)
    return size


def version_choices(function_id: str) -> list[dict]:
    """Every version of a function, newest first, without its code: what a "compare" picker offers."""
    f = function_reads.get_function(function_id)
    rows = db.session.execute(
        select(FunctionVersion.id, FunctionVersion.created_at, FunctionVersion.commit_message, User.name)
        .outerjoin(User, User.id == FunctionVersion.user_id)
        .where(FunctionVersion.function_id == f.id)
        .order_by(*_version_order())
    )
    return [
        {"id": id, "created_at": created_at, "commit_message": message, "author": author}
        for id, created_at, message, author in rows
    ]


def previous_version_id(version: FunctionVersion) -> str | None:
    """The version recorded just before this one (None for the first)."""
    return _parent_id(version)


def compare_versions(function_id: str, from_id: str, to_id: str) -> dict:
    """Two versions side by side for the console: the code's hunks and the name and meta keys that differ."""
    before = get_version(function_id, from_id)
    after = get_version(function_id, to_id)
    return {
        "before": before,
        "after": after,
        "code": diffs.code_diff(before.content or "", after.content or ""),
        "meta": diffs.meta_changes(
            {"name": before.name, "meta": before.meta or {}}, {"name": after.name, "meta": after.meta or {}}
        ),
    }


def get_version(function_id: str, version_id: str) -> FunctionVersion:
    f = function_reads.get_function(function_id)
    if not isinstance(version_id, str) or "\x00" in version_id:
        raise NotFound(
            VERSION_NOT_FOUND_ERROR, kind="version_not_found"
        )  # no version has such an id, and PostgreSQL cannot be asked
    version = db.session.scalar(
        select(FunctionVersion).where(FunctionVersion.function_id == f.id, FunctionVersion.id == version_id)
    )
    if version is None:
        raise NotFound(VERSION_NOT_FOUND_ERROR, kind="version_not_found")
    return version


def diff_versions(function_id: str, from_id: str, to_id: str) -> dict:
    """What changed between two versions: name/meta before and after, and a unified diff of the code."""
    before = get_version(function_id, from_id)
    after = get_version(function_id, to_id)
    left = {"name": before.name, "meta": before.meta or {}}
    right = {"name": after.name, "meta": after.meta or {}}
    metadata = {
        key: {"before": left[key], "after": right[key]} for key in ("name", "meta") if left[key] != right[key]
    }
    old, new = before.content or "", after.content or ""
    patch = "\n".join(
        difflib.unified_diff(
            old.splitlines(),
            new.splitlines(),
            fromfile=f"{before.id}.py",
            tofile=f"{after.id}.py",
            lineterm="",
        )
    )
    return {
        "from_id": before.id,
        "to_id": after.id,
        "metadata": metadata,
        "content_diff": patch,
        "line_endings_only": old != new and not patch,
    }


def restore_version(
    user: User, function_id: str, version_id: str, reset_incompatible_valves: bool = False
) -> Function:
    """Make a saved version current again, loading its code as an update does."""
    f = function_reads.get_function(function_id)
    version = get_version(f.id, version_id)
    return functions.update_loaded(
        user,
        f,
        name=version.name,
        content=version.content,
        meta=version.meta or {},
        commit_message=None,
        reset_incompatible_valves=reset_incompatible_valves,
        restored=version,
    )


def delete_version(function_id: str, version_id: str) -> bool:
    f = function_reads.get_function(function_id)
    version = get_version(f.id, version_id)
    if f.version_id == version.id:
        raise ServiceError(CURRENT_VERSION_ERROR, kind="current_version")
    db.session.delete(version)
    audit.record("function.version_deleted", "function", f.id, {"version_id": version.id})
    db.session.commit()
    return True
