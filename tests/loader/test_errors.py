"""Which package a failed import names: the distribution a user would install, not the module's first word."""

from __future__ import annotations

import sys

import pytest

from loader.errors import INSTALL_ACTION, describe_exception, package_for_module


@pytest.mark.parametrize(
    ("module", "package"),
    [
        ("azure.identity", "azure-identity"),
        ("azure.identity.aio", "azure-identity"),
        ("azure.storage.blob", "azure-storage-blob"),
        ("azure.ai.inference.models", "azure-ai-inference"),
        ("google.cloud.storage", "google-cloud-storage"),
        ("google.api_core.exceptions", "google-api-core"),
        ("google.oauth2.service_account", "google-auth"),
        ("google.protobuf.json_format", "protobuf"),
        ("google.genai", "google-genai"),
        ("markdown_it", "markdown-it-py"),
        ("socketio", "python-socketio"),
        ("opensearchpy", "opensearch-py"),
        ("PIL.Image", "Pillow"),
        ("fake_useragent", "fake-useragent"),
    ],
)
def test_package_for_module(module, package):
    assert package_for_module(module) == package


@pytest.mark.parametrize(
    ("statement", "namespace", "package"),
    [
        ("from azure.identity import DefaultAzureCredential", "azure", "azure-identity"),
        ("import azure.storage.blob", "azure", "azure-storage-blob"),
        ("from google.cloud import storage", "google", "google-cloud-storage"),
    ],
)
def test_a_missing_namespace_names_the_distribution_the_statement_wanted(
    tmp_path, monkeypatch, statement, namespace, package
):
    """With no azure/google package at all, Python only names the namespace; the import statement says more."""
    monkeypatch.setitem(sys.modules, namespace, None)  # as if nothing of that namespace were installed
    path = tmp_path / "function.py"
    path.write_text(f"import os\n{statement}\n", encoding="utf-8")
    with pytest.raises(ImportError) as caught:
        exec(compile(path.read_text(), str(path), "exec"), {})

    error = describe_exception(caught.value, str(path))

    assert error["line"] == 2
    assert error["message"].startswith(
        f"this function needs the package '{package}', which is not installed. "
    )


def _import_error(tmp_path, code: str) -> dict:
    path = tmp_path / "function.py"
    path.write_text(code, encoding="utf-8")
    with pytest.raises(ImportError) as caught:
        exec(compile(code, str(path), "exec"), {})
    return describe_exception(caught.value, str(path))


def test_a_missing_package_names_the_requirements_line_to_add_and_the_install(tmp_path):
    error = _import_error(tmp_path, '"""\ntitle: Embedder\n"""\nimport sentence_transformers\n')

    assert error["line"] == 4
    assert error["message"] == (
        "this function needs the package 'sentence-transformers', which is not installed. "
        "Add `requirements: sentence-transformers` to the frontmatter at the top of the code (or add "
        'sentence-transformers to the `requirements:` line it has), then install it with "Install missing" under '
        "Requirements on the function's page, or through the API with "
        "POST /api/v1/functions/id/{id}/requirements/install (saved code) or "
        'POST /api/v1/functions/requirements/install {"content": <the code>} (unsaved code); '
        "installs must be allowed by the operator (SLUICE_ALLOW_PIP_INSTALL=true). "
        "Open WebUI ships sentence-transformers; Sluice leaves it out of its own install because of its size."
    )


def test_a_missing_package_the_requirements_line_lists_names_only_the_install(tmp_path):
    code = '"""\ntitle: Embedder\nrequirements: numpy, Sentence_Transformers>=3,<6\n"""\nimport sentence_transformers\n'
    error = _import_error(tmp_path, code)

    assert error["message"] == (
        "this function needs the package 'sentence-transformers', which is not installed. "
        f"Its `requirements:` line lists it: {INSTALL_ACTION}. "
        "Open WebUI ships sentence-transformers; Sluice leaves it out of its own install because of its size."
    )


def test_a_package_open_webui_does_not_ship_gets_no_note_about_size(tmp_path):
    error = _import_error(tmp_path, "import langgraph\n")

    assert "Add `requirements: langgraph`" in error["message"]
    assert "Open WebUI ships" not in error["message"]
