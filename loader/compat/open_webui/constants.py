"""Open WebUI's constants that function code compares against (``TASKS``) or shows (``ERROR_MESSAGES``)."""

from __future__ import annotations

from enum import StrEnum

from . import _catalogue


class TASKS(StrEnum):
    """The background task a chat request was made for (``__task__`` in a filter's inlet)."""

    @staticmethod
    def DEFAULT(task: str = "") -> str:  # noqa: N802 - Open WebUI's name; a function, not a member
        return task or "generation"

    TITLE_GENERATION = "title_generation"
    FOLLOW_UP_GENERATION = "follow_up_generation"
    TAGS_GENERATION = "tags_generation"
    EMOJI_GENERATION = "emoji_generation"
    QUERY_GENERATION = "query_generation"
    IMAGE_PROMPT_GENERATION = "image_prompt_generation"
    AUTOCOMPLETE_GENERATION = "autocomplete_generation"
    FUNCTION_CALLING = "function_calling"
    MOA_RESPONSE_GENERATION = "moa_response_generation"


class ERROR_MESSAGES(StrEnum):
    """User-facing error texts; ``DEFAULT(err)`` and the other parameterised ones are plain functions here."""

    UNAUTHORIZED = "401 Unauthorized"
    ACCESS_PROHIBITED = "You do not have permission to access this resource."
    ACTION_PROHIBITED = "The requested action has been restricted as a security measure."
    NOT_FOUND = "We could not find what you're looking for :/"
    USER_NOT_FOUND = "We could not find what you're looking for :/"
    INVALID_TOKEN = "Your session has expired or the token is invalid. Please sign in again."
    API_KEY_NOT_FOUND = "The API key is missing."
    FILE_NOT_FOUND = "The file could not be found."
    FILE_NOT_PROCESSED = "The file could not be processed."
    EMPTY_CONTENT = "The content provided is empty."
    RATE_LIMIT_EXCEEDED = "API rate limit exceeded"
    OLLAMA_NOT_FOUND = "WebUI could not connect to Ollama"
    SERVER_CONNECTION_ERROR = "Open WebUI: Server Connection Error"

    @staticmethod
    def DEFAULT(err: object = "", fallback: str = "") -> str:  # noqa: N802 - Open WebUI's name
        # An exception's own text is never shown: only the caller's fallback, as Open WebUI does.
        if not err:
            return "Something went wrong :/"
        if isinstance(err, Exception):
            return f"[ERROR: {fallback}]" if fallback else "Something went wrong :/"
        return f"[ERROR: {err}]"

    @staticmethod
    def MODEL_NOT_FOUND(name: str = "") -> str:  # noqa: N802
        return f"Model '{name}' was not found"

    @staticmethod
    def INCORRECT_FORMAT(err: str = "") -> str:  # noqa: N802
        return f"Invalid format. Please use the correct format{err}"


class MESSAGES(StrEnum):
    @staticmethod
    def DEFAULT(msg: str = "") -> str:  # noqa: N802
        return msg or ""


__getattr__ = _catalogue.module_getattr(__name__)
