"""Install a function's missing requirements with pip, as a detached background job.

The web app calls `start_install` only when the operator has allowed it (`SLUICE_ALLOW_PIP_INSTALL`); this
module is the mechanism. pip never runs inside a web worker or one of its threads:

1. `start_install` validates every requirement again (the caller is not trusted), writes the job file
   `<jobs_dir>/<job_id>.json` with status `queued`, and starts `python -c "…installer main…" run <job_id>`
   in a new session, with its output going to `<jobs_dir>/<job_id>.log`.
2. That launcher forks once and exits, so the web worker only waits a few milliseconds and is never left
   with a child to reap; the forked process belongs to no worker and survives worker restarts.
3. The job process takes an exclusive lock on `<jobs_dir>/install.lock` (two pip runs writing the same
   `--target` directory would corrupt it), marks the job `running`, runs pip with a wall-clock timeout and
   records `succeeded` or `failed` with the exit code and times.

`get_job` and `list_jobs` read those files from any process. A job whose process vanished without writing
its result is reported as failed.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .requirements import RequirementError, parse_requirement

# The pip to run, as an argv prefix. Tests point this at a fake pip so they never reach the network.
PIP_COMMAND: list[str] = [sys.executable, "-m", "pip"]
PIP_TIMEOUT_SECONDS = 30 * 60
OUTPUT_TAIL_BYTES = 64 * 1024

FINISHED = frozenset({"succeeded", "failed"})
_JOB_ID = re.compile(r"\A[0-9]{8}T[0-9]{6}-[0-9a-f]{8}\Z")
_LOCK_FILE = "install.lock"
_LAUNCHER_WAIT_SECONDS = 30
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# pip's own tools: a package may ask for a newer setuptools to build, and no function imports pip.
_TOOLS = frozenset({"pip", "setuptools", "wheel"})
# Given to every pip run as --constraint: the packages Sluice installs at Open WebUI's pins stay at those versions,
# and torch is its CPU build (constraints-install.txt says why).
CONSTRAINT_FILES = [
    os.path.join(_PACKAGE_ROOT, "requirements-functions.txt"),
    os.path.join(_PACKAGE_ROOT, "constraints-install.txt"),
]


def start_install(
    requirements: list[str],
    packages_dir: str,
    jobs_dir: str,
    *,
    pip_command: list[str] | None = None,
    timeout: float | None = None,
) -> str:
    """Start installing `requirements` into `packages_dir` in the background and return the job id.

    Raises `RequirementError` (a `ValueError`) before anything runs if any requirement is not acceptable.
    """
    validated = validate_install_requirements(requirements)
    packages_dir = os.path.abspath(packages_dir)
    jobs_dir = os.path.abspath(jobs_dir)
    os.makedirs(packages_dir, exist_ok=True)
    os.makedirs(jobs_dir, exist_ok=True)

    job_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
    command = [
        *(pip_command or PIP_COMMAND),
        "install",
        "--target",
        packages_dir,
        # With --target pip ignores what is already installed and refuses to replace a package directory
        # that already exists in the target unless --upgrade is given: without it `pkg>=2` over an older
        # `pkg` in packages_dir would "succeed" and change nothing.
        "--upgrade",
        "--upgrade-strategy",
        "only-if-needed",
        *(option for path in CONSTRAINT_FILES if os.path.isfile(path) for option in ("--constraint", path)),
        *_environment_constraints(packages_dir, jobs_dir, job_id),
        "--no-input",
        "--disable-pip-version-check",
        # Belt and braces: nothing after this can be read as an option.
        "--",
        *validated,
    ]
    job = {
        "id": job_id,
        "status": "queued",
        "requirements": validated,
        "packages_dir": packages_dir,
        "command": command,
        "timeout": timeout or PIP_TIMEOUT_SECONDS,
        "created_at": int(time.time()),
        "started_at": None,
        "ended_at": None,
        "exit_code": None,
        "pid": None,
        "error": None,
    }
    _write_job(jobs_dir, job)

    bootstrap = f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); from {__name__} import main; main()"
    with open(_log_path(jobs_dir, job_id), "ab") as log:
        try:
            launcher = subprocess.Popen(
                [sys.executable, "-c", bootstrap, "run", job_id, jobs_dir],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=jobs_dir,
                start_new_session=True,
            )
        except OSError as error:
            _update_job(
                jobs_dir,
                job_id,
                status="failed",
                ended_at=int(time.time()),
                error=f"could not start: {error}",
            )
            raise
    try:
        exit_code = launcher.wait(timeout=_LAUNCHER_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        exit_code = 0  # still starting; the job records its own fate
    if exit_code != 0:
        _update_job(
            jobs_dir,
            job_id,
            status="failed",
            ended_at=int(time.time()),
            error=f"the installer could not start (exit code {exit_code}); see the output",
        )
    return job_id


def _environment_constraints(packages_dir: str, jobs_dir: str, job_id: str) -> list[str]:
    """`--constraint <file>` pinning every package of the server's own Python environment at its installed version.

    Function code imports the server's copy of a package before the packages folder's (the loader appends that
    folder to `sys.path`), so a second copy at another version would never be used, and whatever needed that version
    would break at import (transformers refusing the server's newer tokenizers). With these pins pip either fits the
    install around the server's packages or fails, saying which requirement conflicts."""
    pins = {}
    search = [path for path in sys.path if path and not _inside(os.path.abspath(path), packages_dir)]
    for dist in importlib.metadata.distributions(path=search):
        name, version = dist.metadata["Name"], dist.version
        if not name or not version or canonicalize_name(name) in _TOOLS:
            continue
        try:
            Version(version)
        except InvalidVersion:
            continue  # pip could not read such a pin either
        pins.setdefault(canonicalize_name(name), f"{canonicalize_name(name)}=={version}")
    if not pins:
        return []
    path = os.path.join(jobs_dir, f"{job_id}.constraints.txt")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(
            "# The server's own packages at their installed versions (loader/installer.py says why).\n"
        )
        handle.write("\n".join(sorted(pins.values())) + "\n")
    return ["--constraint", path]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def validate_install_requirements(requirements: list[str]) -> list[str]:
    """Return the canonical form of each requirement, or raise `RequirementError` for the first bad one."""
    if isinstance(requirements, str) or not requirements:
        raise RequirementError("give a non-empty list of requirements")
    validated = []
    for text in requirements:
        if not isinstance(text, str):
            raise RequirementError(f"not a requirement string: {text!r}")
        # packaging would reject these too; refusing anything option-like first keeps that promise explicit.
        if any(word.startswith("-") for word in text.split()):
            raise RequirementError(f"{text!r}: pip options are not accepted")
        try:
            validated.append(str(parse_requirement(text)))
        except RequirementError as error:
            raise RequirementError(f"{text!r}: {error}") from None
    return validated


def get_job(job_id: str, jobs_dir: str) -> dict | None:
    """Return the job's status with the tail of its output, or None if there is no such job."""
    job = _read_job(jobs_dir, job_id)
    if job is None:
        return None
    output, truncated = _output_tail(_log_path(jobs_dir, job_id))
    job["output"] = output
    job["output_truncated"] = truncated
    return job


def list_jobs(jobs_dir: str) -> list[dict]:
    """Return every job's status (without output), newest first."""
    try:
        names = os.listdir(jobs_dir)
    except FileNotFoundError:
        return []
    jobs = []
    for name in names:
        job_id, extension = os.path.splitext(name)
        if extension == ".json":
            job = _read_job(jobs_dir, job_id)
            if job is not None:
                jobs.append(job)
    jobs.sort(key=lambda job: (job.get("created_at") or 0, job["id"]), reverse=True)
    return jobs


# --- the job process ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Entry point of the launcher started by `start_install`: `run <job_id> <jobs_dir>`."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "run" or not _JOB_ID.match(args[1]):
        sys.exit("usage: run <job_id> <jobs_dir>")
    _, job_id, jobs_dir = args
    # Detach: the launcher exits at once, the forked child is adopted by init and does the work.
    if os.fork() > 0:
        os._exit(0)
    try:
        _run_job(job_id, jobs_dir)
    except BaseException as error:  # record any failure: a job must never stay "running" forever
        traceback.print_exc()
        sys.stdout.flush()
        _update_job(
            jobs_dir, job_id, status="failed", ended_at=int(time.time()), error=f"installer error: {error!r}"
        )
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)


