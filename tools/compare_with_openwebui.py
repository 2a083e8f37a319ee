"""Compare Sluice's function loading with a running Open WebUI.

Two commands:

``compare``
    Create every fixture in ``tests/fixtures/functions/`` (or ``--fixtures``) through both APIs (``POST /api/v1/functions/create``,
    then ``GET /id/{id}``, ``/id/{id}/valves/spec`` and ``/id/{id}/valves/user/spec``) and report any difference
    in type, manifest and Valves/UserValves schemas, and which fixtures failed where. Either side can be left out
    (``--sluice-url`` / ``--owui-url``); ``--record`` stores what Open WebUI answered in ``expected.json`` and in
    ``openwebui/<name>.json`` so the corpus test can compare Sluice against it without Open WebUI running.

``catalogue``
    Read an installed Open WebUI package and write which modules exist and, for each, which public names it
    defines and of what kind (class, function, object, module, or a re-export). Only names and kinds are recorded,
    never code. The compatibility layer (``loader/compat/open_webui``) uses the catalogue so that an uncommon but
    real ``from open_webui.x import Name`` imports (as an "not available in Sluice" stand-in) while a name Open
    WebUI does not have still raises ImportError, as it would there. For the settings modules (``env``,
    ``config``) it also records the plain values (str, int, float, bool, None) that a fresh Open WebUI with no
    environment gives them, by importing them once with Open WebUI's own interpreter in a scratch folder, so
    that ``Field(default=RAG_TOP_K)`` gets 3 there and here.

A maintenance tool, not part of the running product: Sluice reads only the catalogue it writes. Open WebUI itself is
never copied into the repository; install it in a virtual environment of its own outside the tree (``pip install
open-webui==0.12.4``, the version the catalogue and ``tests/fixtures/functions/expected.json`` record), start it on
loopback with ``open-webui serve``, and pass ``--owui-url`` (compare) or ``--site-packages`` (catalogue).

The catalogue's reading of Open WebUI lives in ``tools/openwebui_catalogue.py``; this file holds the comparison and
the command line of both.

Run from the repository root:  .venv/bin/python tools/compare_with_openwebui.py --help
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from openwebui_catalogue import add_catalogue_command

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "functions"


# ----------------------------------------------------------------------------------------------------- compare


class Api:
    """A minimal JSON client for the functions API that Open WebUI and Sluice both serve."""

    def __init__(self, base_url: str, api_key: str, label: str):
        self.base = base_url.rstrip("/") + "/api/v1/functions"
        self.key = api_key
        self.label = label

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw[:200].decode("utf-8", "replace")

    def create_and_describe(self, function_id: str, content: str) -> dict:
        """Create the function afresh and return what the API says about it."""
        self.call("DELETE", f"/id/{function_id}/delete")
        started = time.perf_counter()
        status, created = self.call(
            "POST",
            "/create",
            {"id": function_id, "name": function_id, "content": content, "meta": {"description": ""}},
        )
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        if status != 200 or not isinstance(created, dict):
            detail = created.get("detail") if isinstance(created, dict) else created
            return {"loaded": False, "status": status, "detail": detail, "create_ms": elapsed_ms}
        _, got = self.call("GET", f"/id/{function_id}")
        got = got if isinstance(got, dict) else {}
        meta = got.get("meta") or created.get("meta") or {}
        _, valves = self.call("GET", f"/id/{function_id}/valves/spec")
        # User valves are only described for an active function.
        self.call("POST", f"/id/{function_id}/toggle")
        _, user_valves = self.call("GET", f"/id/{function_id}/valves/user/spec")
        self.call("POST", f"/id/{function_id}/toggle")
        return {
            "loaded": True,
            "type": got.get("type", created.get("type")),
            "manifest": meta.get("manifest") or {},
            "toggle": bool(meta.get("toggle")),
            "valves_spec": valves if isinstance(valves, dict) else None,
            "user_valves_spec": user_valves if isinstance(user_valves, dict) else None,
            "create_ms": elapsed_ms,
        }


def fixture_files(folder: Path = FIXTURES) -> list[Path]:
    return sorted(folder.glob("*.py"))


def function_id_for(path: Path) -> str:
    return path.stem.lower()


def differences(a: dict, b: dict, labels: tuple[str, str]) -> list[str]:
    """What differs between two create_and_describe answers, in words."""
    if a["loaded"] != b["loaded"]:
        failed = labels[0] if not a["loaded"] else labels[1]
        answer = a if not a["loaded"] else b
        return [
            f"loads only in {labels[1] if failed == labels[0] else labels[0]}; {failed} said: {answer['detail']}"
        ]
    if not a["loaded"]:
        return []
    found = []
    for key in ("type", "toggle", "manifest", "valves_spec", "user_valves_spec"):
        if a.get(key) != b.get(key):
            found.append(
                f"{key}: {labels[0]}={json.dumps(a.get(key))[:300]} {labels[1]}={json.dumps(b.get(key))[:300]}"
            )
    return found


def command_compare(args: argparse.Namespace) -> int:
    sides = []
    if args.owui_url:
        sides.append(Api(args.owui_url, args.owui_key, "open-webui"))
    if args.sluice_url:
        sides.append(Api(args.sluice_url, args.sluice_key, "sluice"))
    if not sides:
        print("give --owui-url and/or --sluice-url", file=sys.stderr)
        return 2
    wanted = set(args.only or [])
    answers: dict[str, dict[str, dict]] = {}
    folder = Path(args.fixtures)
    for path in fixture_files(folder):
        if wanted and path.stem not in wanted:
            continue
        content = path.read_text(encoding="utf-8")
        answers[path.stem] = {
            side.label: side.create_and_describe(function_id_for(path), content) for side in sides
        }
        if not args.keep:
            for side in sides:
                side.call("DELETE", f"/id/{function_id_for(path)}/delete")

    mismatches = 0
    for name, by_side in answers.items():
        summary = ", ".join(
            f"{label}: {answer.get('type') if answer['loaded'] else 'FAILED ' + str(answer['status'])}"
            for label, answer in by_side.items()
        )
        print(f"{name}: {summary}")
        if len(by_side) == 2:
            (la, a), (lb, b) = by_side.items()
            for line in differences(a, b, (la, lb)):
                mismatches += 1
                print(f"    DIFF {line}")
        for label, answer in by_side.items():
            if not answer["loaded"]:
                print(f"    {label}: {answer['detail']}")
    if args.owui_log:
        add_reasons_from_log(answers, Path(args.owui_log))
    if args.record and any("open-webui" in by_side for by_side in answers.values()):
        record_openwebui(answers, folder)
    for side in sides:
        times = sorted(by_side[side.label]["create_ms"] for by_side in answers.values())
        if times:
            print(
                f"{side.label}: create took {statistics.median(times):.1f} ms median, {times[-1]:.1f} ms max "
                f"over {len(times)} fixtures"
            )
    if len(sides) == 2:
        print(f"{mismatches} difference(s) over {len(answers)} fixtures")
    return 1 if mismatches else 0


def add_reasons_from_log(answers: dict[str, dict[str, dict]], log_path: Path) -> None:
    """Open WebUI's create answer hides why a load failed; its server log says. Attach that reason."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    for name, by_side in answers.items():
        answer = by_side.get("open-webui")
        if answer and not answer["loaded"]:
            marker = f"Error loading module: {function_id_for(Path(name))}: "
            reasons = [line.split(marker, 1)[1].strip() for line in text.splitlines() if marker in line]
            if reasons:
                answer["reason"] = reasons[-1]
                print(f"    open-webui's log: {reasons[-1]}  ({name})")


