"""Fixtures for the loader's tests: a loader with a short timeout, and a way to write function sources inline."""

from __future__ import annotations

import textwrap
import uuid

import pytest


@pytest.fixture(scope="module")
def loader_fast():
    """The loader with a 2 s timeout and an empty cache; the previous settings come back afterwards."""
    import loader
    from loader import runner

    before = runner.settings()
    loader.configure(timeout=2)
    loader.clear_cache()
    loader.start()  # so that no test's timing includes the zygote's start-up
    yield loader
    loader.configure(
        timeout=before.timeout,
        memory_mb=before.memory_mb,
        packages_dir=before.packages_dir,
        output_cap=before.output_cap,
        result_cap=before.result_cap,
    )
    loader.clear_cache()


@pytest.fixture
def source():
    """Dedent an inline function source (so tests can write it indented) and make it unique (so no cache answers)."""

    def make(text: str) -> str:
        return textwrap.dedent(text).lstrip("\n") + f"\n# {uuid.uuid4().hex}\n"

    return make
