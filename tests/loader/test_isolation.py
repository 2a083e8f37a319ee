"""Function code runs in a separate, capped process: whatever it does, the caller gets an answer and keeps working."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import sys
import tempfile
import textwrap
import threading
import time
import uuid

import pytest

from loader import connection

PLAIN = "class Filter:\n    pass\n"


def unique(text: str) -> str:
    return f"{text}\n# {uuid.uuid4().hex}\n"


def assert_still_answering(loader, within: float = 1.0) -> None:
    """A normal load right after a failure answers promptly."""
    started = time.monotonic()
    result = loader.load_function(unique(PLAIN))
    assert result.ok, result.error
    assert time.monotonic() - started < within


def defaults(result) -> dict:
    return {name: prop.get("default") for name, prop in result.valves_schema["properties"].items()}


def own_pid_namespace(loader) -> bool:
    """Whether load children run in process-id namespaces of their own (loader/namespaces.py): their pids are then
    not the server's, and they name their processes (`TAG`) so that the tests can find them."""
    return bool(loader.start()["confinement"].get("pid_namespace"))


# Function code names a process it forks (its `comm`, 15 characters at most) so that the test finds it by name.
NAME_PROCESS = (
    "import ctypes\ndef name_process(tag):\n    ctypes.CDLL(None).prctl(15, tag.encode(), 0, 0, 0)\n"
)


def named(tag: str) -> list[int]:
    """The pids of the processes named `tag`, as the server sees them."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() == tag:
                        found.append(int(entry))
    return found


def process_gone(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # the latter when it vanishes while being read
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def test_code_never_runs_in_the_callers_process(loader_fast, source):
    path_before = list(sys.path)
    result = loader_fast.load_function(
        source("""
        import os
        from pydantic import BaseModel

        class Filter:
            class Valves(BaseModel):
                pid: int = os.getpid()
                parent: int = os.getppid()
    """)
    )

    assert result.ok, result.error
    assert defaults(result)["pid"] != os.getpid()
    if own_pid_namespace(loader_fast):  # the first process of its namespace, which the zygote forked
        assert (defaults(result)["pid"], defaults(result)["parent"]) == (2, 1)
    else:
        assert defaults(result)["parent"] == loader_fast.stats()["zygote_pid"]
    assert "function_function" not in sys.modules
    assert sys.path == path_before
    assert connection.COMPAT_DIR not in sys.path


def test_infinite_loop_times_out_and_the_loader_keeps_answering(loader_fast):
    started = time.monotonic()
    result = loader_fast.load_function(unique("while True:\n    pass\n"))
    elapsed = time.monotonic() - started

    assert not result.ok
    assert result.error.type == "Timeout"
    assert result.error.message == "loading took longer than 2 s"
    assert 1.9 < elapsed < 3.5
    assert_still_answering(loader_fast)


def test_timeouts_are_not_cached(loader_fast):
    content = unique("import time\ntime.sleep(60)\n")
    assert loader_fast.load_function(content).error.type == "Timeout"
    jobs = loader_fast.stats()["jobs"]
    assert loader_fast.load_function(content).error.type == "Timeout"
    assert loader_fast.stats()["jobs"] == jobs + 1


def test_a_hanging_load_does_not_delay_others(loader_fast):
    hanging = {}

    def hang():
        hanging["result"] = loader_fast.load_function(unique("import time\ntime.sleep(30)\n"))

    thread = threading.Thread(target=hang)
    thread.start()
    time.sleep(0.2)
    try:
        started = time.monotonic()
        results = [loader_fast.load_function(unique(PLAIN)) for _ in range(5)]
        assert time.monotonic() - started < 1.0
        assert all(result.ok for result in results)
        assert thread.is_alive()
    finally:
        thread.join(5)
    assert hanging["result"].error.type == "Timeout"


def test_concurrent_callers_each_get_their_own_answer(loader_fast):
    answers: dict[int, object] = {}

    def load(number: int) -> None:
        content = unique(
            f"from pydantic import BaseModel\nclass Pipe:\n    class Valves(BaseModel):\n"
            f"        number: int = {number}\n"
        )
        answers[number] = loader_fast.load_function(content)

    threads = [threading.Thread(target=load, args=(number,)) for number in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(answers) == list(range(12))
    for number, result in answers.items():
        assert result.ok, result.error
        assert defaults(result)["number"] == number


@pytest.mark.parametrize(
    ("code", "kind", "message"),
    [
        ("import os\nos._exit(0)", "Exit", "the code exited (status 0) while loading"),
        ("import os\nos._exit(7)", "Exit", "the code exited (status 7) while loading"),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
            "Killed",
            "the code was killed by SIGKILL while loading",
        ),
        ("import ctypes\nctypes.string_at(0)", "Killed", "the code was killed by SIGSEGV while loading"),
        ("import os\nos.abort()", "Killed", "the code was killed by SIGABRT while loading"),
    ],
)
def test_the_code_ending_its_own_process_is_a_clear_error(loader_fast, code, kind, message):
    result = loader_fast.load_function(unique(code + "\nclass Pipe:\n    pass\n"))

    assert not result.ok
    assert result.error.type == kind
    assert result.error.message == message
    assert_still_answering(loader_fast)


def test_the_child_runs_under_resource_limits(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        from pydantic import BaseModel

        with open("/proc/self/limits") as limits:
            LIMITS = {line[:26].strip(): line[26:47].strip() for line in limits.read().splitlines()[1:]}

        class Pipe:
            class Valves(BaseModel):
                limits: dict = LIMITS
    """)
    )

    assert result.ok, result.error
    limits = defaults(result)["limits"]
    assert limits["Max cpu time"] == "3"
    assert limits["Max core file size"] == "0"
    assert limits["Max processes"] != "unlimited"
    assert limits["Max address space"] != "unlimited"
    assert limits["Max file size"] == str(256 * 1024 * 1024)


