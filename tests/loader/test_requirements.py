"""Requirements: validation, splitting and the installed-version check (SPEC §4.5)."""

import importlib.metadata

import pytest

from loader.requirements import RequirementError, parse_requirement, parse_requirements, split_requirements

PYDANTIC_VERSION = importlib.metadata.version("pydantic")


def make_distribution(directory, name, version):
    """Create the metadata pip leaves behind for an installed distribution."""
    dist_info = directory / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.mark.parametrize(
    ("value", "items"),
    [
        pytest.param("requests, pydantic", ["requests", "pydantic"], id="simple"),
        pytest.param("requests,pydantic,", ["requests", "pydantic"], id="trailing-comma"),
        pytest.param(" , requests ,, ", ["requests"], id="blanks-ignored"),
        pytest.param("pkg>=1,<2", ["pkg>=1,<2"], id="comma-inside-specifier"),
        pytest.param("pkg >= 1, < 2, other", ["pkg >= 1,< 2", "other"], id="spaced-specifier-then-name"),
        pytest.param("pkg>=1,!=1.5,~=1.4, b==2", ["pkg>=1,!=1.5,~=1.4", "b==2"], id="every-operator"),
        pytest.param("pkg[a,b]>=1, c", ["pkg[a,b]>=1", "c"], id="comma-inside-extras"),
        pytest.param("pkg (>=1,<2), c", ["pkg (>=1,<2)", "c"], id="comma-inside-parentheses"),
        pytest.param(
            "pkg; platform_release == 'a,b', c", ["pkg; platform_release == 'a,b'", "c"], id="comma-in-quotes"
        ),
        pytest.param(
            "[List of dependencies, e.g., jinja2, markdown]",
            ["[List of dependencies, e.g., jinja2, markdown]"],
            id="placeholder-kept-whole",
        ),
    ],
)
def test_split(value, items):
    assert split_requirements(value) == items


@pytest.mark.parametrize("value", [None, "", "   ", "None", "none", "NULL", "n/a"])
def test_no_requirements(value):
    report = parse_requirements(value)
    assert report.to_dict() == {"requirements": [], "missing": [], "invalid": []}
    assert report.ok


def test_installed_package_is_satisfied():
    report = parse_requirements("pydantic>=2, Pydantic_Core")
    first, second = report.requirements
    assert (first.name, first.specifier, first.installed_version, first.satisfied) == (
        "pydantic",
        ">=2",
        PYDANTIC_VERSION,
        True,
    )
    assert second.satisfied and second.installed_version  # name normalised: pydantic-core
    assert report.missing == [] and report.invalid == [] and report.ok


def test_wrong_version_is_missing():
    report = parse_requirements("pydantic<1")
    (item,) = report.requirements
    assert item.installed_version == PYDANTIC_VERSION
    assert not item.satisfied
    assert report.missing == ["pydantic<1"]
    assert not report.ok


def test_absent_package_is_missing_in_canonical_form():
    report = parse_requirements("google-genai==1.2, sluice-surely-absent-pkg >= 1 , < 3")
    assert [item.installed_version for item in report.requirements] == [None, None]
    assert report.missing == ["google-genai==1.2", "sluice-surely-absent-pkg<3,>=1"]


def test_packages_dir_is_searched(tmp_path):
    make_distribution(tmp_path, "google-genai", "1.2.0")
    report = parse_requirements("google-genai>=1.1", packages_dir=str(tmp_path))
    (item,) = report.requirements
    assert (item.installed_version, item.satisfied) == ("1.2.0", True)
    assert report.missing == []
    # Without the directory the same requirement is missing.
    assert parse_requirements("google-genai>=1.1").missing == ["google-genai>=1.1"]


def test_app_packages_come_before_packages_dir(tmp_path):
    make_distribution(tmp_path, "pydantic", "99.0")
    (item,) = parse_requirements("pydantic", packages_dir=str(tmp_path)).requirements
    assert item.installed_version == PYDANTIC_VERSION


