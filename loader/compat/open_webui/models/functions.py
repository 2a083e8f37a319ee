"""Open WebUI's functions table: not available to function code in Sluice."""

from __future__ import annotations

from .. import _catalogue
from .._unavailable import unavailable_class, unavailable_object

Function = unavailable_class("open_webui.models.functions.Function")
Functions = unavailable_object("open_webui.models.functions.Functions")

__getattr__ = _catalogue.module_getattr(__name__)