def test_memory_is_capped(loader_fast):
    result = loader_fast.load_function(unique("hoard = bytearray(3 * 1024 ** 3)\nclass Pipe:\n    pass\n"))

    assert not result.ok
    assert result.error.type == "MemoryError"
    assert result.error.message == (
        "the code needed more than the 1024 MiB of memory a function may use while loading (SLUICE_LOAD_MEMORY_MB)"
    )
    assert result.error.line == 1
    assert_still_answering(loader_fast)


def test_memory_cap_follows_configure(loader_fast):
    # Filling 320 MiB took over loader_fast's 2 s once while the rest of the suite used both cores: this test is
    # about the cap, not the clock (the fixture puts the timeout back).
    loader_fast.configure(timeout=15)
    grow = "chunks = [bytearray(16 * 1024 ** 2) for _ in range(20)]\nclass Pipe:\n    pass\n"
    assert loader_fast.load_function(unique(grow)).ok
    loader_fast.configure(memory_mb=128)
    try:
        result = loader_fast.load_function(unique(grow))
    finally:
        loader_fast.configure(memory_mb=1024)
    assert result.error.type == "MemoryError"


def test_the_cap_counts_memory_used_not_address_space_reserved(loader_fast):
    """torch reserves over 1 GiB of address space at import and uses half of it: a reservation is no use of memory,
    so it loads under the default cap, while allocating the same amount is refused."""
    reserve = unique(
        "import mmap\n"
        "reserved = mmap.mmap(-1, 1536 * 1024 ** 2, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0)\n"
        "class Pipe:\n    pass\n"
    )
    assert loader_fast.load_function(reserve).ok

    allocate = loader_fast.load_function(
        unique("used = bytearray(1536 * 1024 ** 2)\nclass Pipe:\n    pass\n")
    )
    assert allocate.error.type == "MemoryError"


def test_shared_memory_the_cap_does_not_count_still_has_a_ceiling(loader_fast):
    """Shared anonymous mappings are not part of the data size the cap counts: the address space limit stops a
    function from taking the machine's memory through them."""
    result = loader_fast.load_function(
        unique("import mmap\nshared = mmap.mmap(-1, 16 * 1024 ** 3)\nclass Pipe:\n    pass\n")
    )

    assert not result.ok
    assert result.error.type in ("MemoryError", "OSError"), result.error
    assert_still_answering(loader_fast)


def test_deep_native_recursion_is_killed_not_fatal(loader_fast):
    code = "import sys\nsys.setrecursionlimit(10 ** 7)\ndef down(n):\n    return down(n + 1)\ndown(0)\n"
    result = loader_fast.load_function(unique(code))

    assert not result.ok
    # Where the C stack runs out decides the error: the kernel's kill, a RecursionError, or (about one run in
    # five, when it runs out inside a C function that then fails without setting an exception) CPython 3.11's
    # "SystemError: error return without exception set". Each ends the load alone; the loader keeps answering.
    assert result.error.type in ("Killed", "RecursionError", "MemoryError", "Timeout", "SystemError")
    assert_still_answering(loader_fast)