def record_openwebui(answers: dict[str, dict[str, dict]], folder: Path = FIXTURES) -> None:
    """Store Open WebUI's answers beside the fixtures: a summary in expected.json, schemas in openwebui/.

    A fixture seen for the first time that Open WebUI loads is expected to load in Sluice exactly as there
    (`same_as_openwebui`: true); one that fails there needs its expected error written by hand.
    """
    expected_path = folder / "expected.json"
    expected = json.loads(expected_path.read_text(encoding="utf-8")) if expected_path.exists() else {}
    (folder / "openwebui").mkdir(exist_ok=True)
    for name, by_side in answers.items():
        answer = by_side.get("open-webui")
        if answer is None:
            continue
        entry = expected.setdefault(name, {})
        if answer["loaded"]:
            summary = {
                "loaded": True,
                "type": answer["type"],
                "toggle": answer["toggle"],
                "manifest": answer["manifest"],
                "valves": answer["valves_spec"] is not None,
                "user_valves": answer["user_valves_spec"] is not None,
            }
            entry["openwebui"] = summary
            if "type" not in entry and "error" not in entry:
                entry.update({key: value for key, value in summary.items() if key != "loaded"})
                entry["same_as_openwebui"] = True
            schemas = {"valves_spec": answer["valves_spec"], "user_valves_spec": answer["user_valves_spec"]}
            (folder / "openwebui" / f"{name}.json").write_text(
                json.dumps(schemas, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
        else:
            entry["openwebui"] = {"loaded": False, "status": answer["status"], "detail": answer["detail"]}
            if answer.get("reason"):
                entry["openwebui"]["reason"] = answer["reason"]
            (folder / "openwebui" / f"{name}.json").unlink(missing_ok=True)
    expected_path.write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"recorded Open WebUI's answers in {expected_path} and openwebui/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    compare = commands.add_parser(
        "compare", help="create every fixture through both APIs and report differences"
    )
    compare.add_argument("--owui-url", help="e.g. http://127.0.0.1:8081")
    compare.add_argument("--owui-key", help="an Open WebUI admin API key (sk-...)")
    compare.add_argument("--sluice-url", help="e.g. http://127.0.0.1:5000")
    compare.add_argument("--sluice-key", help="a Sluice admin API key")
    compare.add_argument("--only", nargs="*", help="fixture names (file stems) to run; all by default")
    compare.add_argument(
        "--fixtures",
        default=str(FIXTURES),
        help="the folder of fixtures (and of expected.json and openwebui/ when recording); default: the corpus",
    )
    compare.add_argument(
        "--record", action="store_true", help="store Open WebUI's answers beside the fixtures"
    )
    compare.add_argument("--owui-log", help="Open WebUI's server log, to learn why a load failed there")
    compare.add_argument("--keep", action="store_true", help="leave the created functions in place")
    compare.set_defaults(run=command_compare)

    add_catalogue_command(commands)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
