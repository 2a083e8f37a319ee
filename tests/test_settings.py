"""Configuration: one list of settings in settings.py, read from defaults, instance/config.py and the environment,
checked at start-up, handed to the loader, and the README's table made from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import settings
from settings import SettingError, read_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_environment(monkeypatch):
    """No setting of the machine running the tests leaks in."""
    for setting in settings.SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    return monkeypatch


@pytest.fixture
def instance(tmp_path, clean_environment):
    """An instance folder of the test's own, which create_app uses instead of the repository's."""
    folder = tmp_path / "instance"
    clean_environment.setattr("flask.Flask.auto_find_instance_path", lambda self: str(folder))
    return folder


@pytest.fixture
def loader_settings():
    """The loader's settings as create_app leaves them; the previous ones come back afterwards."""
    import loader
    from loader import client

    before = client.settings()
    yield client.settings
    loader.configure(
        timeout=before.timeout,
        memory_mb=before.memory_mb,
        packages_dir=before.packages_dir,
        drop_privileges=before.drop_privileges,
        load_user=before.load_user,
        hidden_paths=list(before.hidden_paths),
        spares=before.spares,
    )


def make_app(instance: Path, config_py: str | None = None):
    from app import create_app

    if config_py is not None:
        instance.mkdir(parents=True, exist_ok=True)
        (instance / "config.py").write_text(config_py)
    return create_app({"TESTING": True, "SECRET_KEY": "test-secret-key"})


# --- the loader gets what the operator set ------------------------------------------------------------------------


def test_operator_hidden_paths_from_the_environment_are_added_to_the_apps(
    instance, loader_settings, clean_environment, tmp_path
):
    operator = [tmp_path / "keys", tmp_path / "backups"]
    clean_environment.setenv("SLUICE_LOAD_HIDDEN_PATHS", os.pathsep.join(str(path) for path in operator))
    make_app(instance)
    hidden = loader_settings().hidden_paths
    for path in operator:
        assert os.path.realpath(path) in hidden
    assert os.path.realpath(instance) in hidden


def test_operator_hidden_paths_from_instance_config_are_added_to_the_apps(
    instance, loader_settings, tmp_path
):
    make_app(instance, f"SLUICE_LOAD_HIDDEN_PATHS = [{str(tmp_path / 'keys')!r}]\n")
    hidden = loader_settings().hidden_paths
    assert os.path.realpath(tmp_path / "keys") in hidden
    assert os.path.realpath(instance) in hidden


def test_instance_config_sets_the_load_user_and_privilege_dropping(instance, loader_settings):
    make_app(instance, 'SLUICE_LOAD_USER = "daemon"\nSLUICE_LOAD_DROP_PRIVILEGES = "off"\n')
    assert loader_settings().load_user == "daemon"
    assert loader_settings().drop_privileges == "off"


def test_the_loader_gets_timeout_memory_and_packages_folder(instance, loader_settings, clean_environment):
    clean_environment.setenv("SLUICE_LOAD_MEMORY_MB", "512")
    make_app(instance, "SLUICE_LOAD_TIMEOUT = 7\n")
    assert loader_settings().timeout == 7.0
    assert loader_settings().memory_mb == 512
    assert loader_settings().packages_dir == str(instance / "function-packages")
    assert loader_settings().drop_privileges == "auto" and loader_settings().load_user == "nobody"


def test_the_operator_chooses_how_many_spares_each_loader_keeps(instance, loader_settings, clean_environment):
    make_app(instance)
    assert loader_settings().spares == 2
    clean_environment.setenv("SLUICE_LOAD_SPARES", "0")  # fewer processes, each load forks its own child
    make_app(instance)
    assert loader_settings().spares == 0


# --- precedence -----------------------------------------------------------------------------------------------------


def test_defaults_then_instance_config_then_environment(tmp_path):
    instance_config = {
        "SLUICE_LOAD_TIMEOUT": 3,
        "SLUICE_MAX_REQUEST_MB": 7,
        "SLUICE_LOAD_USER": "daemon",
        "SESSION_COOKIE_SECURE": True,  # a Flask key works there as well as the variable's name
    }
    environ = {"SLUICE_MAX_REQUEST_MB": "9", "SLUICE_THREADS": "12", "SLUICE_LOAD_USER": ""}
    values = read_settings(str(tmp_path), instance_config, environ)
    assert values["SLUICE_LOAD_MEMORY_MB"] == 1024  # default
    assert values["SLUICE_LOAD_TIMEOUT"] == 3.0  # instance file over default
    assert values["SLUICE_MAX_REQUEST_MB"] == 9  # environment over instance file
    assert values["SLUICE_LOAD_USER"] == "daemon"  # an empty variable counts as unset
    assert values["SLUICE_SECURE_COOKIES"] is True
    assert values["SLUICE_MAX_CONCURRENT_LOADS"] == 6  # its default follows SLUICE_THREADS
    assert values["DATABASE_URL"] == f"sqlite:///{tmp_path / 'sluice.sqlite3'}"


