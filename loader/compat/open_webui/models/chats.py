"""Open WebUI's chats: the ``Chats`` table is not available in Sluice."""

from __future__ import annotations

from pydantic import BaseModel

from .. import _catalogue
from .._unavailable import unavailable_class, unavailable_object


class ChatForm(BaseModel):
    chat: dict
    variables: dict | None = None
    folder_id: str | None = None


Chat = unavailable_class("open_webui.models.chats.Chat")
Chats = unavailable_object("open_webui.models.chats.Chats")

__getattr__ = _catalogue.module_getattr(__name__)
