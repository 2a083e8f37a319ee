"""Open WebUI's files: the form and model shapes are real, the ``Files`` table is not available in Sluice."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .. import _catalogue
from .._unavailable import unavailable_class, unavailable_object


# What a function passes to `Files.insert_new_file` to register a file it wrote. A comment rather than a docstring:
# as a valve's type, a docstring would become a description in the valves schema, which Open WebUI's has not.
class FileForm(BaseModel):
    id: str
    hash: str | None = None
    filename: str
    path: str
    data: dict = {}
    meta: dict = {}


class FileMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    content_type: str | None = None
    size: int | None = None


class FileModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    user_id: str
    hash: str | None = None
    filename: str
    path: str | None = None
    data: dict | None = None
    meta: dict | None = None
    created_at: int | None
    updated_at: int | None


File = unavailable_class("open_webui.models.files.File")
Files = unavailable_object("open_webui.models.files.Files")

__getattr__ = _catalogue.module_getattr(__name__)