def test_output_under_the_limit_is_kept_up_to_the_cap(loader_fast):
    code = "import sys\nfor _ in range(900):\n    sys.stdout.write('x' * 1023 + '\\n')\nclass Filter:\n    pass\n"
    result = loader_fast.load_function(unique(code))

    assert result.ok, result.error
    kept, _, note = result.output.rpartition("\n[")
    assert len(kept) == 64 * 1024
    assert note.startswith(f"{900 * 1024 - 64 * 1024} more bytes")


def test_a_stdout_flood_ends_the_load_with_a_clear_error(loader_fast):
    code = "import sys\nfor _ in range(200_000):\n    sys.stdout.write('x' * 1023 + '\\n')\nclass Filter:\n    pass\n"
    result = loader_fast.load_function(unique(code))  # 200 MB, were it let through

    assert result.error.type == "OutputLimit"
    assert "more than 1 MB of output while loading" in result.error.message
    assert "SLUICE_LOAD_OUTPUT_MB" in result.error.message
    assert len(result.output.rpartition("\n[")[0]) == 64 * 1024  # the start is still shown
    assert_still_answering(loader_fast)


def test_the_output_limit_is_a_setting(loader_fast):
    loader_fast.configure(load_output_mb=0.5)
    try:
        code = "import sys\nfor _ in range(600):\n    sys.stdout.write('x' * 1023 + '\\n')\nclass Filter:\n    pass\n"
        result = loader_fast.load_function(unique(code))
    finally:
        loader_fast.configure(load_output_mb=1)
    assert result.error.type == "OutputLimit"
    assert "more than 0.5 MB" in result.error.message


def test_endless_output_ends_at_the_output_limit(loader_fast):
    result = loader_fast.load_function(unique("import os\nwhile True:\n    os.write(2, b'y' * 65536)\n"))

    assert result.error.type == "OutputLimit"
    assert len(result.output) < 70 * 1024
    assert_still_answering(loader_fast)


def test_reading_stdin_gets_end_of_file(loader_fast):
    result = loader_fast.load_function(
        unique("try:\n    input()\nexcept EOFError:\n    pass\nclass Filter:\n    pass\n")
    )

    assert result.ok, result.error


def test_threads_left_running_do_not_hold_the_answer(loader_fast):
    code = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\nclass Filter:\n    pass\n"
    started = time.monotonic()
    result = loader_fast.load_function(unique(code))

    assert result.ok, result.error
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("escape", [False, True], ids=["same-group", "own-session"])
def test_forked_grandchildren_are_killed(loader_fast, source, escape):
    # The process that sleeps names itself and reports its own pid through a pipe: with `escape` it is the grandchild
    # of a double fork in a new session, not the intermediate child that `os.fork()` returned. In a process-id
    # namespace of its own, that pid is not the server's: the test finds the process by its name.
    tag = f"sl{uuid.uuid4().hex[:12]}"
    result = loader_fast.load_function(
        NAME_PROCESS
        + source(f"""
        import os, time
        from pydantic import BaseModel

        reading, writing = os.pipe()
        if os.fork() == 0:
            os.close(reading)
            if {escape}:
                os.setsid()
                if os.fork():
                    os._exit(0)
            name_process({tag!r})
            os.write(writing, str(os.getpid()).encode())
            os.close(writing)
            time.sleep(60)
            os._exit(0)
        os.close(writing)
        sleeper = int(os.read(reading, 32))

        class Pipe:
            class Valves(BaseModel):
                sleeper: int = sleeper
    """)
    )

    assert result.ok, result.error
    if own_pid_namespace(loader_fast):
        deadline = time.monotonic() + 2
        while named(tag) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not named(tag)
        return assert_still_answering(loader_fast)
    sleeper = defaults(result)["sleeper"]
    try:
        assert process_gone(sleeper)
    finally:
        with contextlib.suppress(OSError):
            os.kill(sleeper, signal.SIGKILL)
    assert_still_answering(loader_fast)


