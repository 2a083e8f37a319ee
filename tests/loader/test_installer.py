"""Installer: admin-triggered pip runs as detached background jobs (SPEC §4.5), with a fake pip."""

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

from loader import installer
from loader.installer import get_job, list_jobs, start_install
from loader.requirements import RequirementError, parse_requirements

FAKE_PIP = textwrap.dedent(
    """
    import os, re, sys, time
    mode, args = sys.argv[1], sys.argv[2:]
    print("fake pip got:", " ".join(args), flush=True)
    target = args[args.index("--target") + 1]
    requirements = args[args.index("--") + 1:]
    if mode == "ok":
        for requirement in requirements:
            name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0).replace("-", "_")
            dist_info = os.path.join(target, f"{name}-2.0.dist-info")
            os.makedirs(dist_info, exist_ok=True)
            with open(os.path.join(dist_info, "METADATA"), "w") as handle:
                handle.write(f"Metadata-Version: 2.1\\nName: {name}\\nVersion: 2.0\\n")
        print("Successfully installed", " ".join(requirements))
    elif mode == "fail":
        print("ERROR: No matching distribution found", file=sys.stderr)
        sys.exit(3)
    elif mode == "flood":
        for number in range(4000):
            print(f"line {number:05d} " + "x" * 60)
        print("LAST LINE")
    elif mode == "sleep":
        time.sleep(60)
    elif mode.startswith("log:"):
        with open(mode[4:], "a") as handle:
            handle.write(f"start {time.time()}\\n")
        time.sleep(0.5)
        with open(mode[4:], "a") as handle:
            handle.write(f"end {time.time()}\\n")
    """
)


@pytest.fixture
def fake_pip(tmp_path):
    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP)

    def command(mode):
        return [sys.executable, str(script), mode]

    return command


@pytest.fixture
def dirs(tmp_path):
    return str(tmp_path / "packages"), str(tmp_path / "jobs")


