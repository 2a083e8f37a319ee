"""Stand-ins for Open WebUI internals that have no counterpart in Sluice.

Community functions import server objects (``Users``, ``Storage``, ``generate_chat_completion``…) at module level,
but only use them while handling a chat. These stand-ins import, subclass, annotate and print fine; the moment a
function actually *uses* one, it raises :class:`NotAvailableInSluice` naming what it tried to reach.
"""

from __future__ import annotations

from typing import Any, Union

__all__ = [
    "NotAvailableInSluice",
    "UnavailableClass",
    "unavailable_callable",
    "unavailable_class",
    "unavailable_object",
]


class NotAvailableInSluice(NotImplementedError):
    """Raised when function code uses an Open WebUI internal that Sluice does not provide."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"{name} is not available in Sluice")


def unavailable_callable(name: str) -> Any:
    """Return a function named ``name`` that raises when called (awaiting it is never reached)."""

    def _unavailable(*args: Any, **kwargs: Any) -> Any:
        raise NotAvailableInSluice(name)

    _unavailable.__name__ = _unavailable.__qualname__ = name.rsplit(".", 1)[-1]
    _unavailable.__doc__ = f"Stand-in for Open WebUI's {name}: not available in Sluice."
    _unavailable.__sluice_unavailable__ = name  # type: ignore[attr-defined]
    return _unavailable


class _UnavailableObject:
    """An object whose every public attribute is an unavailable callable (``Users.get_user_by_id(...)``)."""

    __slots__ = ("_sluice_name",)

    def __init__(self, name: str):
        object.__setattr__(self, "_sluice_name", name)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return unavailable_callable(f"{self._sluice_name}.{attr}")

    def __setattr__(self, attr: str, value: Any) -> None:
        raise NotAvailableInSluice(f"{self._sluice_name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotAvailableInSluice(self._sluice_name)

    def __repr__(self) -> str:
        return f"<{self._sluice_name}: not available in Sluice>"

    def __bool__(self) -> bool:
        # `if Storage:` style guards should take the "missing" branch rather than raise.
        return False

    # Used as a type (``x: Optional[Stand-in]`` in a pydantic model, ``Stand-in | None``), it accepts anything.
    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.any_schema()

    def __or__(self, other: Any) -> Any:
        return Union[self, other]  # noqa: UP007 - `|` would call back into this method

    def __ror__(self, other: Any) -> Any:
        return Union[other, self]  # noqa: UP007


def unavailable_object(name: str) -> Any:
    """Return a stand-in for a module-level singleton such as ``Users`` or ``Storage``."""
    return _UnavailableObject(name)


class _UnavailableMeta(type):
    """Metaclass of stand-in classes: class attributes resolve to unavailable callables."""

    def __getattr__(cls, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return unavailable_callable(f"{cls.__sluice_name__}.{attr}")

    def __repr__(cls) -> str:
        return f"<class {cls.__sluice_name__}: not available in Sluice>"


class UnavailableClass(metaclass=_UnavailableMeta):
    """Base of stand-in classes.

    The stand-in itself cannot be instantiated; a class that function code derives from it can (its own
    ``__init__`` runs), so ``class MyForm(SomeStandIn): ...`` at import time works. Used as an annotation in a
    pydantic model, it accepts any value, so a ``Valves`` field typed with it still yields a schema.
    """

    __sluice_name__ = "open_webui"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if type(self).__dict__.get("__sluice_stub__"):
            raise NotAvailableInSluice(type(self).__sluice_name__)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__sluice_stub__" not in cls.__dict__:
            cls.__sluice_stub__ = False

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.any_schema()


def unavailable_class(name: str) -> type:
    """Return a stand-in class for ``name`` (a dotted Open WebUI path), usable as a base class or annotation."""
    short = name.rsplit(".", 1)[-1]
    module = name.rsplit(".", 1)[0] if "." in name else "open_webui"
    cls = _UnavailableMeta(short, (UnavailableClass,), {"__sluice_name__": name, "__sluice_stub__": True})
    cls.__module__ = module
    cls.__qualname__ = short
    return cls
