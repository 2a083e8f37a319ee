"""Configuration, in one place: defaults, then ``instance/config.py``, then the environment.

``SETTINGS`` is the one list of what an operator can set: its name (the environment variable, and the name to assign
in ``instance/config.py``), its default, how a value is checked, and what it means. Loading, validation and the
README's configuration table all come from it (``python settings.py --markdown`` prints the table; a test keeps the
README equal to it). A value that does not fit stops start-up with a message naming the setting. No other module
reads the environment for a Sluice setting. Over 600 lines because the list itself, one entry per setting with its
meaning, is most of it; splitting the list from its checks would put the two halves of each rule apart.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


class SettingError(RuntimeError):
    """A setting's value does not fit; the message names the setting and the value."""


# --- checks: each takes the setting's name and a value (a string from the environment, or whatever instance/config.py
# assigned) and returns the typed value or raises SettingError ---------------------------------------------------------

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def boolean(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingError(f"{name} must be true or false (also 1/0, yes/no, on/off), got {value!r}")


def positive_number(name: str, value) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a positive number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise SettingError(f"{name} must be a positive number, got {value!r}")
    return number


def non_negative_number(name: str, value) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a number of 0 or more, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise SettingError(f"{name} must be a number of 0 or more, got {value!r}")
    return number


def _whole(value) -> int:
    """``value`` as a whole number, or ValueError (also for booleans and fractions)."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        return int(value)
    return int(str(value).strip())


def positive_whole_number(name: str, value) -> int:
    try:
        number = _whole(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a positive whole number, got {value!r}") from None
    if number <= 0:
        raise SettingError(f"{name} must be a positive whole number, got {value!r}")
    return number


def whole_number(name: str, value) -> int:
    try:
        number = _whole(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a whole number of 0 or more, got {value!r}") from None
    if number < 0:
        raise SettingError(f"{name} must be a whole number of 0 or more, got {value!r}")
    return number


def optional_positive_whole_number(name: str, value) -> int | None:
    """A positive whole number, or nothing (unset, empty) for "no limit"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return positive_whole_number(name, value)
    except SettingError:
        raise SettingError(
            f"{name} must be a positive whole number, or unset for no limit, got {value!r}"
        ) from None


def port(name: str, value) -> int:
    number = positive_whole_number(name, value)
    if number > 65535:
        raise SettingError(f"{name} must be a port number from 1 to 65535, got {value!r}")
    return number


def text(name: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SettingError(f"{name} must be a non-empty text, got {value!r}")
    return value


def optional_text(name: str, value) -> str | None:
    return None if value is None or value == "" else text(name, value)


def fernet_keys(name: str, value) -> tuple[str, ...]:
    """Fernet keys separated by commas (or a list in instance/config.py); empty entries are skipped."""
    from models.sealed import check_fernet_key

    if value is None:
        return ()
    keys = value.split(",") if isinstance(value, str) else value
    if not isinstance(keys, (list, tuple)) or not all(isinstance(key, str) for key in keys):
        raise SettingError(f"{name} must be Fernet keys separated by commas, got a {type(value).__name__}")
    keys = tuple(key.strip() for key in keys if key.strip())
    for position, key in enumerate(keys, 1):
        try:
            check_fernet_key(key)
        except ValueError as error:
            # The value is a secret: say which entry is wrong, never what it is.
            raise SettingError(
                f"{name}: key {position} is {error}; make one with `python -c 'from cryptography.fernet import "
                f"Fernet; print(Fernet.generate_key().decode())'`"
            ) from None
    return keys


# SLUICE_LOAD_DROP_PRIVILEGES: the loader's three modes, and the spellings it has always taken for them.
DROP_MODES = {
    "auto": ("auto", "1", "true", "yes", "on"),
    "off": ("off", "0", "false", "no", "never"),
    "always": ("always", "force"),
}


def drop_mode(name: str, value) -> str:
    if isinstance(value, bool):
        return "auto" if value else "off"
    spelled = str(value).strip().lower()
    for mode, spellings in DROP_MODES.items():
        if spelled in spellings:
            return mode
    raise SettingError(f"{name} must be one of auto, always or off, got {value!r}")


def sqlite_synchronous(name: str, value) -> str:
    level = str(value).strip().upper()
    if level not in ("NORMAL", "FULL", "EXTRA"):
        raise SettingError(f"{name} must be NORMAL, FULL or EXTRA, got {value!r}")
    return level


def path_list(name: str, value) -> tuple[str, ...]:
    """Paths from a list, or from a string of paths separated by ``os.pathsep`` (``:``); empty entries are skipped."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(os.pathsep)
    if not isinstance(value, (list, tuple)) or not all(isinstance(path, str) for path in value):
        raise SettingError(
            f"{name} must be a list of paths or a string of paths separated by {os.pathsep!r}, got {value!r}"
        )
    return tuple(path for path in value if path.strip())


# --- the list ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str  # the environment variable, and the name to assign in instance/config.py
    default: object  # a value, or a function of (instance folder, the values resolved so far)
    check: Callable
    meaning: str  # one line for the README
    shown_default: str | None = None  # the README's default column, when the value itself would not say it
    key: str | None = None  # the Flask config key, when it is not `name`; instance/config.py may use either
    in_app: bool = True  # False: read by bin/serve (gunicorn.conf.py) only

    @property
    def config_key(self) -> str:
        return self.key or self.name


def _default_concurrent_loads(instance_path: str, values: Mapping) -> int:
    """Half the threads of each process, at least 2: the rest stay free for requests that load nothing."""
    return max(2, values["SLUICE_THREADS"] // 2)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        lambda instance_path, values: f"sqlite:///{Path(instance_path) / 'sluice.sqlite3'}",
        text,
        "database; `postgresql+psycopg://user:pass@host/db` for PostgreSQL",
        shown_default="`sqlite:///instance/sluice.sqlite3`",
        key="SQLALCHEMY_DATABASE_URI",
    ),
    Setting(
        "SLUICE_SQLITE_SYNCHRONOUS",
        "NORMAL",
        sqlite_synchronous,
        "SQLite only: NORMAL syncs the write-ahead log at checkpoints, so a crash of Sluice or of any process loses "
        "nothing but a power cut or kernel crash may undo the last commits (never corrupting the database); FULL "
        "syncs at every commit, 3-5 ms more per save",
    ),
    Setting(
        "SLUICE_AUDIT_KEEP_DAYS",
        0,
        whole_number,
        "days the audit trail keeps an entry: each server worker removes older ones about once an hour (and "
        "`flask prune-audit` on demand); `0` keeps every entry",
    ),
    Setting(
        "SECRET_KEY",
        None,
        optional_text,
        "signs sessions; all workers must share it",
        shown_default="generated once into `instance/secret_key`",
    ),
    Setting(
        "SLUICE_VALVES_KEY",
        (),
        fernet_keys,
        "Fernet key that encrypts password-type valves in the database; several separated by commas: the first "
        "encrypts, all decrypt (to rotate: put the new key first, restart, run `flask --app app rotate-valves-key`, "
        "then drop the old one)",
        shown_default="derived from `SECRET_KEY`",
    ),
    Setting(
        "SLUICE_SAFE_MODE",
        False,
        boolean,
        "start with every function treated as inactive and load or run no function code, to recover from a "
        "function that breaks things: saving code or valves is refused (503), switching off and deleting work",
    ),
    Setting("HOST", "127.0.0.1", text, "where `bin/serve` listens", in_app=False),
    Setting("PORT", 8080, port, "the port `bin/serve` listens on", in_app=False),
    Setting("SLUICE_WORKERS", 2, positive_whole_number, "gunicorn processes for `bin/serve`", in_app=False),
    Setting(
        "SLUICE_THREADS",
        8,
        positive_whole_number,
        "threads per gunicorn process for `bin/serve`",
        in_app=False,
    ),
    Setting(
        "SLUICE_ENABLE_SIGNUP",
        False,
        boolean,
        "let visitors create accounts, which wait as `pending` until an admin approves them",
    ),
    Setting("SLUICE_LOAD_TIMEOUT", 10.0, positive_number, "seconds a function's code may take to load"),
    Setting("SLUICE_LOAD_MEMORY_MB", 1024, positive_whole_number, "memory a loading function may use"),
    Setting(
        "SLUICE_LOAD_OUTPUT_MB",
        1.0,
        positive_number,
        "output (print, stdout, stderr) a function's code may write while it loads; more ends the load with a 400 "
        "that says so, and nothing is stored (the first 64 KiB are shown with the answer; a run keeps its first "
        "64 KiB and is stopped past 16 times that)",
    ),
    Setting(
        "SLUICE_LOAD_SPARES",
        2,
        whole_number,
        "load children each worker's loader keeps forked and warmed up, once it has had a first load: each holds "
        "about 14 MiB; with one instead of two, two loads at once take about a third longer; 0 forks one per load",
    ),
    Setting(
        "SLUICE_LOAD_SPARES_IDLE_SECONDS",
        60.0,
        non_negative_number,
        "seconds without a load after which those spares end, so that an idle server holds no memory for them (the "
        "next load forks its child then, a few milliseconds slower, and the spares come back); `0` keeps them",
    ),
    Setting(
        "SLUICE_LOAD_WARM_IMPORTS_MB",
        64,
        whole_number,
        "MiB each worker's loader may import, once, into a second process that load children of functions using "
        "them start from: the modules that two loads have imported from Sluice's own environment (never from "
        "installed requirements), so that saving such a function again skips importing them (a cloud SDK costs "
        "150-500 ms per load otherwise; Open WebUI's database module, which imports SQLAlchemy, counts too), with "
        "one such child forked ahead like the spares, while other functions' loads start from the small first "
        "process as before; `0` imports none",
    ),
    Setting(
        "SLUICE_MAX_CONCURRENT_LOADS",
        _default_concurrent_loads,
        positive_whole_number,
        "loads of function code one process runs at once; a request that finds them all taken for 2 s gets 503 "
        '"Sluice is busy loading other functions", so slow loads never hold every thread',
        shown_default="half of `SLUICE_THREADS`, at least 2 (`4`)",
    ),
    Setting(
        "SLUICE_ALLOW_PRIVATE_URLS",
        False,
        boolean,
        'let "load from URL" fetch loopback, private and link-local addresses',
    ),
    Setting(
        "SLUICE_URL_FETCH_TIMEOUT",
        20.0,
        positive_number,
        'seconds "load from URL" may take in all (redirects included), however slowly the server sends',
    ),
    Setting(
        "SLUICE_ALLOW_PIP_INSTALL",
        False,
        boolean,
        "let admins install a function's `requirements:` (into a folder only function code sees)",
    ),
    Setting(
        "SLUICE_FUNCTION_PACKAGES_DIR",
        lambda instance_path, values: str(Path(instance_path) / "function-packages"),
        text,
        "that folder",
        shown_default="`instance/function-packages`",
    ),
    Setting(
        "SLUICE_INSTALL_JOBS_DIR",
        None,
        optional_text,
        "where those installs keep their status and output",
        shown_default="`instance/install-jobs`",
    ),
    Setting(
        "SLUICE_FUNCTION_HOMES_DIR",
        lambda instance_path, values: str(Path(instance_path) / "function-homes"),
        text,
        "where each function gets a writable home of its own (`<folder>/<function id>`: its `~`, `~/.cache`, "
        "`~/.config`, `~/.local/share`), kept across loads and calls; function code sees only its own",
        shown_default="`instance/function-homes`",
    ),
    Setting(
        "SLUICE_LOAD_DROP_PRIVILEGES",
        "auto",
        drop_mode,
        "when Sluice runs as root, run function code as `SLUICE_LOAD_USER` instead: `auto` (only if that user can "
        "read Python and the packages), `always`, `off`",
    ),
    Setting("SLUICE_LOAD_USER", "nobody", text, "that user (a name, `uid` or `uid:gid`)"),
    Setting(
        "SLUICE_LOAD_HIDDEN_PATHS",
        (),
        path_list,
        "folders or files function code must never read, separated by `:` (a list in `instance/config.py`), on top "
        "of those Sluice always hides (the instance folder, the SQLite database's folder, `SLUICE_INSTALL_JOBS_DIR`); "
        "when Sluice runs as root each load child hides them under an empty read-only mount (the packages folder "
        "stays visible)",
        shown_default="none",
    ),
    Setting(
        "SLUICE_RUN_TIMEOUT",
        60.0,
        positive_number,
        "seconds one call of a function's method (a filter's inlet, a pipe's whole answer, ...) may take",
    ),
    Setting(
        "SLUICE_RUN_IDLE_TIMEOUT",
        30.0,
        positive_number,
        "seconds a streaming call may go without sending anything before it is stopped",
    ),
    Setting(
        "SLUICE_RUNTIME_WORKERS",
        4,
        positive_whole_number,
        "warm worker processes that run function calls, for all functions together (each keeps one function's "
        "instance loaded)",
    ),
    Setting(
        "SLUICE_RUN_BUSY_WAIT",
        2.0,
        non_negative_number,
        "seconds a call waits for a free worker before it is answered 503 with `Retry-After`",
    ),
    Setting(
        "SLUICE_RUNTIME_IDLE_SECONDS",
        300.0,
        non_negative_number,
        "seconds a warm worker may go unused before it ends and gives its memory back (the next call of its function "
        "loads it again); `0` keeps workers until another function needs the room",
    ),
    Setting(
        "SLUICE_HISTORY_LIMIT",
        None,
        optional_positive_whole_number,
        "versions kept in each function's history: when a save records a new one, the oldest beyond this many are "
        "deleted with it (the current version always stays)",
        shown_default="none (keep every version)",
    ),
    Setting("SLUICE_MAX_REQUEST_MB", 32, positive_whole_number, "largest request body accepted (413 beyond)"),
    Setting(
        "SLUICE_SIGNIN_MAX_FAILURES",
        5,
        positive_whole_number,
        "failed sign-ins before further attempts wait, counted per client (on any address: no spraying passwords) "
        "and per email address (known or not); a client with no misses of its own is never held up by an "
        "address's misses, so nobody can keep a real user out",
    ),
    Setting(
        "SLUICE_SIGNIN_LOCK_SECONDS",
        300,
        positive_whole_number,
        "the longest of those waits: the first is 15 s, and each miss after it doubles the next",
    ),
    Setting(
        "SLUICE_TRUSTED_PROXIES",
        0,
        whole_number,
        "how many proxies in front of Sluice set `X-Forwarded-For` and `X-Forwarded-Proto`; at `0` those headers are "
        "ignored and the client is the connection's address (behind a proxy that is the proxy's, so all clients "
        "would share one sign-in count)",
    ),
    Setting(
        "SLUICE_SECURE_COOKIES",
        False,
        boolean,
        "mark cookies `Secure` (set it when serving over HTTPS)",
        key="SESSION_COOKIE_SECURE",
    ),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}

# Flask settings Sluice fixes; instance/config.py may still change them (Flask's own names, not checked here).
FLASK_DEFAULTS = {
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    # CSRF is enforced by our own hook so that API-key calls are exempt and cookie calls are not.
    "WTF_CSRF_CHECK_DEFAULT": False,
    "WTF_CSRF_TIME_LIMIT": None,
    "JSON_SORT_KEYS": False,
}


# --- loading ----------------------------------------------------------------------------------------------------------


def read_settings(
    instance_path: str,
    instance_config: Mapping | None = None,
    environ: Mapping | None = None,
    overrides: Mapping | None = None,
) -> dict:
    """Every setting's checked value, by name: the default, then ``instance_config`` (by name or Flask key), then
    ``environ`` (by name; an empty value counts as unset), then ``overrides`` (a test's mapping, by name or key)."""
    environ = os.environ if environ is None else environ
    set_in_environment = {name: value for name, value in environ.items() if value != ""}
    values: dict = {}
    for setting in SETTINGS:
        names = dict.fromkeys((setting.name, setting.config_key))
        layers = [
            ("instance/config.py", instance_config or {}, names),
            ("the environment", set_in_environment, (setting.name,)),
            ("the test configuration", overrides or {}, names),
        ]
        given = [(source, layer[name]) for source, layer, keys in layers for name in keys if name in layer]
        if not given:
            default = setting.default
            values[setting.name] = default(instance_path, values) if callable(default) else default
            continue
        source, value = given[-1]
        try:
            values[setting.name] = setting.check(setting.name, value)
        except SettingError as error:
            raise SettingError(f"{error} (from {source})") from None
    return values


def read_instance_config(instance_path: str) -> dict:
    """The upper-case names ``instance/config.py`` assigns, or nothing when there is no such file."""
    from flask import Config

    config = Config(instance_path)
    config.from_pyfile("config.py", silent=True)
    return dict(config)


def server_settings(environ: Mapping | None = None) -> dict:
    """The settings gunicorn needs (HOST, PORT, SLUICE_WORKERS, SLUICE_THREADS), checked, for gunicorn.conf.py."""
    instance_path = str(Path(__file__).resolve().parent / "instance")
    values = read_settings(instance_path, read_instance_config(instance_path), environ)
    return {name: values[name] for name in ("HOST", "PORT", "SLUICE_WORKERS", "SLUICE_THREADS")}


def load_config(app, test_config: dict | None = None) -> None:
    """Fill ``app.config`` from the settings, and keep the checked values as ``app.extensions["sluice.settings"]``."""
    instance_config = read_instance_config(app.instance_path)
    values = read_settings(app.instance_path, instance_config, os.environ, test_config)
    values["DATABASE_URL"] = _psycopg_url(values["DATABASE_URL"])
    if not values["SECRET_KEY"]:
        values["SECRET_KEY"] = instance_secret_key(app.instance_path)

    app.config.from_mapping(FLASK_DEFAULTS)
    app.config.from_mapping(instance_config)  # Flask's own settings an operator may add there
    app.config.from_mapping(
        {setting.config_key: values[setting.name] for setting in SETTINGS if setting.in_app}
    )
    if test_config:
        # Its Sluice settings are in `values` already; the rest are Flask's (TESTING and the like).
        app.config.from_mapping({key: value for key, value in test_config.items() if not _is_setting(key)})
    # Options an operator or a test sets (instance/config.py) go on top of Sluice's, not instead of them.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **engine_options(values["DATABASE_URL"], values["SLUICE_THREADS"]),
        **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = values["SLUICE_MAX_REQUEST_MB"] * MIB
    app.extensions["sluice.settings"] = values


def engine_options(uri: str, threads: int) -> dict:
    """No `pool_pre_ping`: its `SELECT 1` was a round trip on every request. A SQLite file cannot drop a
    connection; a PostgreSQL connection's liveness is checked more cheaply at checkout instead
    (database.install_postgresql_liveness, installed by create_app).

    On a server database the pool keeps as many connections as a worker has threads (a request holds at most one):
    SQLAlchemy's default of 5 made every busy moment beyond 5 threads open and close a new server process per
    request. SQLite keeps Flask-SQLAlchemy's choice (an in-memory database gets a pool that takes no size)."""
    from database import read_json

    options: dict = {"json_deserializer": read_json}
    if not uri.startswith("sqlite"):
        options["pool_size"] = max(5, threads)
    return options


def _is_setting(key: str) -> bool:
    return any(key in (setting.name, setting.config_key) for setting in SETTINGS)


def _psycopg_url(uri: str) -> str:
    """Heroku-style URLs name the old driver; Sluice ships psycopg 3."""
    if uri.startswith("postgres://"):
        return "postgresql+psycopg://" + uri[len("postgres://") :]
    if uri.startswith("postgresql://"):
        return "postgresql+psycopg://" + uri[len("postgresql://") :]
    return uri


def loader_options(app) -> dict:
    """The keywords for ``loader.configure``: the loader's settings, and what it must hide from function code (the
    operator's ``SLUICE_LOAD_HIDDEN_PATHS`` together with what the app itself keeps private)."""
    values = app.extensions["sluice.settings"]
    return {
        "timeout": values["SLUICE_LOAD_TIMEOUT"],
        "memory_mb": values["SLUICE_LOAD_MEMORY_MB"],
        "load_output_mb": values["SLUICE_LOAD_OUTPUT_MB"],
        "packages_dir": values["SLUICE_FUNCTION_PACKAGES_DIR"],
        "homes_dir": values["SLUICE_FUNCTION_HOMES_DIR"],
        "drop_privileges": values["SLUICE_LOAD_DROP_PRIVILEGES"],
        "load_user": values["SLUICE_LOAD_USER"],
        "run_timeout": values["SLUICE_RUN_TIMEOUT"],
        "run_idle_timeout": values["SLUICE_RUN_IDLE_TIMEOUT"],
        "spares": values["SLUICE_LOAD_SPARES"],
        "spare_idle": values["SLUICE_LOAD_SPARES_IDLE_SECONDS"],
        "runtime_workers": values["SLUICE_RUNTIME_WORKERS"],
        "busy_wait": values["SLUICE_RUN_BUSY_WAIT"],
        "worker_idle": values["SLUICE_RUNTIME_IDLE_SECONDS"],
        "warm_imports_mb": values["SLUICE_LOAD_WARM_IMPORTS_MB"],
        "hidden_paths": [*values["SLUICE_LOAD_HIDDEN_PATHS"], *loader_hidden_paths(app)],
    }


def loader_hidden_paths(app) -> list[str]:
    """What function code must never read, whatever the operator sets: the instance folder (secret key, config.py,
    SQLite database, install jobs), and the SQLite database and install jobs when they are elsewhere (the database's
    folder, and its files in case that folder also holds what function code needs)."""
    paths = [app.instance_path]
    uri = app.config.get("SQLALCHEMY_DATABASE_URI") or ""
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        if database and database != ":memory:" and not database.startswith("file:"):
            database = os.path.join(app.instance_path, database)  # Flask-SQLAlchemy's rule for relative paths
            paths.append(os.path.dirname(database))
            paths.extend(database + suffix for suffix in ("", "-wal", "-shm", "-journal"))
    if app.config.get("SLUICE_INSTALL_JOBS_DIR"):
        paths.append(app.config["SLUICE_INSTALL_JOBS_DIR"])
    return paths


def instance_secret_key(instance_path: str) -> str:
    """Read the key kept in the instance folder, creating it once; several workers agree on it."""
    path = Path(instance_path) / "secret_key"
    if not path.exists():
        candidate = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker won the race; read what it wrote
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(candidate)
            return candidate
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key
        import time

        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty; delete it to generate a new secret key")


# --- the README's table -----------------------------------------------------------------------------------------------


def _shown(setting: Setting) -> str:
    if setting.shown_default is not None:
        return setting.shown_default
    value = setting.default
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def markdown_table() -> str:
    """The README's configuration table, one row per setting."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{setting.name}` | {_shown(setting)} | {setting.meaning} |" for setting in SETTINGS]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python settings.py --markdown   (prints the README's configuration table)")
    sys.stdout.write(markdown_table())