def wait_until_finished(job_id, jobs_dir, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get_job(job_id, jobs_dir)
        if job["status"] in installer.FINISHED:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {get_job(job_id, jobs_dir)}")


def test_successful_install(fake_pip, dirs):
    packages_dir, jobs_dir = dirs
    job_id = start_install(["sluice-demo >= 1"], packages_dir, jobs_dir, pip_command=fake_pip("ok"))

    job = wait_until_finished(job_id, jobs_dir)
    assert job["status"] == "succeeded"
    assert job["exit_code"] == 0
    assert job["error"] is None
    assert job["requirements"] == ["sluice-demo>=1"]
    assert job["started_at"] >= job["created_at"] and job["ended_at"] >= job["started_at"]
    output = job["output"]
    assert f"--target {packages_dir} --upgrade --upgrade-strategy only-if-needed" in output
    assert "--no-input --disable-pip-version-check -- sluice-demo>=1" in output
    assert "Successfully installed sluice-demo>=1" in output
    assert not job["output_truncated"]
    # What was installed now counts as installed.
    assert parse_requirements("sluice-demo>=1", packages_dir=packages_dir).missing == []


def test_every_install_is_constrained_to_open_webuis_pins_and_a_cpu_torch(fake_pip, dirs):
    packages_dir, jobs_dir = dirs
    job_id = start_install(["sluice-demo"], packages_dir, jobs_dir, pip_command=fake_pip("ok"))

    job = wait_until_finished(job_id, jobs_dir)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    functions, install = (
        os.path.join(root, "requirements-functions.txt"),
        os.path.join(root, "constraints-install.txt"),
    )
    assert installer.CONSTRAINT_FILES == [functions, install]
    assert f"only-if-needed --constraint {functions} --constraint {install} --constraint " in job["output"]
    with open(install) as handle:
        pins = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    # PyPI's default torch for Linux pulls several GB of CUDA libraries; Open WebUI's default image runs on the CPU.
    assert [pin for pin in pins if pin.startswith("torch")] == ["torch==2.13.0+cpu"]
    assert "sentence-transformers==5.5.1" in pins  # Open WebUI 0.12.4's pin


def test_every_install_keeps_the_servers_own_packages_at_their_installed_versions(fake_pip, dirs):
    """Function code imports the server's copy of a package first: an install must never bring a second copy at
    another version (transformers then refused the server's newer tokenizers at import)."""
    packages_dir, jobs_dir = dirs
    # A package already in the packages folder is the install's to change, not pinned.
    stale = os.path.join(packages_dir, "sluice_stale-1.0.dist-info")
    os.makedirs(stale)
    with open(os.path.join(stale, "METADATA"), "w") as handle:
        handle.write("Metadata-Version: 2.1\nName: sluice-stale\nVersion: 1.0\n")
    sys.path.append(packages_dir)
    try:
        job_id = start_install(["sluice-demo"], packages_dir, jobs_dir, pip_command=fake_pip("ok"))
    finally:
        sys.path.remove(packages_dir)

    job = wait_until_finished(job_id, jobs_dir)
    args = job["command"]
    files = [args[index + 1] for index, arg in enumerate(args) if arg == "--constraint"]
    assert len(files) == 3 and files[2] == os.path.join(jobs_dir, f"{job_id}.constraints.txt")
    with open(files[2]) as handle:
        pins = {line.split("==")[0]: line.strip().split("==")[1] for line in handle if "==" in line}
    assert pins["pydantic"] == importlib.metadata.version("pydantic")
    assert pins["flask"] == importlib.metadata.version("flask")
    assert "sluice-stale" not in pins and "pip" not in pins
    assert job["status"] == "succeeded"
    assert [job["id"] for job in list_jobs(jobs_dir)] == [job_id]  # the constraints file is no job


def test_an_install_needing_another_version_of_a_server_package_is_refused_saying_which(tmp_path, dirs):
    """With real pip, offline: a package that needs itsdangerous<1 (which requirements-functions.txt does not pin)
    conflicts with the server's itsdangerous, instead of bringing a second copy that would never be imported."""
    packages_dir, jobs_dir = dirs
    wheels = tmp_path / "wheels"
    _write_wheel(wheels, "needs_old_itsdangerous", "1.0", requires=["itsdangerous<1"])
    # Unconstrained, pip would install this second copy beside the server's.
    _write_wheel(wheels, "itsdangerous", "0.1", requires=[])
    offline_pip = [sys.executable, str(_offline_pip(tmp_path, wheels))]
    job_id = start_install(["needs-old-itsdangerous"], packages_dir, jobs_dir, pip_command=offline_pip)

    job = wait_until_finished(job_id, jobs_dir, timeout=120)
    assert job["status"] == "failed", job["output"]
    assert "itsdangerous" in job["output"] and "conflict" in job["output"].lower()
    assert not os.path.isdir(os.path.join(packages_dir, "itsdangerous"))


def _write_wheel(folder, name: str, version: str, requires: list[str]) -> None:
    """A minimal pure-Python wheel, written by hand: building one would need setuptools and network."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "",
        f"{dist_info}/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            name.replace("_", "-"), version, "".join(f"Requires-Dist: {line}\n" for line in requires)
        ),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: sluice-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
        wheel.writestr(
            f"{dist_info}/RECORD", "".join(f"{path},,\n" for path in [*files, f"{dist_info}/RECORD"])
        )


def _offline_pip(tmp_path, wheels):
    """A pip that sees only the folder of test wheels (no index, no configured find-links)."""
    script = tmp_path / "offline_pip.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            from pip._internal.cli.main import main
            os.environ["PIP_CONFIG_FILE"] = os.devnull
            os.environ.pop("PIP_FIND_LINKS", None)
            os.environ.pop("PIP_EXTRA_INDEX_URL", None)
            os.environ.pop("PIP_CONSTRAINT", None)
            sys.exit(main(["--isolated", *sys.argv[1:2], "--no-index", "--find-links", {str(wheels)!r}, *sys.argv[2:]]))
            """
        )
    )
    return script


