"""``hulu-workstation users``: the workstation users who may sign reports.

    users add LOGIN --name "Family^Given" [--licence ID] [--password-stdin]
    users list
    users remove LOGIN
    users passwd LOGIN [--password-stdin]

Passwords are asked for twice at a prompt that does not echo, or read from the first line of
stdin with ``--password-stdin``; only a salted scrypt hash is stored.
Exit codes: 0 done, 2 refused (the message says why).
"""

from __future__ import annotations

import argparse
import sys

from app.reporting.users import UserError, UserStore, read_password

EXIT_REFUSED = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    users = subparsers.add_parser("users", help="workstation users who sign reports")
    sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("login")
    add.add_argument("--name", required=True, help='display name in HL7 XCN order, "Family^Given"')
    add.add_argument("--licence", default="", help="licence / provider ID number (HL7 XCN-1)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(func=run_add)
    sub.add_parser("list", help="list the users").set_defaults(func=run_list)
    remove = sub.add_parser("remove", help="remove a user")
    remove.add_argument("login")
    remove.set_defaults(func=run_remove)
    passwd = sub.add_parser("passwd", help="set a user's password")
    passwd.add_argument("login")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd.set_defaults(func=run_passwd)


def _new_password(from_stdin: bool) -> str:
    password = read_password(from_stdin, "New password or PIN: ")
    if not from_stdin and read_password(False, "Repeat it: ") != password:
        raise UserError("the two passwords differ")
    return password


def _refused(exc: UserError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_REFUSED


def run_add(args: argparse.Namespace) -> int:
    try:
        user = UserStore().add(args.login, args.name, _new_password(args.password_stdin), args.licence)
    except UserError as exc:
        return _refused(exc)
    print(f"added {user.login} ({user.display_name})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    try:
        users = UserStore().list()
    except UserError as exc:
        return _refused(exc)
    for user in users:
        print(f"{user.login}\t{user.xcn_name}" + (f"\tlicence {user.licence}" if user.licence else ""))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    try:
        UserStore().remove(args.login)
    except UserError as exc:
        return _refused(exc)
    print(f"removed {args.login}")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    try:
        store = UserStore()
        if store.get(args.login) is None:
            raise UserError(f"no user {args.login!r}")
        store.set_password(args.login, _new_password(args.password_stdin))
    except UserError as exc:
        return _refused(exc)
    print(f"password of {args.login} changed")
    return 0
