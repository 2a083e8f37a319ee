"""Fixtures for the loader's tests: a loader with a short timeout, and a way to write function sources inline."""

from __future__ import annotations

import pytest

from tests.loader.support import unique


@pytest.fixture(scope="module")
def loader_fast():
    """The loader with a 2 s timeout and an empty cache; the previous settings come back afterwards."""
    import loader
    from loader import client

    before = client.settings()
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
    return unique


@pytest.fixture
def dropping(loader_fast):
    """The loader with children switching to nobody whatever that user can read."""
    from loader import client

    before = client.settings()
    loader_fast.configure(drop_privileges="always", load_user="nobody")
    yield loader_fast
    loader_fast.configure(drop_privileges=before.drop_privileges, load_user=before.load_user)