def _run_job(job_id: str, jobs_dir: str) -> None:
    job = _read_job(jobs_dir, job_id)
    if job is None:
        raise RuntimeError(f"job file for {job_id} is missing")
    _update_job(jobs_dir, job_id, pid=os.getpid())
    command = job["command"]
    packages_dir = job["packages_dir"]
    # The requirements were validated before the job file was written; check the one property that matters
    # for pip's command line once more, in case the file was altered.
    if any(word.startswith("-") for text in job["requirements"] for word in text.split()):
        raise RuntimeError("refusing option-like requirements")

    with open(os.path.join(jobs_dir, _LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _update_job(jobs_dir, job_id, status="running", started_at=int(time.time()))
        before = _dist_info_names(packages_dir)
        with open(_log_path(jobs_dir, job_id), "ab") as log:
            log.write(f"$ {shlex.join(command)}\n".encode())
            log.flush()
            exit_code, error = _run_pip(command, log, cwd=jobs_dir, timeout=job["timeout"])
            if exit_code == 0:
                for removed in _prune_replaced_dist_info(packages_dir, before):
                    log.write(f"removed stale metadata {removed}\n".encode())
    _update_job(
        jobs_dir,
        job_id,
        status="succeeded" if exit_code == 0 else "failed",
        exit_code=exit_code,
        ended_at=int(time.time()),
        error=error,
    )


def _run_pip(command: list[str], log, *, cwd: str, timeout: float) -> tuple[int | None, str | None]:
    environment = dict(os.environ, PYTHONUNBUFFERED="1", PIP_NO_INPUT="1")
    # pip gets its own process group so a timeout also stops the build processes it started.
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=environment,
        start_new_session=True,
    )
    try:
        exit_code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None, f"pip did not finish within {timeout:g} seconds and was stopped"
    if exit_code != 0:
        return exit_code, f"pip exited with code {exit_code}"
    return 0, None


def _dist_info_names(packages_dir: str) -> set[str]:
    try:
        return {name for name in os.listdir(packages_dir) if name.endswith(".dist-info")}
    except FileNotFoundError:
        return set()


def _prune_replaced_dist_info(packages_dir: str, before: set[str]) -> list[str]:
    """Remove the metadata of versions this run replaced.

    pip's `--target --upgrade` replaces a package's code but leaves `pkg-1.0.dist-info` beside the new
    `pkg-2.0.dist-info`, and `importlib.metadata` could then report the old version.
    """
    new = _dist_info_names(packages_dir) - before
    new_projects = {_project_of(name) for name in new}
    removed = []
    for name in sorted(before):
        if _project_of(name) in new_projects:
            shutil.rmtree(os.path.join(packages_dir, name), ignore_errors=True)
            removed.append(name)
    return removed


def _project_of(dist_info_name: str) -> str:
    return canonicalize_name(dist_info_name.removesuffix(".dist-info").rsplit("-", 1)[0])


# --- job files ---------------------------------------------------------------------------------------------


def _job_path(jobs_dir: str, job_id: str) -> str:
    return os.path.join(jobs_dir, f"{job_id}.json")


def _log_path(jobs_dir: str, job_id: str) -> str:
    return os.path.join(jobs_dir, f"{job_id}.log")


def _read_job(jobs_dir: str, job_id: str) -> dict | None:
    # The id becomes part of a path: accept only ids this module made.
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        return None
    try:
        with open(_job_path(jobs_dir, job_id), encoding="utf-8") as handle:
            job = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if job.get("status") not in FINISHED and job.get("pid") and not _process_alive(job["pid"]):
        # Re-read first: the process may have written its result just before exiting.
        try:
            with open(_job_path(jobs_dir, job_id), encoding="utf-8") as handle:
                job = json.load(handle)
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if job.get("status") not in FINISHED:
            job["status"] = "failed"
            job["error"] = "the installer process ended without recording a result"
    return job


def _write_job(jobs_dir: str, job: dict) -> None:
    path = _job_path(jobs_dir, job["id"])
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(job, handle, indent=2)
    os.replace(temporary, path)  # readers never see a half-written file


def _update_job(jobs_dir: str, job_id: str, **changes) -> None:
    with open(_job_path(jobs_dir, job_id), encoding="utf-8") as handle:
        job = json.load(handle)
    job.update(changes)
    _write_job(jobs_dir, job)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has finished; it only waits for a parent that does not reap it (a container's bare init).
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _output_tail(path: str) -> tuple[str, bool]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - OUTPUT_TAIL_BYTES))
            data = handle.read(OUTPUT_TAIL_BYTES)
    except FileNotFoundError:
        return "", False
    truncated = size > OUTPUT_TAIL_BYTES
    if truncated and b"\n" in data:
        data = data[data.index(b"\n") + 1 :]  # start at a whole line
    return data.decode("utf-8", errors="replace"), truncated


if __name__ == "__main__":
    main()
