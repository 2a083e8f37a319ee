"""Open WebUI's users: the ``UserModel`` shape is real, the ``Users`` table is not available in Sluice."""

from __future__ import annotations

import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import _catalogue
from .._unavailable import unavailable_class, unavailable_object

# Comments, not docstrings, on these models: used as a valve's type, a docstring would show up as a description in
# the valves schema, and Open WebUI's own models have none.


# A user's settings; Open WebUI keeps any key the interface stores, beside `ui`.
class UserSettings(BaseModel):
    model_config = ConfigDict(extra="allow")

    ui: dict | None = {}


# A user as Open WebUI describes one (the fields function code reads from it, in Open WebUI's order).
class UserModel(BaseModel):
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
    settings: UserSettings | None = None
    oauth: dict | None = None
    scim: dict | None = None
    last_active_at: int
    updated_at: int
    created_at: int

    @field_validator("variables", mode="before")
    @classmethod
    def _variables_are_a_dict(cls, value: object) -> object:
        return value if isinstance(value, dict) else {}

    @model_validator(mode="after")
    def _default_profile_image(self) -> UserModel:
        # Open WebUI serves a generated avatar at this address for a user without a picture.
        if not self.profile_image_url:
            self.profile_image_url = f"/api/v1/users/{self.id}/profile/image"
        return self


# The SQLAlchemy table class and the table's query object: Sluice has no Open WebUI user table.
User = unavailable_class("open_webui.models.users.User")
Users = unavailable_object("open_webui.models.users.Users")

__getattr__ = _catalogue.module_getattr(__name__)
