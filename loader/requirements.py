"""Validate a function's `requirements:` frontmatter and check it against the installed packages.

Decisions (each one has a test):

* Splitting. Open WebUI splits the value on every comma, which breaks `pkg>=1,<2` into `pkg>=1` and `<2`.
  Here commas split only outside brackets, parentheses and quotes (`pkg[a,b]`, `pkg (>=1,<2)`), and a chunk
  that starts with a version operator (`<`, `>`, `=`, `!`, `~`) continues the previous requirement.
* Blank items are ignored, and a value that is only `None`, `null` or `n/a` means "no requirements".
* Each item is a PEP 508 specifier parsed by `packaging`; anything else (`[List of dependencies, …]`,
  `requests pydantic`, a local path) is reported as invalid with a reason and never reaches pip.
* URLs: a bare URL (`git+https://…`) is invalid, because PEP 508 needs the package name to check what is
  installed; the reason says to write `name @ git+https://…`. Direct references `name @ URL` are accepted when
  the scheme is `https` or `git+https` (no plain http, file or ssh: the server would fetch or read them).
  Such a requirement is satisfied by any installed version of `name`.
* Installed packages are looked up with `importlib.metadata` on `sys.path` first, then in `packages_dir`
  (where admin installs go), the first match winning. This assumes function code sees `packages_dir`
  after the app's own packages; the loader must put it on its path in that order for the report to be true.
  A requirement whose marker does not match this environment (`; python_version < "3.8"`) does not apply
  and is never missing.
* Extras are recorded but not checked: `pkg[extra]` is satisfied when `pkg` itself is.
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import asdict, dataclass, field

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier
from packaging.version import InvalidVersion, Version

ALLOWED_URL_SCHEMES = ("https://", "git+https://")
_NO_REQUIREMENTS = frozenset({"none", "null", "n/a"})
_OPERATOR_START = ("<", ">", "=", "!", "~")
_OPENING = {"[": "]", "(": ")"}


class RequirementError(ValueError):
    """A requirement string that must not be passed to pip; the message says why."""


@dataclass(frozen=True)
class RequirementStatus:
    """One valid requirement and how the installed packages meet it."""

    requirement: str
    name: str
    specifier: str
    extras: list[str]
    marker: str | None
    url: str | None
    applies: bool
    installed_version: str | None
    satisfied: bool
    canonical: str = field(repr=False)

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["canonical"]
        return data


@dataclass
class RequirementsReport:
    """What a `requirements:` value asks for, what is missing and what could not be understood."""

    requirements: list[RequirementStatus] = field(default_factory=list)
    invalid: list[dict[str, str]] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """Canonical specifiers of the applicable requirements that are not installed, ready for pip."""
        return [item.canonical for item in self.requirements if item.applies and not item.satisfied]

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.missing

    def to_dict(self) -> dict:
        return {
            "requirements": [item.to_dict() for item in self.requirements],
            "missing": self.missing,
            "invalid": [dict(item) for item in self.invalid],
        }


def parse_requirements(value: str | None, packages_dir: str | None = None) -> RequirementsReport:
    """Validate a comma-separated `requirements:` value and check each item against what is installed."""
    report = RequirementsReport()
    if value is None or value.strip().lower() in _NO_REQUIREMENTS:
        return report
    search_path = [*sys.path, packages_dir] if packages_dir else list(sys.path)
    for text in split_requirements(value):
        try:
            requirement = parse_requirement(text)
        except RequirementError as error:
            report.invalid.append({"requirement": text, "reason": str(error)})
            continue
        report.requirements.append(_status(text, requirement, search_path))
    return report


def split_requirements(value: str) -> list[str]:
    """Split a comma-separated list of specifiers without breaking `pkg>=1,<2` or `pkg[a,b]` apart."""
    chunks: list[str] = []
    current: list[str] = []
    closers: list[str] = []
    quote = ""
    for char in value:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in _OPENING:
            closers.append(_OPENING[char])
        elif closers and char == closers[-1]:
            closers.pop()
        elif char == "," and not closers:
            chunks.append("".join(current))
            current = []
            continue
        current.append(char)
    chunks.append("".join(current))

    items: list[str] = []
    for chunk in chunks:
        text = chunk.strip()
        if not text:
            continue
        if text.startswith(_OPERATOR_START) and items:
            items[-1] = f"{items[-1]},{text}"
        else:
            items.append(text)
    return items


def parse_requirement(text: str) -> Requirement:
    """Parse one PEP 508 specifier, or raise `RequirementError` saying why it is not acceptable."""
    text = text.strip()
    if not text:
        raise RequirementError("empty requirement")
    if "://" in text.split("@", 1)[0] or text.startswith("git+"):
        raise RequirementError("a URL needs the package name in front of it: write it as 'name @ URL'")
    try:
        requirement = Requirement(text)
    except (InvalidRequirement, InvalidSpecifier) as error:
        # packaging's message continues with the text and a caret on later lines; the first line is the reason.
        raise RequirementError(str(error).splitlines()[0] or "not a valid requirement") from None
    if requirement.url is not None and not requirement.url.startswith(ALLOWED_URL_SCHEMES):
        raise RequirementError("only https:// and git+https:// URLs are accepted")
    return requirement


def _status(text: str, requirement: Requirement, search_path: list[str]) -> RequirementStatus:
    applies = _marker_applies(requirement)
    installed = _installed_version(requirement.name, search_path)
    return RequirementStatus(
        requirement=text,
        name=requirement.name,
        specifier=str(requirement.specifier),
        extras=sorted(requirement.extras),
        marker=str(requirement.marker) if requirement.marker else None,
        url=requirement.url,
        applies=applies,
        installed_version=installed,
        satisfied=not applies or _version_satisfies(requirement, installed),
        canonical=str(requirement),
    )


def _marker_applies(requirement: Requirement) -> bool:
    if requirement.marker is None:
        return True
    try:
        return requirement.marker.evaluate()
    except Exception:  # an undefined marker variable: let pip decide rather than hide the requirement
        return True


def _installed_version(name: str, search_path: list[str]) -> str | None:
    # `distributions(name=…)` normalises the name, so `google-genai` finds `google_genai-1.2.dist-info`.
    for distribution in importlib.metadata.distributions(name=name, path=search_path):
        version = distribution.version
        if version:
            return version
    return None


def _version_satisfies(requirement: Requirement, installed: str | None) -> bool:
    if installed is None:
        return False
    if not requirement.specifier:
        return True
    try:
        version = Version(installed)
    except InvalidVersion:
        return False
    # An installed pre-release counts: pip would not replace it for `pkg>=1` either.
    return requirement.specifier.contains(version, prereleases=True)
