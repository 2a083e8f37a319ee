"""Open WebUI's file storage: ``Storage`` is not available in Sluice."""

from __future__ import annotations

from .. import _catalogue
from .._unavailable import unavailable_object

Storage = unavailable_object("open_webui.storage.provider.Storage")

__getattr__ = _catalogue.module_getattr(__name__)
