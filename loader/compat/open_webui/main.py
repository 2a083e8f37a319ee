"""Open WebUI's application object, reduced to the state function code reads at import.

``app.state.MODELS`` is empty: Sluice's loader knows of no models, so a function that builds a ``Literal`` of model
ids from it gets an empty choice (and must cope, as it must on a fresh Open WebUI). Serving requests and generating
completions are not available.
"""

from __future__ import annotations

import types
from typing import Any

from . import _catalogue, config, env
from ._unavailable import unavailable_callable


class _Settings:
    """``app.state.config``: a setting by name, from Sluice's ``open_webui.config``, then ``open_webui.env``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        for module in (config, env):
            if name in vars(module):
                return vars(module)[name]
        raise AttributeError(f"app.state.config.{name} is not available in Sluice")


class _App:
    """Stands where Open WebUI's FastAPI application stands; only its ``state`` carries data."""

    def __init__(self) -> None:
        self.title = env.WEBUI_NAME
        self.version = "0.1.0"  # FastAPI's default: Open WebUI does not set its application's version
        self.state = types.SimpleNamespace(
            MODELS={},
            BASE_MODELS=[],
            FUNCTIONS={},
            TOOL_SERVERS=[],
            WEBUI_NAME=env.WEBUI_NAME,
            redis=None,  # no Redis here, as in an Open WebUI run without REDIS_URL
            config=_Settings(),
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return unavailable_callable(f"open_webui.main.app.{name}")

    def __repr__(self) -> str:
        return "<open_webui.main.app (Sluice compatibility stand-in)>"


app = _App()

generate_chat_completions = unavailable_callable("open_webui.main.generate_chat_completions")
chat_completion = unavailable_callable("open_webui.main.chat_completion")
# Functions written for Open WebUI 0.3 import the sub-application by this name.
webui_app = app

__getattr__ = _catalogue.module_getattr(__name__)