def test_the_environment_uses_the_variable_names_only(tmp_path):
    values = read_settings(
        str(tmp_path), {}, {"SESSION_COOKIE_SECURE": "true", "SQLALCHEMY_DATABASE_URI": "x"}
    )
    assert values["SLUICE_SECURE_COOKIES"] is False
    assert values["DATABASE_URL"].startswith("sqlite:///")


def test_values_are_typed(tmp_path):
    environ = {
        "SLUICE_LOAD_TIMEOUT": "2.5",
        "SLUICE_ENABLE_SIGNUP": "Yes",
        "SLUICE_LOAD_DROP_PRIVILEGES": "0",
        "SLUICE_LOAD_HIDDEN_PATHS": f"/srv/a{os.pathsep}{os.pathsep}/srv/b",
        "PORT": "9000",
    }
    values = read_settings(str(tmp_path), {}, environ)
    assert values["SLUICE_LOAD_TIMEOUT"] == 2.5
    assert values["SLUICE_ENABLE_SIGNUP"] is True
    assert values["SLUICE_LOAD_DROP_PRIVILEGES"] == "off"
    assert values["SLUICE_LOAD_HIDDEN_PATHS"] == ("/srv/a", "/srv/b")
    assert values["PORT"] == 9000


@pytest.mark.parametrize(
    "spelling, mode",
    [("auto", "auto"), ("TRUE", "auto"), ("on", "auto"), ("off", "off"), ("no", "off"), ("never", "off")]
    + [("always", "always"), ("force", "always")],
)
def test_privilege_dropping_takes_the_spellings_the_loader_took(tmp_path, spelling, mode):
    values = read_settings(str(tmp_path), {}, {"SLUICE_LOAD_DROP_PRIVILEGES": spelling})
    assert values["SLUICE_LOAD_DROP_PRIVILEGES"] == mode


# --- a value that does not fit stops start-up -----------------------------------------------------------------------


def test_a_bad_number_stops_start_up_naming_the_setting(instance, clean_environment):
    clean_environment.setenv("SLUICE_LOAD_TIMEOUT", "abc")
    with pytest.raises(SettingError, match=r"^SLUICE_LOAD_TIMEOUT must be a positive number, got 'abc'"):
        make_app(instance)


def test_a_bad_number_in_instance_config_stops_start_up(instance):
    with pytest.raises(
        SettingError, match=r"SLUICE_LOAD_MEMORY_MB must be a positive whole number.*instance/config"
    ):
        make_app(instance, "SLUICE_LOAD_MEMORY_MB = 'lots'\n")


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("SLUICE_LOAD_TIMEOUT", "0", "SLUICE_LOAD_TIMEOUT must be a positive number, got '0'"),
        ("SLUICE_URL_FETCH_TIMEOUT", "-1", "SLUICE_URL_FETCH_TIMEOUT must be a positive number, got '-1'"),
        ("SLUICE_MAX_REQUEST_MB", "0", "SLUICE_MAX_REQUEST_MB must be a positive whole number, got '0'"),
        (
            "SLUICE_SIGNIN_MAX_FAILURES",
            "-5",
            "SLUICE_SIGNIN_MAX_FAILURES must be a positive whole number, got '-5'",
        ),
    ],
)
def test_a_number_that_is_not_positive_is_refused(tmp_path, name, value, message):
    with pytest.raises(SettingError, match="^" + re.escape(message)):
        read_settings(str(tmp_path), {}, {name: value})


def test_a_fraction_where_a_whole_number_is_needed_is_refused(tmp_path):
    with pytest.raises(SettingError, match=r"^SLUICE_WORKERS must be a positive whole number, got '2.5'"):
        read_settings(str(tmp_path), {}, {"SLUICE_WORKERS": "2.5"})


def test_a_port_out_of_range_is_refused(tmp_path):
    with pytest.raises(SettingError, match=r"^PORT must be a port number from 1 to 65535, got '70000'"):
        read_settings(str(tmp_path), {}, {"PORT": "70000"})


def test_an_unknown_choice_is_refused(tmp_path):
    with pytest.raises(
        SettingError, match=r"^SLUICE_LOAD_DROP_PRIVILEGES must be one of auto, always or off, got"
    ):
        read_settings(str(tmp_path), {}, {"SLUICE_LOAD_DROP_PRIVILEGES": "sometimes"})


def test_an_unknown_boolean_spelling_is_refused(tmp_path):
    # It used to mean false silently: SLUICE_SECURE_COOKIES=ture served cookies without Secure.
    with pytest.raises(SettingError, match=r"^SLUICE_SECURE_COOKIES must be true or false .*got 'ture'"):
        read_settings(str(tmp_path), {}, {"SLUICE_SECURE_COOKIES": "ture"})


def test_hidden_paths_must_be_paths(tmp_path):
    with pytest.raises(SettingError, match=r"^SLUICE_LOAD_HIDDEN_PATHS must be a list of paths"):
        read_settings(str(tmp_path), {"SLUICE_LOAD_HIDDEN_PATHS": 5}, {})