def test_forked_grandchildren_of_a_timed_out_load_are_killed(loader_fast):
    # The grandchild names itself; the test finds it by that name while the load runs, and after its timeout.
    tag = f"sl{uuid.uuid4().hex[:12]}"
    code = NAME_PROCESS + (
        f"import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n"
        f"    name_process({tag!r})\n    time.sleep(60)\n    os._exit(0)\n"
        "time.sleep(60)\n"
    )
    results = []
    loading = threading.Thread(target=lambda: results.append(loader_fast.load_function(unique(code))))
    loading.start()
    seen: list[int] = []
    while loading.is_alive() and not seen:
        seen = named(tag)
        time.sleep(0.01)
    loading.join()

    assert results[0].error.type == "Timeout"
    assert seen, "the grandchild was never seen running"
    assert all(process_gone(pid) for pid in seen)


def test_secrets_are_not_in_the_childs_environment(loader_fast, monkeypatch, source):
    monkeypatch.setenv("SECRET_KEY", "app-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:pw@db/sluice")
    monkeypatch.setenv("SLUICE_ADMIN_PASSWORD", "pw")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    monkeypatch.setenv("SLUICE_TEST_PLAIN_SETTING", "kept?")
    monkeypatch.setenv("HARMLESS_SETTING", "kept")
    loader_fast.shutdown()  # the environment is taken when the zygote starts
    try:
        result = loader_fast.load_function(
            source("""
            import os
            from pydantic import BaseModel

            NAMES = ["SECRET_KEY", "DATABASE_URL", "SLUICE_ADMIN_PASSWORD", "OPENAI_API_KEY", "GITHUB_TOKEN",
                     "SLUICE_TEST_PLAIN_SETTING", "HARMLESS_SETTING"]

            class Pipe:
                class Valves(BaseModel):
                    seen: dict = {name: os.environ.get(name) for name in NAMES}
        """)
        )
    finally:
        loader_fast.shutdown()
        monkeypatch.undo()
        loader_fast.start()

    assert result.ok, result.error
    assert defaults(result)["seen"] == {
        "SECRET_KEY": None,
        "DATABASE_URL": None,
        "SLUICE_ADMIN_PASSWORD": None,
        "OPENAI_API_KEY": None,
        "GITHUB_TOKEN": None,
        "SLUICE_TEST_PLAIN_SETTING": None,
        "HARMLESS_SETTING": "kept",
    }


