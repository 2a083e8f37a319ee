"""Time the console's history pages for a large function (the 3,150-line glossary pipe) with many versions.

The history page diffs each listed version against the one before it to show the size of each change, and the
compare page highlights both versions whole; this shows what that costs on the largest real function we keep. The
versions are inserted directly (no loader): small edits spread through the file, and every tenth version a rewrite
of half its lines (the worst case for the diff).

    .venv/bin/python bench/bench_history.py                  # 200 versions, 20 requests per case
    .venv/bin/python bench/bench_history.py --versions 1000 --repeat 30

Each case prints the median and the 95th percentile through the Flask test client (rendering included, network
excluded), on SQLite in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from timing import time_console_pages  # noqa: E402

PASSWORD = "bench password 1234"
LARGE = (ROOT / "tests" / "fixtures" / "functions" / "pipe_large_glossary.py").read_text()


def version_content(index: int) -> str:
    lines = LARGE.splitlines()
    if index % 10 == 5:
        # A rewrite: every other line changed.
        return "\n".join(f"{line}  # v{index}" if n % 2 else line for n, line in enumerate(lines)) + "\n"
    for n in range(index % 7, len(lines), 400):
        lines[n] = f"{lines[n]}  # edited in v{index}"
    return "\n".join(lines) + "\n"


def populate(app, count: int) -> tuple[str, list[str]]:
    from extensions import db
    from models import Function, FunctionVersion
    from services import accounts

    with app.app_context():
        admin = accounts.create_user("Bench Admin", "bench@example.com", PASSWORD, role="admin")
        start = 1_700_000_000
        ids = [f"00000000-0000-7000-8000-{index:012d}" for index in range(count)]
        rows = [
            {
                "id": ids[index],
                "function_id": "glossary",
                "user_id": admin.id,
                "commit_message": f"Change {index}",
                "name": "Glossary",
                "content": version_content(index),
                "meta": {"description": "A large pipe", "manifest": {"version": f"1.0.{index}"}},
                "created_at": start + index,
            }
            for index in range(count)
        ]
        db.session.add(
            Function(
                id="glossary",
                user_id=admin.id,
                name="Glossary",
                type="pipe",
                content=rows[-1]["content"],
                meta=rows[-1]["meta"],
                valves={},
                is_active=False,
                is_global=False,
                version_id=ids[-1],
                created_at=start,
                updated_at=start + count,
            )
        )
        db.session.flush()
        for offset in range(0, count, 200):
            db.session.execute(FunctionVersion.__table__.insert(), rows[offset : offset + 200])
        db.session.commit()
        return "glossary", ids


def time_cases(app, cases, repeat: int):
    for label, median, p95, response in time_console_pages(app, "bench@example.com", PASSWORD, cases, repeat):
        yield label, median, p95, len(response.data)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from app import create_app
    from database import upgrade_database

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        upgrade_database(url)
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "TESTING": True})
        function_id, ids = populate(app, args.versions)
        base = f"/admin/functions/history?id={function_id}"
        cases = [
            ("history, first page (20 diffs, cached)", base),
            ("history, last page", f"{base}&page={(args.versions + 19) // 20}"),
            (
                "one version, highlighted",
                f"/admin/functions/history/version?id={function_id}&version={ids[0]}",
            ),
            ("compare: current vs previous", f"/admin/functions/history/compare?id={function_id}"),
            (
                "compare: a rewrite (every other line)",
                f"/admin/functions/history/compare?id={function_id}&from={ids[4]}&to={ids[5]}",
            ),
            ("compare: first vs current", f"/admin/functions/history/compare?id={function_id}&from={ids[0]}"),
        ]
        print(f"  {args.versions} versions of a {len(LARGE.splitlines())}-line function")
        print(f"  {'case':<40} {'median':>9} {'p95':>9}  {'bytes':>9}")
        for label, median, p95, size in time_cases(app, cases, args.repeat):
            print(f"  {label:<40} {median:>7.1f}ms {p95:>7.1f}ms  {size:>9}")
        with app.app_context():
            from extensions import db

            db.engine.dispose()


if __name__ == "__main__":
    main()
