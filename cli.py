"""Operator commands: `flask --app app init-db | create-user | create-api-key | rotate-valves-key | backup | restore |
prune-audit`."""

from __future__ import annotations

import click
from flask import Flask, current_app
from sqlalchemy import select

from database import upgrade_database
from extensions import db
from models import ROLES, User
from services import accounts, audit, backup, sealed_valves
from services.errors import ServiceError


def register_commands(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db():
        """Create or upgrade the database schema to the latest migration (safe to run again)."""
        upgrade_database(current_app.config["SQLALCHEMY_DATABASE_URI"])
        click.echo("Database is up to date.")

    @app.cli.command("create-user")
    @click.option("--email", required=True)
    @click.option("--name", required=True)
    @click.option("--password", required=True)
    @click.option("--role", type=click.Choice(ROLES), default="user", show_default=True)
    def create_user(email: str, name: str, password: str, role: str):
        """Create an account."""
        try:
            with audit.acting_as("cli"):
                user = accounts.create_user(name, email, password, role=role)
        except accounts.AccountError as exc:
            raise click.ClickException(exc.detail) from None
        click.echo(f"Created {user.role} {user.email} ({user.id}).")

    @app.cli.command("create-api-key")
    @click.option("--email", required=True)
    @click.option("--name", default="cli", show_default=True)
    @click.option(
        "--connection",
        is_flag=True,
        help="A connection key for Open WebUI (admins only): works only on the gateway under /v1, where it may "
        "act for the user a request names.",
    )
    def create_api_key(email: str, name: str, connection: bool):
        """Create an API key for an account; the key is the last line printed."""
        user = db.session.scalar(select(User).where(User.email == accounts.normalise_email(email)))
        if user is None:
            raise click.ClickException(f"No account has the email {email}.")
        try:
            with audit.acting_as("cli"):
                _key, plain = accounts.create_api_key(user, name, connection=connection)
        except ServiceError as exc:
            raise click.ClickException(exc.detail) from None
        kind = "Connection key" if connection else "API key"
        click.echo(f"{kind} for {user.email} (shown once):")
        click.echo(plain)

    @app.cli.command("rotate-valves-key")
    @click.option("--dry-run", is_flag=True, help="Say what would be sealed again, and change nothing.")
    def rotate_valves_key(dry_run: bool):
        """Seal every password-type valve again with the first key of SLUICE_VALVES_KEY (also those in clear)."""
        report = sealed_valves.reseal_all(dry_run=dry_run)
        if report.unopened:
            raise click.ClickException(
                "Nothing was changed: these sealed valves cannot be opened with SLUICE_VALVES_KEY or the key derived "
                "from SECRET_KEY (add the key that sealed them after the new one, separated by a comma): "
                + ", ".join(report.unopened)
            )
        verb = "Would seal" if dry_run else "Sealed"
        click.echo(
            f"{verb} {report.values} values with the current key "
            f"({report.functions} functions' valves, {report.user_valves} users' valves)."
        )

    @app.cli.command("backup")
    @click.argument("file", type=click.Path(dir_okay=False, writable=True))
    def backup_command(file: str):
        """Write every account, API key hash, function, version and valve to FILE (JSON, readable by you only)."""
        counts = backup.write_backup(file)
        click.echo(f"Backed up {_counted(counts)} to {file}.")

    @app.cli.command("restore")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option(
        "--replace", is_flag=True, help="Delete everything in the database first (refused otherwise)."
    )
    def restore_command(file: str, replace: bool):
        """Restore a backup made by `backup`, in one transaction: a damaged or foreign file changes nothing."""
        try:
            counts = backup.restore_backup(file, replace=replace)
        except backup.BackupRefused as error:
            raise click.ClickException(error.detail) from None
        click.echo(f"Restored {_counted(counts)} from {file}.")

    @app.cli.command("prune-audit")
    @click.option(
        "--older-than",
        "days",
        type=click.IntRange(min=1),
        help="Days an entry is kept (default: SLUICE_AUDIT_KEEP_DAYS).",
    )
    @click.option("--dry-run", is_flag=True, help="Say how many entries would go, and remove nothing.")
    def prune_audit(days: int | None, dry_run: bool):
        """Remove the audit trail's entries older than some days, oldest first, in batches."""
        days = days or current_app.config["SLUICE_AUDIT_KEEP_DAYS"]
        if not days:
            raise click.ClickException(
                "Say how many days to keep (--older-than DAYS), or set SLUICE_AUDIT_KEEP_DAYS: it is 0, which "
                "keeps every entry."
            )
        count = audit.prune(days, dry_run=dry_run)
        verb = "Would remove" if dry_run else "Removed"
        click.echo(f"{verb} {count} audit entr{'y' if count == 1 else 'ies'} older than {days} days.")


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in counts.items())
