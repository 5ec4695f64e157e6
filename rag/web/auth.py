"""Users and passwords: the auth file and RAG_USERS, PBKDF2 hashes (`rag hash-password`), checks, and
`LoginGate`: the checks off the event loop, briefly cached, rate-limited and locked out per user and
per client address."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ConfigError
from rag.settings import Settings

PBKDF2_ITERATIONS = 600_000


def load_users(settings: Settings, environ: dict | None = None) -> dict[str, str]:
    """user -> password or pbkdf2 hash, from settings.auth_file and/or RAG_USERS ("user:pw,user2:pw2")."""
    environ = os.environ if environ is None else environ
    lines: list[str] = []
    if settings.auth_file:
        path = Path(settings.auth_file)
        if not path.is_file():
            raise ConfigError(
                f"The auth file {path} does not exist (set RAG_AUTH_FILE to a file of user:password lines)."
            )
        lines += path.read_text(encoding="utf-8").splitlines()
    lines += re.split(r"[,\n]", environ.get("RAG_USERS", ""))
    users = {}
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        user, sep, secret = line.partition(":")
        if not sep or not user.strip() or not secret:
            raise ConfigError(
                "Each user must be written user:password or user:pbkdf2_sha256$... (see docs/embedding.md)."
            )
        users[user.strip()] = secret.strip()
    return users


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


# An unknown user is checked against a hash of this form, so that it costs the same 600,000 iterations
# as a known one (otherwise the response time tells which user names exist).
_DUMMY_HASH = f"pbkdf2_sha256${PBKDF2_ITERATIONS}${secrets.token_hex(16)}$AAAA"


def check_password(users: dict[str, str], user: str, password: str) -> bool:
    stored = users.get(user)
    if stored is None or password is None:
        _verify(_DUMMY_HASH, password or "")  # the same work whether or not the user exists
        return False
    return _verify(stored, password)


def _verify(stored: str, password: str) -> bool:
    if not stored.startswith("pbkdf2_sha256$"):
        return hmac.compare_digest(stored.encode(), password.encode())
    try:
        _, iterations, salt, expected = stored.split("$", 3)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(base64.b64encode(digest).decode(), expected)


# -- the gate in front of every password check -----------------------------------------------------

MAX_FAILURES = 5  # wrong passwords per user, and per client address, within FAILURE_WINDOW_S ...
FAILURE_WINDOW_S = 15 * 60
LOCKOUT_S = 15 * 60  # ... then that user or address is refused this long, right password or not
CACHE_TTL_S = 60  # a verified user:password is not hashed again for this long
CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    locked_for_s: int = 0  # > 0: refused without checking, for this many more seconds

    def message(self) -> str:
        minutes = max(1, math.ceil(self.locked_for_s / 60))
        return (
            f"För många misslyckade inloggningar. Försök igen om {minutes} "
            f"{'minut' if minutes == 1 else 'minuter'}."
        )


class LoginGate:
    """Every password check of the app goes through here (API Basic auth and the UI's login form).

    PBKDF2 costs about half a second of CPU: `check` runs it in a worker thread, one at a time, so the
    event loop keeps serving everyone else and a flood of logins takes at most one core. Failures are
    counted per user name and per client address; past MAX_FAILURES in the window both are locked out
    for LOCKOUT_S, so guessing is slow whichever of the two an attacker varies.
    """

    def __init__(self, users: dict[str, str], clock=time.monotonic):
        self.users, self.clock = users, clock
        self._verified: OrderedDict[bytes, float] = OrderedDict()
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}
        self._lock = threading.Lock()
        self._hashing = None  # an anyio CapacityLimiter, made inside the running loop

    async def check(self, user: str, password: str, client: str | None) -> Verdict:
        keys = (f"user:{user}", f"addr:{client or '?'}")
        locked = self._locked_for(keys)
        if locked:
            return Verdict(False, locked)
        token = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if self._cached(token):
            return Verdict(True)
        ok = await self._hash_off_the_loop(user, password)
        with self._lock:
            if ok:
                self._remember(token)
                self._failures.pop(keys[0], None)
            else:
                self._fail(keys)
        return Verdict(ok, 0 if ok else self._locked_for(keys))

    async def _hash_off_the_loop(self, user: str, password: str) -> bool:
        import anyio

        if self._hashing is None:
            self._hashing = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(check_password, self.users, user, password, limiter=self._hashing)

    def _locked_for(self, keys) -> int:
        now = self.clock()
        with self._lock:
            until = max((self._locked.get(k, 0.0) for k in keys), default=0.0)
        return math.ceil(until - now) if until > now else 0

    def _cached(self, token: bytes) -> bool:
        with self._lock:
            expires = self._verified.get(token)
            if expires is None or expires < self.clock():
                self._verified.pop(token, None)
                return False
            return True

    def _remember(self, token: bytes) -> None:
        self._verified[token] = self.clock() + CACHE_TTL_S
        self._verified.move_to_end(token)
        while len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)

    def _fail(self, keys) -> None:
        now = self.clock()
        for key in keys:
            recent = self._failures.setdefault(key, deque())
            recent.append(now)
            while recent and recent[0] < now - FAILURE_WINDOW_S:
                recent.popleft()
            if len(recent) >= MAX_FAILURES:
                self._locked[key] = now + LOCKOUT_S
                recent.clear()
        if len(self._failures) > 10_000:  # bounded memory under a spray of names or addresses
            self._failures.clear()
