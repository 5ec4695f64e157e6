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
HASH_WORKERS = 1  # PBKDF2 runs at once: a login flood takes at most this many cores
MAX_WAITING = 16  # checks queued for a worker; beyond that a login is refused at once, unhashed
BUSY_RETRY_S = 5  # Retry-After when refused for checks in flight (they finish within seconds)


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    locked_for_s: int = 0  # > 0: refused without checking, for this many more seconds
    busy: bool = False  # refused because of checks in flight, not (yet) because of failures

    def message(self) -> str:
        if self.busy:
            return "För många inloggningsförsök pågår just nu. Försök igen om en stund."
        minutes = max(1, math.ceil(self.locked_for_s / 60))
        return (
            f"För många misslyckade inloggningar. Försök igen om {minutes} "
            f"{'minut' if minutes == 1 else 'minuter'}."
        )


class LoginGate:
    """Every password check of the app goes through here (API Basic auth and the UI's login form).

    PBKDF2 costs about half a second of CPU: `check` runs it in a worker thread, HASH_WORKERS at a
    time with at most MAX_WAITING queued, so the event loop keeps serving everyone else and a flood of
    logins takes at most one core. Failures are counted per user name and per client address; past
    MAX_FAILURES in the window both are locked out for LOCKOUT_S, so guessing is slow whichever of
    the two an attacker varies. A check in flight counts against the limit before its hash is known:
    otherwise 50 guesses sent at once all pass the lockout test before the first one fails.
    """

    def __init__(self, users: dict[str, str], clock=time.monotonic):
        self.users, self.clock = users, clock
        self._verified: OrderedDict[bytes, float] = OrderedDict()
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}
        self._waiting = 0
        self._lock = threading.Lock()
        # A thread semaphore, not an anyio limiter: it holds across event loops (tests, several workers).
        self._workers = threading.BoundedSemaphore(HASH_WORKERS)

    async def check(self, user: str, password: str, client: str | None) -> Verdict:
        import anyio

        keys = (f"user:{user}", f"addr:{client or '?'}")
        token = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._lock:
            locked = self._locked_for(keys)
            if locked:
                return Verdict(False, locked)
            if self._cached(token):
                return Verdict(True)
            if not self._reserve(keys):
                return Verdict(False, BUSY_RETRY_S, busy=True)
        ok = False
        try:
            ok = await anyio.to_thread.run_sync(self._hash, user, password)
        finally:
            # Released and recorded under one lock: in between, another guess could take the slot.
            # A cancelled check counts as a failure, so dropping the connection does not undo a guess.
            with self._lock:
                self._release(keys)
                if ok:
                    self._remember(token)
                    self._failures.pop(keys[0], None)
                else:
                    self._fail(keys)
                locked = 0 if ok else self._locked_for(keys)
        return Verdict(ok, locked)

    def _hash(self, user: str, password: str) -> bool:
        with self._workers:
            return check_password(self.users, user, password)

    def _reserve(self, keys) -> bool:
        """Count this check against both keys' budgets before hashing; False (unhashed) when a key's
        failures and checks in flight already reach MAX_FAILURES, or the queue is full."""
        now = self.clock()
        for key in keys:
            recent = [t for t in self._failures.get(key, ()) if t >= now - FAILURE_WINDOW_S]
            if len(recent) + self._in_flight.get(key, 0) >= MAX_FAILURES:
                return False
        if self._waiting >= HASH_WORKERS + MAX_WAITING:
            return False
        self._waiting += 1
        for key in keys:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return True

    def _release(self, keys) -> None:
        self._waiting -= 1
        for key in keys:
            left = self._in_flight.pop(key, 1) - 1
            if left:
                self._in_flight[key] = left

    def _locked_for(self, keys) -> int:
        now = self.clock()
        until = max((self._locked.get(k, 0.0) for k in keys), default=0.0)
        return math.ceil(until - now) if until > now else 0

    def _cached(self, token: bytes) -> bool:
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
