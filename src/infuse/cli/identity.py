"""The ``users`` and ``groups`` commands: who may use the workspace's server (``infuse serve --auth``).

Why a CLI at all when the server has admin routes: the first admin must come from somewhere, and
whoever runs the server owns the workspace folder. Each command is one call on
:class:`~infuse.identity.IdentityStore`; a new API key goes to stdout alone (the note that it is
shown once goes to stderr), so ``KEY=$(infuse users add alice)`` works in a script.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infuse.cli.common import command_line, err, open_workspace, out, print_json, render_removed
from infuse.identity import IdentityStore, UserInfo

users_app = typer.Typer(help="Users of the server and their API keys.", no_args_is_help=True)
groups_app = typer.Typer(help="Groups of users (what access lists name as group:NAME).", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
UserArg = Annotated[str, typer.Argument(help="User name (letters, digits, . _ @ -).")]
GroupArg = Annotated[str, typer.Argument(help="Group name (letters, digits, . _ @ -).")]


def identity(create: bool = False) -> IdentityStore:
    """The opened workspace's identity database (``create``: the workspace and database too)."""
    ws = open_workspace(create=create)
    return IdentityStore.open(ws.path, create=create, settings=ws.settings.auth)


def existing_identity() -> IdentityStore | None:
    """The identity database, or None when no user was ever added (list commands then show nothing)."""
    ws = open_workspace()
    return IdentityStore.open(ws.path, settings=ws.settings.auth) if IdentityStore.exists(ws.path) else None


def show_new_key(user: UserInfo, key: str, what: str, as_json: bool) -> None:
    if as_json:
        print_json({"user": user.to_dict(), "api_key": key, "shown_once": True})
        return
    err.print(
        f"{what} [bold]{escape(user.name)}[/]{' (admin)' if user.admin else ''}"
        f"{' in ' + escape(', '.join(user.groups)) if user.groups else ''}. Their API key follows; it is shown "
        f"[bold]once[/] and not stored (only its hash is): hand it over now. "
        f"`{escape(command_line(f'users keys {user.name} --rotate'))}` makes a new one.",
        highlight=False,
    )
    print(key)


