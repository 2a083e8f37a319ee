"""Operator commands: `flask --app app init-db | create-user | create-api-key`."""

from __future__ import annotations

import click
from flask import Flask, current_app
from sqlalchemy import select

from database import upgrade_database
from extensions import db
from models import ROLES, User
from services import accounts, audit
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