def test_real_pip_command_by_default(dirs, monkeypatch):
    def no_launch(*args, **kwargs):
        raise OSError("not launched in this test")

    monkeypatch.setattr(installer.subprocess, "Popen", no_launch)
    packages_dir, jobs_dir = dirs
    with pytest.raises(OSError):
        start_install(["requests"], packages_dir, jobs_dir)
    (name,) = [name for name in os.listdir(jobs_dir) if name.endswith(".json")]
    with open(os.path.join(jobs_dir, name)) as handle:
        recorded = json.load(handle)
    assert recorded["command"][:3] == [sys.executable, "-m", "pip"]
    assert recorded["command"][3:5] == ["install", "--target"]
    assert recorded["status"] == "failed" and "could not start" in recorded["error"]


def test_failed_install(fake_pip, dirs):
    packages_dir, jobs_dir = dirs
    job_id = start_install(["sluice-demo"], packages_dir, jobs_dir, pip_command=fake_pip("fail"))

    job = wait_until_finished(job_id, jobs_dir)
    assert job["status"] == "failed"
    assert job["exit_code"] == 3
    assert "exited with code 3" in job["error"]
    assert "ERROR: No matching distribution found" in job["output"]


def test_timeout_stops_pip(fake_pip, dirs):
    packages_dir, jobs_dir = dirs
    job_id = start_install(["sluice-demo"], packages_dir, jobs_dir, pip_command=fake_pip("sleep"), timeout=1)

    job = wait_until_finished(job_id, jobs_dir)
    assert job["status"] == "failed"
    assert job["exit_code"] is None
    assert "did not finish within 1 seconds" in job["error"]


def test_output_tail_is_capped(fake_pip, dirs):
    packages_dir, jobs_dir = dirs
    job_id = start_install(["sluice-demo"], packages_dir, jobs_dir, pip_command=fake_pip("flood"))

    job = wait_until_finished(job_id, jobs_dir)
    assert job["output_truncated"] is True
    assert len(job["output"].encode()) <= installer.OUTPUT_TAIL_BYTES
    assert job["output"].startswith("line ")  # starts at a whole line
    assert job["output"].rstrip().endswith("LAST LINE")


def test_start_returns_at_once_and_pip_is_not_our_child(fake_pip, dirs):
    packages_dir, jobs_dir = dirs
    started = time.monotonic()
    job_id = start_install(["sluice-demo"], packages_dir, jobs_dir, pip_command=fake_pip("sleep"), timeout=2)
    assert time.monotonic() - started < 5

    deadline = time.monotonic() + 10
    while not (get_job(job_id, jobs_dir) or {}).get("pid") and time.monotonic() < deadline:
        time.sleep(0.05)
    job = get_job(job_id, jobs_dir)
    assert job["status"] in {"queued", "running"}
    with open(f"/proc/{job['pid']}/stat") as handle:
        parent_pid = int(handle.read().rsplit(")", 1)[1].split()[1])
    assert job["pid"] != os.getpid() and parent_pid != os.getpid()
    wait_until_finished(job_id, jobs_dir)


def test_jobs_run_one_at_a_time(fake_pip, dirs, tmp_path):
    packages_dir, jobs_dir = dirs
    timeline = tmp_path / "timeline"
    first = start_install(["a-pkg"], packages_dir, jobs_dir, pip_command=fake_pip(f"log:{timeline}"))
    second = start_install(["b-pkg"], packages_dir, jobs_dir, pip_command=fake_pip(f"log:{timeline}"))
    wait_until_finished(first, jobs_dir)
    wait_until_finished(second, jobs_dir)

    events = [line.split() for line in timeline.read_text().splitlines()]
    assert [kind for kind, _ in events] == ["start", "end", "start", "end"]
    assert float(events[1][1]) <= float(events[2][1])


