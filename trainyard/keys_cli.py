"""`trainyard keys create|list|revoke`: API keys, managed on the server side (straight in the database)."""

from __future__ import annotations

from typing import Annotated

import typer

keys_app = typer.Typer(no_args_is_help=True, help="API keys: each belongs to a tenant; shown once.")


def _migrated_session():
    from store.db import session_scope
    from store.migrate import upgrade

    upgrade()
    return session_scope()


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="the tenant the key acts for")],
    name: Annotated[str | None, typer.Option(help="a note on what the key is for")] = None,
) -> None:
    """Make a new key and print it (the last word): it is not shown again. A tenant's first key comes with
    the tenant's webhook signing secret, printed (once) on the line before."""
    from store import keys

    try:
        with _migrated_session() as session:
            new = keys.issue_key(session, tenant, name)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if new.webhook_secret:
        typer.echo(f"webhook signing secret for tenant {tenant} (shown once): {new.webhook_secret}")
    typer.echo(f"API key for tenant {tenant} (shown once): {new.key}")


@keys_app.command("list")
def list_keys(tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None) -> None:
    """Every key's id, tenant, name and state (never the secret: only its hash is kept)."""
    from store import keys

    with _migrated_session() as session:
        for key in keys.list_keys(session, tenant):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            typer.echo(f"{key.id}  {key.tenant:20s}  {state:24s}  {key.name or ''}")


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="the key's id, as `list` shows it")]) -> None:
    """Revoke a key: refused from then on (within a few seconds on running APIs)."""
    from store import keys

    with _migrated_session() as session:
        if not keys.revoke_key(session, key_id):
            typer.echo(f"error: no active key {key_id}", err=True)
            raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
