"""`fs tenant acl NAME`: the Redis ACL for a tenant's user, from the same code that builds key names."""

from __future__ import annotations

from typing import Annotated

import typer

from fs_platform.cli.state import state

app = typer.Typer(
    help="Tenancy: Redis ACL rules for a tenant's users (docs/online_store.md, Tenancy).",
    no_args_is_help=True,
)


@app.command("acl")
def acl(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Redis ACL user name (letters, digits, '_', '-').")],
    role: Annotated[
        str,
        typer.Option("--role", help="serve (reads), write (+ writes, leases) or admin (+ apply/teardown)."),
    ] = "admin",
) -> None:
    """Print the ACL SETUSER command confining NAME to this repo's key prefix (add the password with
    `ACL SETUSER NAME >...` yourself: no secret is printed)."""
    from fs_platform.plugins.redis_store.acl import repo_acl_rules, user_name

    st = state(ctx)
    rules = repo_acl_rules(st.platform.config, role)
    if st.as_json:
        return st.out.json({"user": user_name(name), "role": role, "rules": rules})
    st.out.text(" ".join(["ACL SETUSER", user_name(name), *rules]))
