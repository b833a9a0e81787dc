"""Workstation users: the people who may sign reports, each with a password or PIN.

A user has a login name, a display name in HL7 XCN order (``Family^Given``) and an optional
licence/ID number (XCN-1, e.g. a national provider id). Passwords are kept only as a salted
``hashlib.scrypt`` hash (parameters stored with it) in ``<config_dir>/users.json``, written
atomically and readable by its owner only (0600). :meth:`UserStore.authenticate` is the one way
to get a :class:`User` for signing; a wrong password raises :class:`AuthenticationError`, and
five in a row make that login wait five minutes.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from app.reporting.atomic import read_json, write_json_atomic
from dicom_net.paths import config_dir

USERS_FILE = "users.json"
LOGIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_XCN_FORBIDDEN = re.compile(r"[|~\\&\x00-\x1f\x7f]")
MIN_SECRET = 4  # a PIN of four digits at least
MAX_FAILURES, LOCKOUT_S = 5, 300  # five wrong passwords in a row: that login waits five minutes
LOCK_KEYS = ("failures", "locked_until")
# scrypt cost: 2^15 x 8 x 128 B = 32 MiB, under a second per check here; stored per hash so it can grow.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class UserError(ValueError):
    """A user operation that cannot be done; the message says why."""


class AuthenticationError(UserError):
    """Unknown user or wrong password (the message does not say which)."""


@dataclass(frozen=True)
class User:
    login: str
    family: str
    given: str = ""
    licence: str = ""

    @property
    def xcn_name(self) -> str:
        """``Family^Given`` (the name components of an HL7 XCN / a DICOM PN)."""
        return f"{self.family}^{self.given}" if self.given else self.family

    @property
    def display_name(self) -> str:
        return f"{self.family}, {self.given}" if self.given else self.family


def parse_xcn_name(name: str) -> tuple[str, str]:
    """(family, given) from ``Family^Given``; refuses HL7 delimiters and control characters."""
    family, _, given = name.partition("^")
    family, given = family.strip(), given.strip()
    if not family:
        raise UserError(f"name {name!r}: give it as Family^Given (family name required)")
    if "^" in given or _XCN_FORBIDDEN.search(family + given):
        raise UserError(f"name {name!r}: only Family^Given, without | ~ \\ & or control characters")
    return family, given


def hash_secret(secret: str, *, salt: bytes | None = None, n: int = SCRYPT_N) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) of ``secret`` with a fresh 16-byte salt."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32, maxmem=128 * 2**20
    )
    encode = base64.b64encode
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 2**20,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class UserStore:
    """The users file; every change rewrites it atomically (0600)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else config_dir() / USERS_FILE

    def _records(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        try:
            data = read_json(self.path)
            users = data["users"]
            if not isinstance(users, dict):
                raise TypeError("users is not an object")
            return users
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{self.path}: unreadable users file ({type(exc).__name__}); restore it") from exc

    def _write(self, records: dict[str, dict[str, str]]) -> None:
        write_json_atomic(self.path, {"version": 1, "users": records})  # mkstemp: owner-only 0600

    @staticmethod
    def _user(login: str, record: dict[str, str]) -> User:
        return User(login, record["family"], record.get("given", ""), record.get("licence", ""))

    def list(self) -> list[User]:
        return [self._user(login, record) for login, record in sorted(self._records().items())]

    def get(self, login: str) -> User | None:
        record = self._records().get(login)
        return self._user(login, record) if record else None

    def add(self, login: str, name: str, password: str, licence: str = "") -> User:
        if not LOGIN_RE.match(login):
            raise UserError(f"login {login!r}: 1-32 letters, digits, '.', '_' or '-'")
        family, given = parse_xcn_name(name)
        licence = licence.strip()
        if _XCN_FORBIDDEN.search(licence) or "^" in licence:
            raise UserError("licence/ID number: no HL7 delimiters or control characters")
        _check_secret(password)
        records = self._records()
        if login in records:
            raise UserError(f"user {login!r} already exists (use passwd to change the password)")
        records[login] = {"family": family, "given": given, "licence": licence, "hash": hash_secret(password)}
        self._write(records)
        return self._user(login, records[login])

    def remove(self, login: str) -> None:
        records = self._records()
        if records.pop(login, None) is None:
            raise UserError(f"no user {login!r}")
        self._write(records)

    def set_password(self, login: str, password: str) -> None:
        _check_secret(password)
        records = self._records()
        if login not in records:
            raise UserError(f"no user {login!r}")
        records[login] = {key: value for key, value in records[login].items() if key not in LOCK_KEYS}
        records[login]["hash"] = hash_secret(password)  # a new password also ends a lockout
        self._write(records)

    def authenticate(self, login: str, password: str, *, now: float | None = None) -> User:
        """The user, if ``password`` is theirs; otherwise :class:`AuthenticationError`.

        After :data:`MAX_FAILURES` wrong passwords in a row a login is refused for
        :data:`LOCKOUT_S` seconds, even with the right password (guessing a PIN takes too long)."""
        now = time.time() if now is None else now
        records = self._records()
        record = records.get(login)
        if record is None:
            hash_secret(password)  # same cost as a real check: no hint which logins exist
            raise AuthenticationError("unknown user or wrong password")
        locked_until = float(record.get("locked_until", 0))
        if now < locked_until:
            minutes = max(1, round((locked_until - now) / 60))
            raise AuthenticationError(f"too many wrong passwords for {login}: try again in {minutes} min")
        if not verify_secret(password, record.get("hash", "")):
            failures = int(record.get("failures", 0)) + 1
            record["failures"] = failures
            if failures >= MAX_FAILURES:
                record["failures"], record["locked_until"] = 0, now + LOCKOUT_S
            self._write(records)
            raise AuthenticationError("unknown user or wrong password")
        if any(key in record for key in LOCK_KEYS):
            records[login] = {key: value for key, value in record.items() if key not in LOCK_KEYS}
            self._write(records)
        return self._user(login, record)


def _check_secret(password: str) -> None:
    if len(password) < MIN_SECRET:
        raise UserError(f"the password or PIN needs at least {MIN_SECRET} characters")
    if any(ch in password for ch in "\r\n"):
        raise UserError("the password may not contain a line break")


def read_password(from_stdin: bool, prompt: str = "Password: ") -> str:
    """The first line of stdin (``--password-stdin``, as ``docker login`` reads it) or a prompt
    that does not echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return getpass.getpass(prompt)
