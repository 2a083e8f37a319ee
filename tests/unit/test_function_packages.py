"""The packages function code imports are installed at the versions requirements-functions.txt pins (Open WebUI's)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def requirements(name: str) -> list[Requirement]:
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    return [
        Requirement(line)
        for line in (line.split("#")[0].strip() for line in lines)
        if line and line[0] != "-"
    ]


def pin(requirement: Requirement) -> str | None:
    (specifier,) = requirement.specifier if len(requirement.specifier) == 1 else (None,)
    return specifier.version if specifier is not None and specifier.operator == "==" else None


PINNED = [requirement for requirement in requirements("requirements-functions.txt") if pin(requirement)]


def test_the_packages_open_webui_pins_are_pinned():
    assert {"openai", "pydantic", "fastapi", "langchain-core", "anthropic"} <= {r.name for r in PINNED}


@pytest.mark.parametrize("requirement", PINNED, ids=lambda requirement: requirement.name)
def test_pinned_package_is_installed_at_its_pin(requirement):
    try:
        installed = version(requirement.name)
    except PackageNotFoundError:
        pytest.fail(f"{requirement.name} is not installed; run bin/setup")
    assert installed == pin(requirement), f"{requirement.name} {installed}: run bin/setup"


def test_the_apps_own_requirements_admit_every_pin():
    """A pin that left requirements.txt's range would make the app and its functions disagree."""
    pins = {requirement.name.lower(): pin(requirement) for requirement in PINNED}
    for requirement in requirements("requirements.txt"):
        if requirement.name.lower() in pins:
            assert requirement.specifier.contains(pins[requirement.name.lower()]), requirement