@pytest.mark.parametrize(
    "requirements",
    [
        pytest.param(["--index-url=https://evil.example/simple", "requests"], id="option"),
        pytest.param(["requests", "-e ."], id="editable"),
        pytest.param(["requests --pre"], id="option-after-space"),
        pytest.param(["-r /etc/passwd"], id="requirements-file"),
        pytest.param(["git+https://github.com/x/y.git"], id="bare-url"),
        pytest.param(["pkg @ file:///tmp/x"], id="file-url"),
        pytest.param(["requests pydantic"], id="two-names"),
        pytest.param([""], id="empty-string"),
        pytest.param([], id="empty-list"),
        pytest.param("requests", id="string-not-list"),
        pytest.param([None], id="not-a-string"),
    ],
)
def test_invalid_requirements_are_refused_before_anything_runs(requirements, fake_pip, dirs):
    packages_dir, jobs_dir = dirs
    with pytest.raises(RequirementError):
        start_install(requirements, packages_dir, jobs_dir, pip_command=fake_pip("ok"))
    assert not os.path.exists(jobs_dir)
    assert not os.path.exists(packages_dir)


def test_get_job_unknown_or_malformed_id(dirs):
    _, jobs_dir = dirs
    os.makedirs(jobs_dir)
    assert get_job("20260101T000000-0123abcd", jobs_dir) is None
    assert get_job("../../etc/passwd", jobs_dir) is None
    assert get_job("", jobs_dir) is None


def test_list_jobs_newest_first_without_output(fake_pip, dirs):
    packages_dir, jobs_dir = dirs
    assert list_jobs(jobs_dir) == []
    first = start_install(["a-pkg"], packages_dir, jobs_dir, pip_command=fake_pip("ok"))
    wait_until_finished(first, jobs_dir)
    # Make the first job visibly older.
    path = os.path.join(jobs_dir, f"{first}.json")
    with open(path) as handle:
        job = json.load(handle)
    job["created_at"] -= 10
    with open(path, "w") as handle:
        json.dump(job, handle)
    second = start_install(["b-pkg"], packages_dir, jobs_dir, pip_command=fake_pip("fail"))
    wait_until_finished(second, jobs_dir)

    jobs = list_jobs(jobs_dir)
    assert [job["id"] for job in jobs] == [second, first]
    assert [job["status"] for job in jobs] == ["failed", "succeeded"]
    assert all("output" not in job for job in jobs)


def test_job_whose_process_vanished_is_reported_failed(dirs):
    _, jobs_dir = dirs
    os.makedirs(jobs_dir)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    job_id = "20260101T000000-0123abcd"
    with open(os.path.join(jobs_dir, f"{job_id}.json"), "w") as handle:
        json.dump({"id": job_id, "status": "running", "pid": gone.pid, "created_at": 1}, handle)

    job = get_job(job_id, jobs_dir)
    assert job["status"] == "failed"
    assert "without recording a result" in job["error"]


def test_upgrade_removes_metadata_of_replaced_version(fake_pip, dirs):
    packages_dir, jobs_dir = dirs
    old = os.path.join(packages_dir, "sluice_demo-1.0.dist-info")
    os.makedirs(old)
    with open(os.path.join(old, "METADATA"), "w") as handle:
        handle.write("Metadata-Version: 2.1\nName: sluice-demo\nVersion: 1.0\n")
    other = os.path.join(packages_dir, "unrelated-1.0.dist-info")
    os.makedirs(other)

    job_id = start_install(["sluice-demo>=2"], packages_dir, jobs_dir, pip_command=fake_pip("ok"))
    job = wait_until_finished(job_id, jobs_dir)
    assert job["status"] == "succeeded"
    assert "removed stale metadata sluice_demo-1.0.dist-info" in job["output"]
    assert not os.path.exists(old) and os.path.exists(other)
    (item,) = parse_requirements("sluice-demo>=2", packages_dir=packages_dir).requirements
    assert item.installed_version == "2.0"
