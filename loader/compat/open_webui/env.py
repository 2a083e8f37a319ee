"""Open WebUI's environment settings, read from the same environment variables with Open WebUI's defaults.

Only settings that function code reads are spelled out; any other name Open WebUI's ``env`` module has resolves
through the catalogue (see ``_catalogue.py``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from . import _catalogue

VERSION = "0.12.4"  # the Open WebUI release whose interface this package follows
WEBUI_NAME = os.environ.get("WEBUI_NAME", "Open WebUI")
if WEBUI_NAME != "Open WebUI":
    WEBUI_NAME += " (Open WebUI)"  # Open WebUI credits itself after any custom name
# WEBUI_URL is a config setting in Open WebUI 0.12.4, not an env one: `from open_webui.env import WEBUI_URL` fails.
ENV = os.environ.get("ENV", "prod")
SAFE_MODE = os.environ.get("SAFE_MODE", "false").lower() == "true"
OFFLINE_MODE = os.environ.get("OFFLINE_MODE", "false").lower() == "true"

OPEN_WEBUI_DIR = Path(__file__).parent
BACKEND_DIR = OPEN_WEBUI_DIR.parent
BASE_DIR = BACKEND_DIR.parent
# Function code that keeps files under DATA_DIR gets a private scratch folder: Sluice's own data is not exposed.
DATA_DIR = Path(os.environ.get("DATA_DIR", Path(tempfile.gettempdir()) / "sluice-function-data"))
FRONTEND_BUILD_DIR = Path(os.environ.get("FRONTEND_BUILD_DIR", BASE_DIR / "build"))
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR}/webui.db")

GLOBAL_LOG_LEVEL = os.environ.get("GLOBAL_LOG_LEVEL", "INFO").upper()
if GLOBAL_LOG_LEVEL not in logging.getLevelNamesMapping():
    GLOBAL_LOG_LEVEL = "INFO"

# Open WebUI 0.12.4 has no LOG_SOURCES any more; these only seed SRC_LOG_LEVELS.
_LOG_SOURCES = (
    "AUDIO",
    "COMFYUI",
    "CONFIG",
    "DB",
    "IMAGES",
    "MAIN",
    "MODELS",
    "OLLAMA",
    "OPENAI",
    "RAG",
    "WEBHOOK",
)


class _LogLevels(dict):
    """Per-source log levels: ``SRC_LOG_LEVELS["MAIN"]`` and any other key give a level name.

    Open WebUI 0.12.4 keeps this mapping empty for compatibility, so ``SRC_LOG_LEVELS["MAIN"]`` raises KeyError
    there; functions written for earlier releases index it at import, so here every key has a level.
    """

    def __missing__(self, key: str) -> str:
        return os.environ.get(f"{key}_LOG_LEVEL", GLOBAL_LOG_LEVEL).upper()


SRC_LOG_LEVELS = _LogLevels(
    {source: os.environ.get(f"{source}_LOG_LEVEL", GLOBAL_LOG_LEVEL) for source in _LOG_SOURCES}
)


def _int_or_none(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return default


def _timeout(raw: str, invalid: int | None) -> int | None:
    """A timeout in seconds as Open WebUI reads it: none when the variable is empty, `invalid` when not a number."""
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        return invalid


# Unset means no timeout at all in Open WebUI 0.12.4 (aiohttp's ClientTimeout(total=None)), not 300 seconds.
AIOHTTP_CLIENT_TIMEOUT = _timeout(os.environ.get("AIOHTTP_CLIENT_TIMEOUT", ""), 300)
AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST = _timeout(
    os.environ.get(
        "AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST", os.environ.get("AIOHTTP_CLIENT_TIMEOUT_OPENAI_MODEL_LIST", "10")
    ),
    10,
)
AIOHTTP_CLIENT_TIMEOUT_TOOL_SERVER_DATA = _timeout(
    os.environ.get("AIOHTTP_CLIENT_TIMEOUT_TOOL_SERVER_DATA", "10"), 10
)
_tool_server_timeout = os.environ.get("AIOHTTP_CLIENT_TIMEOUT_TOOL_SERVER", "")
AIOHTTP_CLIENT_TIMEOUT_TOOL_SERVER = (
    _timeout(_tool_server_timeout, AIOHTTP_CLIENT_TIMEOUT) if _tool_server_timeout else AIOHTTP_CLIENT_TIMEOUT
)
AIOHTTP_CLIENT_SESSION_SSL = os.environ.get("AIOHTTP_CLIENT_SESSION_SSL", "True").lower() == "true"
AIOHTTP_CLIENT_SESSION_TOOL_SERVER_SSL = (
    os.environ.get("AIOHTTP_CLIENT_SESSION_TOOL_SERVER_SSL", "True").lower() == "true"
)

WEBUI_AUTH = os.environ.get("WEBUI_AUTH", "True").lower() == "true"
WEBUI_SECRET_KEY = os.environ.get("WEBUI_SECRET_KEY", "")
ENABLE_FORWARD_USER_INFO_HEADERS = (
    os.environ.get("ENABLE_FORWARD_USER_INFO_HEADERS", "False").lower() == "true"
)
BYPASS_MODEL_ACCESS_CONTROL = os.environ.get("BYPASS_MODEL_ACCESS_CONTROL", "False").lower() == "true"
ENABLE_WEBSOCKET_SUPPORT = os.environ.get("ENABLE_WEBSOCKET_SUPPORT", "True").lower() == "true"
REDIS_URL = os.environ.get("REDIS_URL", "")
MODELS_CACHE_TTL = _timeout(os.environ.get("MODELS_CACHE_TTL", "1"), 1)
CHAT_RESPONSE_STREAM_DELTA_CHUNK_SIZE = _int_or_none("CHAT_RESPONSE_STREAM_DELTA_CHUNK_SIZE", 1)
ENABLE_FUNCTIONS = True
ENABLE_TOOLS = True
ENABLE_PIP_INSTALL_FRONTMATTER_REQUIREMENTS = False
PIP_OPTIONS = os.environ.get("PIP_OPTIONS", "").split()
PIP_PACKAGE_INDEX_OPTIONS = os.environ.get("PIP_PACKAGE_INDEX_OPTIONS", "").split()

__getattr__ = _catalogue.module_getattr(__name__)
