"""Each function's own writable home, `<homes_dir>/<function id>`, where its code may write what Open WebUI would let
it write under the home directory and the per-user cache, config and data folders, kept across loads and calls.

The zygote makes the home (`make`) before it hands a job on, because it still lives in the host's mount namespace:
the children's namespaces are copies of a template's in which every mount but the temporary folders is read-only,
and the homes folder usually lies in the instance folder inside the app's folder. The child then only opens the
home and binds it, writable, into its own namespace (loader/child.py).
"""

from __future__ import annotations

import contextlib
import os


def paths(request: dict) -> tuple[str | None, str | None]:
    """(homes folder, this job's function home) from a job, or (None, None) when it names no homes folder or no
    function. The function id becomes a folder name of letters, digits and underscores only."""
    homes = request.get("homes_dir")
    function_id = request.get("function_id")
    if not isinstance(homes, str) or not homes or not isinstance(function_id, str) or not function_id:
        return None, None
    homes = os.path.realpath(homes)
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in function_id)
    return homes, os.path.join(homes, name)


def make(request: dict) -> bool:
    """Make the job's function home (0700, owned by the identity the job's child takes, if any); False when the job
    has none or it cannot be made, in which case the child's scratch directory stands in."""
    homes, home = paths(request)
    if home is None:
        return False
    identity = request.get("privileges")
    try:
        os.makedirs(homes, mode=0o711, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(home, 0o700)
        if os.path.islink(home) or not os.path.isdir(home):
            return False
        if isinstance(identity, dict):
            os.chown(home, int(identity["uid"]), int(identity["gid"]), follow_symlinks=False)
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return True
