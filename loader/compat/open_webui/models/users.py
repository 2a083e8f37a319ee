"""Open WebUI's users: the ``UserModel`` shape is real, the ``Users`` table is not available in Sluice."""

from __future__ import annotations

import datetime

from pydantic import BaseModel, ConfigDict, Field

from .. import _catalogue
from .._unavailable import unavailable_class, unavailable_object


class UserModel(BaseModel):
    """A user as Open WebUI describes one (the fields function code reads from it)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    username: str | None = None
    role: str = "pending"
    name: str
    profile_image_url: str | None = None
    profile_banner_image_url: str | None = None
    bio: str | None = None
    gender: str | None = None
    date_of_birth: datetime.date | None = None
    timezone: str | None = None
    presence_state: str | None = None
    status_emoji: str | None = None
    status_message: str | None = None
    status_expires_at: int | None = None
    info: dict | None = None
    variables: dict = Field(default_factory=dict, exclude=True)
    settings: dict | None = None
    oauth: dict | None = None
    scim: dict | None = None
    last_active_at: int
    updated_at: int
    created_at: int


# The SQLAlchemy table class and the table's query object: Sluice has no Open WebUI user table.
User = unavailable_class("open_webui.models.users.User")
Users = unavailable_object("open_webui.models.users.Users")

__getattr__ = _catalogue.module_getattr(__name__)
