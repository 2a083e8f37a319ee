"""Which package a failed import names: the distribution a user would install, not the module's first word."""

from __future__ import annotations

import sys

import pytest

from loader.errors import describe_exception, package_for_module


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
    assert error["message"] == f"this function needs the package '{package}', which is not installed"
