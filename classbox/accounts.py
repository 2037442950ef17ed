"""People who log in: accounts with slow salted password hashes, throttled logins, and sessions.

The admin of a box and, on a hub, the teachers use the same accounts, login and sessions;
an account's role says what it may do.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tinydb import where

from .errors import InvalidInput, LoginRefused
from .storage import State

ROLES = ("admin", "teacher")
MIN_PASSWORD = 8
NAME_RE = re.compile(r"[\w.\-]{1,32}")

# scrypt at 2**15 × 8 takes ~0.1 s and 32 MiB on a small ARM board: slow for a guesser, fine for a login.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024

FREE_FAILURES = 5          # failed logins before an account is made to wait
FIRST_WAIT = 30.0          # seconds after the sixth failure; doubles with each further one
LONGEST_WAIT = 15 * 60.0
SESSION_LIFETIME = 12 * 3600.0  # a session ends after a school day whatever its use


def hash_password(password: str) -> str:
    """Return a salted scrypt hash of a password, as one self-describing string."""
    check_password(password)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=SCRYPT_MAXMEM, dklen=32)
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)))


def check_password(password: str) -> None:
    """Raise InvalidInput unless a password is long enough to be set."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password must have at least {MIN_PASSWORD} characters", "password")


def check_hash(text: str) -> str:
    """Return a stored password hash if it is one this box can verify, else raise InvalidInput."""
    parts = text.split("$") if isinstance(text, str) else []
    try:
        ok = (len(parts) == 6 and parts[0] == "scrypt" and 2**10 <= int(parts[1]) <= 2**20
              and 1 <= int(parts[2]) <= 32 and 1 <= int(parts[3]) <= 16
              and len(_unb64(parts[4])) >= 8 and len(_unb64(parts[5])) == 32)
    except ValueError:
        ok = False
    if not ok:
        raise InvalidInput("not a password hash made by `classbox hash-password` (scrypt$N$r$p$salt$hash)")
    return text


def verify_password(password: str, stored: str) -> bool:
    """Tell whether a password matches a stored hash, in time that does not depend on where it differs."""
    _, n, r, p, salt, digest = check_hash(stored).split("$")
    computed = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                              maxmem=SCRYPT_MAXMEM, dklen=32)
    return hmac.compare_digest(computed, _unb64(digest))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (ValueError, TypeError):
        raise ValueError("bad base64") from None


@functools.cache
def _decoy() -> str:
    # A hash to check against when the account does not exist, so that a guesser cannot tell by timing.
    return hash_password(secrets.token_urlsafe(12))


@dataclass(frozen=True)
class Account:
    """Someone who can log in."""

    name: str
    role: str


class Accounts:
    """The accounts table and its failed-login counters, both kept in the state database."""

    def __init__(self, state: State, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock

    def any_admin(self) -> bool:
        """Tell whether an admin account exists (setup is done once one does)."""
        with self.state.transaction() as db:
            return db.table("accounts").contains(where("role") == "admin")

    def list(self) -> list[Account]:
        """Return every account, by name."""
        with self.state.transaction() as db:
            docs = db.table("accounts").all()
        return sorted((Account(d["name"], d["role"]) for d in docs), key=lambda a: a.name)

    def create(self, name: str, role: str, password: str | None = None, password_hash: str | None = None) -> Account:
        """Add an account with a password (hashed here) or an already made hash; the name must be new."""
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise InvalidInput("account name: 1-32 letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise InvalidInput(f"role: one of {', '.join(ROLES)}")
        stored = check_hash(password_hash) if password_hash is not None else hash_password(password or "")
        with self.state.transaction() as db:
            table = db.table("accounts")
            if table.contains(where("name") == name):
                raise InvalidInput(f"an account named {name!r} already exists")
            table.insert({"name": name, "role": role, "hash": stored, "created": self.clock()})
        return Account(name, role)

    def set_password(self, name: str, password: str) -> None:
        """Replace an account's password."""
        stored = hash_password(password)
        with self.state.transaction() as db:
            if not db.table("accounts").update({"hash": stored}, where("name") == name):
                raise InvalidInput(f"no account named {name!r}")

    def login(self, name: str, password: str) -> Account:
        """Return the account if the password is right; count failures and make a guesser wait."""
        now = self.clock()
        wait = self.wait_for(name)
        if wait > 0:
            raise LoginRefused(f"too many failed logins for {name!r}; try again in {int(wait) + 1} s", wait)
        with self.state.transaction() as db:
            doc = db.table("accounts").get(where("name") == name)
        ok = verify_password(password, doc["hash"] if doc else _decoy()) and doc is not None
        with self.state.transaction() as db:
            failures = db.table("login_failures")
            if ok:
                failures.remove(where("name") == name)
            else:
                # Counted for unknown names too: a guesser learns nothing from the answer or the wait.
                old = failures.get(where("name") == name)
                count = (old["count"] if old else 0) + 1
                failures.upsert({"name": name, "count": count, "last": now}, where("name") == name)
        if not ok:
            raise LoginRefused("wrong account name or password", self.wait_for(name))
        assert doc is not None
        return Account(doc["name"], doc["role"])

    def wait_for(self, name: str) -> float:
        """Return the seconds an account must wait before its next login attempt (0 for none)."""
        with self.state.transaction() as db:
            doc = db.table("login_failures").get(where("name") == name)
        if not doc or doc["count"] < FREE_FAILURES:
            return 0.0
        wait = min(FIRST_WAIT * 2 ** (doc["count"] - FREE_FAILURES), LONGEST_WAIT)
        return max(0.0, doc["last"] + wait - self.clock())


@dataclass
class Session:
    """A logged-in browser: who, its CSRF token, and when it was last used."""

    id: str
    account: Account
    csrf: str
    created: float
    seen: float
    notice: tuple[str, str] | None = None  # (kind, text) shown once on the next page: what an action did


class Sessions:
    """Logged-in browsers, kept in memory: a restart logs everyone out, and nothing is written per request."""

    def __init__(self, idle: float, clock: Callable[[], float] = time.time) -> None:
        self.idle = idle
        self.clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def start(self, account: Account, replacing: str | None = None) -> Session:
        """Open a new session with a fresh id and CSRF token, ending the one it replaces."""
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), account, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            if replacing:
                self._by_id.pop(replacing, None)
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """Return a live session and mark it used, or None when unknown or expired."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if now - session.seen > self.idle or now - session.created > SESSION_LIFETIME:
                del self._by_id[session_id]
                return None
            session.seen = now
            return session

    def end(self, session_id: str | None) -> None:
        """Log a session out."""
        with self._lock:
            self._by_id.pop(session_id or "", None)

    def end_all(self, name: str) -> None:
        """Log out every session of an account (after its password changed)."""
        with self._lock:
            for sid in [s.id for s in self._by_id.values() if s.account.name == name]:
                del self._by_id[sid]

    def _expire(self, now: float) -> None:
        for sid in [s.id for s in self._by_id.values() if now - s.seen > self.idle]:
            del self._by_id[sid]
