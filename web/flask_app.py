"""The Flask class Sluice's app is made of."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask


class SluiceFlask(Flask):
    """Flask, remembering which views and hooks are synchronous.

    Flask asks ``inspect.iscoroutinefunction`` of the view and of every before/after/teardown hook on each request
    (seven times for an API read): a twentieth of a small answer's time, always with the same answer. A hook or view
    is registered once, so the cache stays as small as the app (bound methods compare equal, so they hit too).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sync_callables: dict[Callable, Callable] = {}

    def ensure_sync(self, func: Callable) -> Callable:
        try:
            return self._sync_callables[func]
        except KeyError:
            made = super().ensure_sync(func)
            self._sync_callables[func] = made
            return made
        except TypeError:  # not hashable: nothing to remember it by
            return super().ensure_sync(func)