def test_each_load_gets_a_fresh_scratch_directory_removed_afterwards(loader_fast, source):
    code = source("""
        import os
        from pydantic import BaseModel

        with open("lock.file", "w") as lock:
            lock.write("mine")
        os.chmod(".", 0o500)
        LEFT_BEFORE = sorted(os.listdir("."))

        class Pipe:
            class Valves(BaseModel):
                cwd: str = os.getcwd()
                seen: list = LEFT_BEFORE
                tmp: str = __import__("tempfile").gettempdir()
    """)
    first = defaults(loader_fast.load_function(unique(code)))
    second = defaults(loader_fast.load_function(unique(code)))

    assert first["cwd"] != second["cwd"] != os.getcwd()
    assert first["tmp"] == first["cwd"]
    assert first["seen"] == ["function_function.py", "lock.file"]
    deadline = time.monotonic() + 2
    while os.path.exists(first["cwd"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(first["cwd"])


def test_packages_dir_is_on_the_childs_path_only(loader_fast, tmp_path):
    package = "sluice_extra_" + uuid.uuid4().hex[:8]
    (tmp_path / f"{package}.py").write_text("VALUE = 42\n")
    code = unique(f"import {package}\nclass Pipe:\n    pass\n")

    missing = loader_fast.load_function(code)
    assert missing.error.type == "ModuleNotFoundError"
    assert missing.error.message.startswith(
        f"this function needs the package '{package.replace('_', '-')}', which is not installed. "
    )

    loader_fast.configure(packages_dir=str(tmp_path))
    try:
        assert loader_fast.load_function(code).ok
        assert str(tmp_path) not in sys.path
    finally:
        loader_fast.configure(packages_dir=None)


def test_zygote_killed_externally_is_restarted(loader_fast):
    assert_still_answering(loader_fast)
    stats = loader_fast.stats()
    os.kill(stats["zygote_pid"], signal.SIGKILL)
    time.sleep(0.1)

    result = loader_fast.load_function(unique(PLAIN))

    assert result.ok, result.error
    after = loader_fast.stats()
    assert after["zygote_starts"] == stats["zygote_starts"] + 1
    assert after["zygote_pid"] != stats["zygote_pid"]


def test_a_load_in_flight_when_the_zygote_dies_gets_a_clear_error(loader_fast):
    assert_still_answering(loader_fast)
    zygote_pid = loader_fast.stats()["zygote_pid"]
    answer = {}

    def slow():
        answer["result"] = loader_fast.load_function(
            unique("import time\ntime.sleep(1.5)\nclass Pipe:\n    pass\n")
        )

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    os.kill(zygote_pid, signal.SIGKILL)
    started = time.monotonic()
    thread.join(5)

    assert time.monotonic() - started < 1
    assert answer["result"].error.type == "LoaderCrashed"
    left_behind = glob.glob(
        os.path.join(tempfile.gettempdir(), f"sluice-zygote-{zygote_pid}-*", "sluice-load-*")
    )
    assert left_behind  # the killed zygote could not clean up its children's scratch directories...
    assert_still_answering(loader_fast, within=5)
    assert not any(os.path.exists(path) for path in left_behind)  # ...so the next one does


def test_a_function_killing_the_zygote_only_fails_itself(loader_fast):
    if own_pid_namespace(loader_fast):
        # Its parent is the first process of its own namespace, root's: it ignores the signal, or (for a child that
        # dropped root) the signal is refused. The zygote is out of reach either way.
        zygote = loader_fast.stats()["zygote_pid"]
        result = loader_fast.load_function(
            unique(
                "import contextlib, os, signal\nwith contextlib.suppress(PermissionError):\n"
                "    os.kill(os.getppid(), signal.SIGKILL)\nclass Pipe:\n    pass\n"
            )
        )
        assert result.ok, result.error
        assert loader_fast.stats()["zygote_pid"] == zygote
        return assert_still_answering(loader_fast)
    dropped = loader_fast.start()["privileges"]["drop"]
    result = loader_fast.load_function(
        unique("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(5)\n")
    )

    assert not result.ok
    # A child that dropped root may not signal the zygote at all (tests/loader/test_privileges.py).
    assert result.error.type == ("PermissionError" if dropped else "LoaderCrashed")
    assert_still_answering(loader_fast, within=5)


def test_the_zygote_is_single_threaded_and_keeps_compat_off_the_callers_path(loader_fast):
    assert_still_answering(loader_fast)
    zygote_pid = loader_fast.stats()["zygote_pid"]

    assert os.listdir(f"/proc/{zygote_pid}/task") == [str(zygote_pid)]
    with open(f"/proc/{zygote_pid}/environ", "rb") as environ:
        names = {item.split(b"=", 1)[0].decode() for item in environ.read().split(b"\0") if item}
    assert not any(name.startswith("SLUICE_") for name in names)


def test_a_forked_caller_starts_its_own_zygote(loader_fast):
    """A web worker forked after the parent used the loader (gunicorn --preload) must not share its zygote."""
    assert_still_answering(loader_fast)
    parent_zygote = loader_fast.stats()["zygote_pid"]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked copy reports through its exit status
        status = 1
        try:
            result = loader_fast.load_function(unique(PLAIN))
            own = loader_fast.stats()["zygote_pid"]
            status = 0 if result.ok and own not in (None, parent_zygote) else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert_still_answering(loader_fast)
    assert loader_fast.stats()["zygote_pid"] == parent_zygote


def test_children_find_open_webuis_catalogue_already_read(loader_fast):
    """The catalogue of Open WebUI's names is read once by the zygote, before it forks: a function that imports a
    name Sluice does not implement does not pay for parsing it again in every load and call."""
    result = loader_fast.load_function(
        unique(
            textwrap.dedent(
                """
            from open_webui import _catalogue
            READ_BEFORE = _catalogue._catalogue.cache_info().currsize
            from open_webui.utils.tools import get_tools  # a name only the catalogue knows
            from pydantic import BaseModel

            class Filter:
                class Valves(BaseModel):
                    read_before: int = READ_BEFORE
                    stand_in: bool = callable(get_tools)
            """
            )
        )
    )

    assert result.ok, result.error
    assert defaults(result) == {"read_before": 1, "stand_in": True}
