"""The loader takes every setting from `loader.configure`, never from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETTINGS_VARIABLES = {
    "SLUICE_LOAD_TIMEOUT": "3.5",
    "SLUICE_LOAD_MEMORY_MB": "77",
    "SLUICE_FUNCTION_PACKAGES_DIR": "/tmp/sluice-packages-from-env",
    "SLUICE_LOAD_DROP_PRIVILEGES": "always",
    "SLUICE_LOAD_USER": "daemon",
    "SLUICE_LOAD_HIDDEN_PATHS": "/srv:/opt",
}

SHOW_SETTINGS = """
import dataclasses, json
from loader import client
print(json.dumps({
    "settings": dataclasses.asdict(client.settings()),
    "defaults": dataclasses.asdict(client.Settings()),
}))
"""


def test_importing_the_client_reads_no_sluice_environment_variable():
    env = {**os.environ, **SETTINGS_VARIABLES}
    shown = subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(shown.stdout)

    assert found["settings"] == found["defaults"]
    assert found["settings"]["timeout"] == 10.0
    assert found["settings"]["load_user"] == "nobody"
    assert found["settings"]["drop_privileges"] == "auto"
    assert found["settings"]["packages_dir"] is None
    assert found["settings"]["hidden_paths"] == []


def test_the_loader_source_reads_no_sluice_setting_from_the_environment():
    folder = os.path.join(ROOT, "loader")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), encoding="utf-8") as source:
                text = source.read()
            for variable in SETTINGS_VARIABLES:
                assert f'"{variable}"' not in text, f"loader/{name} names {variable}"
