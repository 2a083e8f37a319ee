"""Calling a loaded function's methods with Open WebUI's conventions, in the process that holds the instance.

Nothing here starts a process or imports Flask: the loader's worker process drives these on its asyncio loop.
The facts followed are in ``shared/RUNTIME.md`` (sections 1, 2, 4 and 6).
"""

from loader.runtime.calls import (
    METHODS,
    filter_order,
    filter_priority,
    invoke,
    iterate_result,
    list_pipes,
    set_valves,
    sub_actions,
)
from loader.runtime.context import CallContext, EventRecorder, build_kwargs, offered_names, user_valves

__all__ = [
    "METHODS",
    "CallContext",
    "EventRecorder",
    "build_kwargs",
    "filter_order",
    "filter_priority",
    "invoke",
    "iterate_result",
    "list_pipes",
    "offered_names",
    "set_valves",
    "sub_actions",
    "user_valves",
]
