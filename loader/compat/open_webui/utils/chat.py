"""Open WebUI's chat completion entry points: calling a model is not available to function code in Sluice."""

from __future__ import annotations

from .. import _catalogue
from .._unavailable import unavailable_callable

generate_chat_completion = unavailable_callable("open_webui.utils.chat.generate_chat_completion")
generate_direct_chat_completion = unavailable_callable(
    "open_webui.utils.chat.generate_direct_chat_completion"
)
chat_completed = unavailable_callable("open_webui.utils.chat.chat_completed")

__getattr__ = _catalogue.module_getattr(__name__)
