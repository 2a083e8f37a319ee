"""Fixture functions loaded in this process: these tests are about call conventions, not isolation."""

from __future__ import annotations
import __future__

import asyncio
import itertools
import sys
import types
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "runtime"
CLASSES = ("Pipe", "Filter", "Action")
_count = itertools.count()


def load_instance(name: str):
    """Run fixture ``name`` as the loader does (unevaluated annotations, as in Open WebUI) and instantiate it."""
    path = FIXTURES / f"{name}.py"
    module_name = f"runtime_fixture_{name}_{next(_count)}"
    code = compile(
        path.read_text(), str(path), "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True
    )
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module  # pydantic resolves postponed annotations through sys.modules
    exec(code, module.__dict__)
    cls = next(getattr(module, attribute) for attribute in CLASSES if hasattr(module, attribute))
    return cls()


@pytest.fixture
def load():
    return load_instance


class Sink:
    """A sink that keeps what it was sent, in order."""

    def __init__(self):
        self.sent: list[tuple[str, object]] = []

    def __call__(self, kind, payload):
        self.sent.append((kind, payload))

    def of(self, kind):
        return [payload for sent_kind, payload in self.sent if sent_kind == kind]


@pytest.fixture
def sink():
    return Sink()


@pytest.fixture
def run():
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run