def test_extras_recorded_and_checked_on_the_package():
    (item,) = parse_requirements("pydantic[email, timezone]>=1").requirements
    assert item.extras == ["email", "timezone"]
    assert item.satisfied


def test_marker_that_does_not_apply_is_never_missing():
    report = parse_requirements('sluice-surely-absent-pkg; python_version < "3.0"')
    (item,) = report.requirements
    assert item.marker == 'python_version < "3.0"'
    assert item.applies is False and item.satisfied is True
    assert report.missing == []


def test_marker_that_applies_is_checked():
    report = parse_requirements('sluice-surely-absent-pkg; python_version >= "3.0"')
    assert report.missing == ['sluice-surely-absent-pkg; python_version >= "3.0"']


def test_prerelease_installed_counts(tmp_path):
    make_distribution(tmp_path, "sluice-pre", "2.0rc1")
    (item,) = parse_requirements("sluice-pre>=1", packages_dir=str(tmp_path)).requirements
    assert item.satisfied


def test_direct_reference_accepted_and_satisfied_by_any_installed_version(tmp_path):
    make_distribution(tmp_path, "mytool", "0.1")
    report = parse_requirements(
        "mytool @ git+https://github.com/example/mytool.git", packages_dir=str(tmp_path)
    )
    (item,) = report.requirements
    assert item.url == "git+https://github.com/example/mytool.git"
    assert item.satisfied
    missing = parse_requirements("othertool @ https://example.com/othertool-1.0.tar.gz").missing
    assert missing == ["othertool @ https://example.com/othertool-1.0.tar.gz"]


@pytest.mark.parametrize(
    ("text", "reason_contains"),
    [
        pytest.param(
            "[List of dependencies, e.g., jinja2, markdown]", "package name", id="template-placeholder"
        ),
        pytest.param("git+https://github.com/example/tool.git", "name @ URL", id="bare-git-url"),
        pytest.param("https://example.com/pkg.tar.gz", "name @ URL", id="bare-https-url"),
        pytest.param("tool @ http://example.com/tool.tar.gz", "https://", id="plain-http"),
        pytest.param("tool @ file:///etc/passwd", "https://", id="file-url"),
        pytest.param("tool @ git+ssh://git@github.com/x/y.git", "https://", id="ssh-url"),
        pytest.param("requests pydantic", "", id="space-separated"),
        pytest.param("./local/path", "", id="local-path"),
        pytest.param("--index-url https://evil.example", "", id="pip-option"),
        pytest.param("-r requirements.txt", "", id="requirements-file"),
        pytest.param("pkg>=>1", "", id="bad-operator"),
        pytest.param("pkg==1.0.*.x", "", id="bad-version"),
    ],
)
def test_invalid_requirements_are_reported_not_passed_on(text, reason_contains):
    report = parse_requirements(f"requests, {text}")
    assert [item.name for item in report.requirements] == ["requests"]
    (invalid,) = report.invalid
    assert invalid["requirement"] == text
    assert reason_contains in invalid["reason"]
    assert "\n" not in invalid["reason"]
    assert text not in report.missing
    assert not report.ok


def test_to_dict_shape():
    data = parse_requirements("pydantic>=2, sluice-surely-absent-pkg, ???").to_dict()
    assert list(data) == ["requirements", "missing", "invalid"]
    assert data["requirements"][0] == {
        "requirement": "pydantic>=2",
        "name": "pydantic",
        "specifier": ">=2",
        "extras": [],
        "marker": None,
        "url": None,
        "applies": True,
        "installed_version": PYDANTIC_VERSION,
        "satisfied": True,
    }
    assert data["missing"] == ["sluice-surely-absent-pkg"]
    assert data["invalid"][0]["requirement"] == "???"


def test_parse_requirement_raises_value_error_with_reason():
    with pytest.raises(RequirementError) as caught:
        parse_requirement("not a requirement")
    assert isinstance(caught.value, ValueError)
    assert str(caught.value)
    assert str(parse_requirement(" requests >= 2 ")) == "requests>=2"