def test_the_history_limit_is_unset_or_a_positive_whole_number(tmp_path):
    assert read_settings(str(tmp_path), {}, {})["SLUICE_HISTORY_LIMIT"] is None
    assert read_settings(str(tmp_path), {}, {"SLUICE_HISTORY_LIMIT": "25"})["SLUICE_HISTORY_LIMIT"] == 25
    assert read_settings(str(tmp_path), {"SLUICE_HISTORY_LIMIT": 10}, {})["SLUICE_HISTORY_LIMIT"] == 10
    assert read_settings(str(tmp_path), {"SLUICE_HISTORY_LIMIT": None}, {})["SLUICE_HISTORY_LIMIT"] is None
    for bad in ("0", "-3", "2.5", "all"):
        with pytest.raises(
            SettingError,
            match=r"^SLUICE_HISTORY_LIMIT must be a positive whole number, or unset for no limit",
        ):
            read_settings(str(tmp_path), {}, {"SLUICE_HISTORY_LIMIT": bad})


def test_a_load_user_must_not_be_empty(tmp_path):
    with pytest.raises(SettingError, match=r"^SLUICE_LOAD_USER must be a non-empty text"):
        read_settings(str(tmp_path), {"SLUICE_LOAD_USER": " "}, {})


# --- one list, one owner --------------------------------------------------------------------------------------------


def test_the_readme_table_is_the_one_settings_py_prints():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| variable | default | meaning |")
    end = readme.index("\n\n", start)
    printed = subprocess.run(
        [sys.executable, "settings.py", "--markdown"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert readme[start:end] + "\n" == printed, (
        "run `.venv/bin/python settings.py --markdown` into the README"
    )


def test_gunicorn_listens_and_sizes_itself_from_the_settings(clean_environment):
    environ = {**os.environ, "HOST": "0.0.0.0", "PORT": "9090", "SLUICE_WORKERS": "3", "SLUICE_THREADS": "5"}
    show = (
        "import runpy; c = runpy.run_path('gunicorn.conf.py'); print(c['bind'], c['workers'], c['threads'])"
    )
    answer = subprocess.run(
        [sys.executable, "-c", show], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert answer.stdout.split() == ["0.0.0.0:9090", "3", "5"], answer.stderr
    environ["SLUICE_THREADS"] = "many"
    answer = subprocess.run(
        [sys.executable, "-c", show], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert answer.returncode != 0
    assert "SLUICE_THREADS must be a positive whole number, got 'many'" in answer.stderr


def test_no_module_but_settings_reads_a_setting_from_the_environment():
    names = "|".join(re.escape(setting.name) for setting in settings.SETTINGS)
    reading = re.compile(rf"""(environ\.get\(|environ\[|getenv\()\s*["']({names})["']""")
    bash_reading = re.compile(rf"\$\{{({names})\b")
    # The loader included: it takes everything from loader.configure, which the app calls with these values.
    skipped = {"tests", ".venv", ".runtime", "node_modules", ".git", "instance"}
    offenders = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        # loader/compat is Open WebUI's environment as function code sees it (its own DATABASE_URL), not Sluice's.
        own_settings = relative.parts[:2] != ("loader", "compat")
        if (
            relative.parts[0] in skipped
            or not own_settings
            or not path.is_file()
            or path.name == "settings.py"
        ):
            continue
        if path.suffix == ".py" or relative.parts[0] == "bin":
            content = path.read_text(errors="replace")
            if reading.search(content) or (relative.parts[0] == "bin" and bash_reading.search(content)):
                offenders.append(str(relative))
    assert offenders == []


def test_a_server_database_pool_keeps_a_connection_per_thread(instance, loader_settings):
    """A worker's threads each hold at most one connection: the pool keeps that many open, not SQLAlchemy's 5, so
    a busy worker does not open and close a PostgreSQL backend per request. SQLite keeps its own pool's choice."""
    from settings import engine_options

    assert engine_options("postgresql+psycopg://u@h/db", 12)["pool_size"] == 12
    assert engine_options("postgresql+psycopg://u@h/db", 2)["pool_size"] == 5
    assert "pool_size" not in engine_options("sqlite:///:memory:", 12)
    app = make_app(
        instance, 'SQLALCHEMY_DATABASE_URI = "postgresql+psycopg://u@127.0.0.1:1/none"\nSLUICE_THREADS = 9\n'
    )
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"] == 9


def test_engine_options_in_instance_config_are_added_to_sluices_own(instance, tmp_path, loader_settings):
    """An operator sizing the pool keeps the JSON decoder and the rest of Sluice's engine options."""
    from database import read_json
    from extensions import db

    database = tmp_path / "options.sqlite3"
    app = make_app(
        instance,
        f'SQLALCHEMY_DATABASE_URI = "sqlite:///{database}"\nSQLALCHEMY_ENGINE_OPTIONS = {{"pool_size": 7}}\n',
    )
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_size"] == 7 and options["json_deserializer"] is read_json
    with app.app_context():
        assert db.engine.pool.size() == 7
        db.engine.dispose()
