"""Time the console's functions list with 10,000 functions, on SQLite and (when given) PostgreSQL.

The functions are inserted directly (no loader), each with realistic code (~8 KiB) and a manifest, because the list
never reads the code and the point is to show that it does not: the page must stay fast however large the code is.

    .venv/bin/python bench/bench_console.py                       # SQLite in a temporary folder
    .venv/bin/python bench/bench_console.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/bench_console

The PostgreSQL database given is emptied first. Each case prints the median and the 95th percentile of
``--repeat`` requests through the Flask test client (rendering included, network excluded).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from timing import time_console_pages  # noqa: E402

PASSWORD = "bench password 1234"
WORDS = "summary translate filter context memory rate limit citation search web tool shout emoji code".split()
AUTHORS = ["Grace Hopper", "Ada Lovelace", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Ken Thompson"]

CASES = [
    ("first page, newest first", "/admin/functions"),
    ("page 100", "/admin/functions?page=100"),
    ("sorted by name", "/admin/functions?sort=name"),
    ("filter: type=action, active", "/admin/functions?type=action&status=active"),
    ("search a common word", "/admin/functions?q=memory"),
    ("search an author (in meta)", "/admin/functions?q=lovelace"),
    ("search two words, no match", "/admin/functions?q=zebra%20quartz"),
    ("search + type + sort by name", "/admin/functions?q=filter&type=filter&sort=name"),
]


def code_of(index: int) -> str:
    body = "\n".join(
        f"    def helper_{n}(self, body: dict) -> dict:\n        return body  # {n}" for n in range(120)
    )
    return f'"""\ntitle: Function {index}\n"""\n\n\nclass Filter:\n{body}\n'


def function_rows(count: int, user_id: str, first: int = 0, seed: int = 7) -> list[dict]:
    """``count`` functions as table rows, each with ~8 KiB of code and a manifest (bench/compare.py uses them too)."""
    rng = random.Random(seed)
    start = 1_700_000_000
    rows = []
    for index in range(first, first + count):
        words = rng.sample(WORDS, 3)
        rows.append(
            {
                "id": f"fn_{index:05d}_{words[0]}",
                "user_id": user_id,
                "name": " ".join(word.title() for word in words) + f" {index}",
                "type": rng.choice(["filter", "filter", "pipe", "action"]),
                "content": code_of(index),
                "meta": {
                    "description": f"Does {words[1]} and {words[2]} for every chat.",
                    "manifest": {
                        "title": f"Function {index}",
                        "author": rng.choice(AUTHORS),
                        "version": f"0.{index % 10}.{index % 7}",
                    },
                },
                "valves": {},
                "is_active": rng.random() < 0.3,
                "is_global": False,
                "created_at": start + index,
                "updated_at": start + rng.randrange(max(count, 1) * 10),
            }
        )
    return rows


def insert_functions(connection, rows: list[dict]) -> None:
    """Insert rows as made by ``function_rows`` in batches of 1,000 (an SQLAlchemy connection or session)."""
    from models import Function

    for offset in range(0, len(rows), 1000):
        connection.execute(Function.__table__.insert(), rows[offset : offset + 1000])


def populate(app, count: int) -> None:
    from extensions import db
    from services import accounts

    with app.app_context():
        admin = accounts.create_user("Bench Admin", "bench@example.com", PASSWORD, role="admin")
        insert_functions(db.session, function_rows(count, admin.id))
        db.session.commit()


def time_cases(app, repeat: int) -> list[tuple[str, float, float, int]]:
    return [
        (label, median, p95, response.data.count(b'data-testid="function-row"'))
        for label, median, p95, response in time_console_pages(
            app, "bench@example.com", PASSWORD, CASES, repeat
        )
    ]


def run(database_url: str, count: int, repeat: int) -> None:
    from app import create_app
    from database import upgrade_database

    upgrade_database(database_url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "bench", "TESTING": True})
    began = time.perf_counter()
    populate(app, count)
    print(f"  inserted {count} functions in {time.perf_counter() - began:.1f} s")
    print(f"  {'case':<34} {'median':>9} {'p95':>9}  rows")
    for label, median, p95, rows in time_cases(app, repeat):
        print(f"  {label:<34} {median:>7.1f}ms {p95:>7.1f}ms  {rows}")


def empty_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", help="a PostgreSQL URL to bench too (its database is emptied)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        print(f"SQLite, {args.count} functions")
        run(f"sqlite:///{Path(folder) / 'bench.sqlite3'}", args.count, args.repeat)
    if args.postgres:
        print(f"PostgreSQL, {args.count} functions")
        empty_postgres(args.postgres)
        run(args.postgres, args.count, args.repeat)


if __name__ == "__main__":
    main()
