"""Open WebUI's model records: the ``Models`` table is not available in Sluice."""

from __future__ import annotations

from .. import _catalogue
from .._unavailable import unavailable_class, unavailable_object

Model = unavailable_class("open_webui.models.models.Model")
Models = unavailable_object("open_webui.models.models.Models")

__getattr__ = _catalogue.module_getattr(__name__)
