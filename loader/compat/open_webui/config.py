"""Open WebUI's configuration names that function code reads, with Open WebUI's defaults.

Open WebUI keeps these in its database and environment; Sluice's loader has neither, so each is read from the
environment variable of the same name, else Open WebUI's default. Any other name Open WebUI's ``config`` module has
resolves through the catalogue.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import _catalogue
from .env import DATA_DIR, WEBUI_NAME  # noqa: F401 - re-exported, as Open WebUI's config does


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).lower() == "true"


def _list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(";") if item.strip()]


UPLOAD_DIR = DATA_DIR / "uploads"
CACHE_DIR = DATA_DIR / "cache"
for _folder in (UPLOAD_DIR, CACHE_DIR):
    try:
        _folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only sandbox: code that writes there will say so itself
        pass
WEBUI_URL = os.environ.get("WEBUI_URL", "")
STATIC_DIR = Path(os.environ.get("STATIC_DIR", Path(__file__).parent / "static"))

ENABLE_OLLAMA_API = _flag("ENABLE_OLLAMA_API", "True")
OLLAMA_BASE_URLS = _list("OLLAMA_BASE_URLS", os.environ.get("OLLAMA_BASE_URL", "http://localhost:11434"))
ENABLE_OPENAI_API = _flag("ENABLE_OPENAI_API", "True")
OPENAI_API_BASE_URLS = _list(
    "OPENAI_API_BASE_URLS", os.environ.get("OPENAI_API_BASE_URL", "https://api.openai.com/v1")
)
OPENAI_API_KEYS = _list("OPENAI_API_KEYS", os.environ.get("OPENAI_API_KEY", ""))

DEFAULT_MODELS = os.environ.get("DEFAULT_MODELS")
DEFAULT_USER_ROLE = os.environ.get("DEFAULT_USER_ROLE", "pending")
ENABLE_SIGNUP = _flag("ENABLE_SIGNUP", "True")
ENABLE_API_KEYS = _flag("ENABLE_API_KEYS", "False")
ENABLE_IMAGE_GENERATION = _flag("ENABLE_IMAGE_GENERATION", "")
IMAGE_GENERATION_ENGINE = os.environ.get("IMAGE_GENERATION_ENGINE", "openai")
IMAGE_GENERATION_MODEL = os.environ.get("IMAGE_GENERATION_MODEL", "")
IMAGE_SIZE = os.environ.get("IMAGE_SIZE", "512x512")
RAG_EMBEDDING_MODEL = os.environ.get("RAG_EMBEDDING_MODEL", "sentence-transformers/all-MiniLM-L6-v2")
TASK_MODEL = os.environ.get("TASK_MODEL", "")
TASK_MODEL_EXTERNAL = os.environ.get("TASK_MODEL_EXTERNAL", "")
TITLE_GENERATION_PROMPT_TEMPLATE = os.environ.get("TITLE_GENERATION_PROMPT_TEMPLATE", "")
WEBHOOK_URL = os.environ.get("WEBHOOK_URL", "")
CORS_ALLOW_ORIGIN = os.environ.get("CORS_ALLOW_ORIGIN", "*").split(";")

__getattr__ = _catalogue.module_getattr(__name__)