@users_app.command("add")
def users_add(
    name: UserArg,
    admin: Annotated[bool, typer.Option("--admin", help="May administer users, groups and documents.")] = False,
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="A group to join (repeatable).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add a user and print their one-time API key."""
    with identity(create=True) as store:
        key = store.add_user(name, admin=admin, groups=group or ())
        show_new_key(store.user(name), key, "added user", as_json)
        if not any(u.admin and not u.disabled for u in store.list_users()):
            err.print(
                f"note: no admin yet; `{escape(command_line('users set NAME --admin'))}` makes one "
                "(admins manage users and read every document)",
                highlight=False,
            )


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """Users: admin flag, groups, number of working API keys, created."""
    store = existing_identity()
    users = store.list_users() if store else []
    if as_json:
        print_json([u.to_dict() for u in users])
        return
    if not users:
        out.print(f"no users yet; add the first admin with `{command_line('users add NAME --admin')}`", highlight=False)
        return
    table = Table()
    for column in ("user", "role", "groups", "keys", "created"):
        table.add_column(column, overflow="fold")
    for u in users:
        role = ("admin" if u.admin else "member") + (" (disabled)" if u.disabled else "")
        table.add_row(escape(u.name), role, escape(", ".join(u.groups)), str(u.keys), u.created)
    out.print(table)


@users_app.command("remove")
def users_remove(name: UserArg, as_json: JsonOption = False) -> None:
    """Remove a user, their keys and sessions, effective at once (the last admin cannot be removed)."""
    with identity() as store:
        store.remove_user(name)
    render_removed({"removed": name, "kind": "user", "path": str(store.path)}, as_json)


@users_app.command("keys")
def users_keys(
    name: UserArg,
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace their keys by a new one (printed once).")] = False,
    revoke: Annotated[bool, typer.Option("--revoke", help="Delete their keys; they cannot sign in.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show how many API keys a user has; --rotate or --revoke them (effective at once, sessions end too)."""
    if rotate and revoke:
        raise typer.BadParameter("give --rotate or --revoke, not both")
    with identity() as store:
        if rotate:
            key = store.rotate_key(name)
            show_new_key(store.user(name), key, "new key for", as_json)
            return
        if revoke:
            store.revoke_keys(name)
        user = store.user(name)
    if as_json:
        print_json({"user": user.name, "keys": user.keys, "revoked": revoke})
    elif revoke:
        out.print(f"revoked the keys of [bold]{escape(name)}[/]; their sessions ended", highlight=False)
    else:
        out.print(f"{escape(name)} has {user.keys} API key{'s' if user.keys != 1 else ''}", highlight=False)


@users_app.command("set")
def users_set(
    name: UserArg,
    admin: Annotated[bool | None, typer.Option("--admin/--member", help="Make an admin or a member.")] = None,
    disabled: Annotated[
        bool | None, typer.Option("--disable/--enable", help="Refuse or allow the user's keys (kept).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a user's role or disable them (the last admin keeps their role)."""
    with identity() as store:
        if admin is not None:
            store.set_admin(name, admin)
        if disabled is not None:
            store.set_disabled(name, disabled)
        user = store.user(name)
    if as_json:
        print_json(user.to_dict())
    else:
        role = "admin" if user.admin else "member"
        out.print(f"{escape(name)}: {role}{', disabled' if user.disabled else ''}", highlight=False)


@users_app.command("failures")
def users_failures(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Failed authentications the server recorded: time, client address, key id (never the key), reason."""
    store = existing_identity()
    records = store.failures(limit) if store else []
    if as_json:
        print_json(records)
    elif not records:
        out.print("no failed authentications recorded", highlight=False)
    else:
        for r in records:
            out.print(
                f"{r['time']}  {escape(r['address'])}  {r['key_id'] or '-'}  {escape(r['reason'])}", highlight=False
            )


@groups_app.command("add")
def groups_add(name: GroupArg, as_json: JsonOption = False) -> None:
    """Add a group (then `groups members NAME --add USER`)."""
    with identity(create=True) as store:
        store.add_group(name)
    if as_json:
        print_json({"added": name, "kind": "group"})
    else:
        out.print(f"added group [bold]{escape(name)}[/]", highlight=False)


@groups_app.command("remove")
def groups_remove(name: GroupArg, as_json: JsonOption = False) -> None:
    """Remove a group and its memberships (access lists naming it then match nobody)."""
    with identity() as store:
        store.remove_group(name)
    render_removed({"removed": name, "kind": "group", "path": str(store.path)}, as_json)


@groups_app.command("list")
def groups_list(as_json: JsonOption = False) -> None:
    """Groups and their members."""
    store = existing_identity()
    groups = store.list_groups() if store else []
    if as_json:
        print_json([g.to_dict() for g in groups])
    elif not groups:
        out.print(f"no groups yet; add one with `{command_line('groups add NAME')}`", highlight=False)
    else:
        for g in groups:
            out.print(f"{escape(g.name)}: {escape(', '.join(g.members)) or '(no members)'}", highlight=False)


@groups_app.command("members")
def groups_members(
    group: GroupArg,
    add: Annotated[list[str] | None, typer.Option("--add", help="A user to add (repeatable).")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="A user to take out (repeatable).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a group's members; --add and --remove change them (effective at once)."""
    with identity() as store:
        for user in add or ():
            store.add_member(group, user)
        for user in remove or ():
            store.remove_member(group, user)
        members = store.members(group)
    if as_json:
        print_json({"group": group, "members": members})
    else:
        out.print(f"{escape(group)}: {escape(', '.join(members)) or '(no members)'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(groups_app, name="groups")
