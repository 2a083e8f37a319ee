"""Sluice's stand-in for the ``open_webui`` package, seen only by function code inside the loader's processes.

Community functions import Open WebUI internals at module level. This package gives them those names: the pure
helpers (message utilities, constants, settings) behave as Open WebUI's do, and everything that needs Open WebUI's
server (its database tables, storage, chat completion) imports fine but raises
:class:`~open_webui._unavailable.NotAvailableInSluice` when used. See ``loader/compat/README.md``.
"""

from ._finder import install as _install_finder

_install_finder()
