"""Admin log-ins: throttled password checks and unguessable, expiring session tokens kept on the server.

A log-in returns a token (``secrets.token_urlsafe``) that the admin's browser sends with every admin call; the
server keeps which tokens are valid and until when. Nothing is keyed by Gradio's ``session_hash``, which the client
chooses and another client can reuse.

Failed log-ins are throttled per client and over all clients: after a few free tries each further failure locks
the client (or, past a higher count, every client) out for twice as long as the last time, up to a cap. While
locked out even the right password is refused, every failure gets the same message, and each one is logged.

>>> sessions = AdminSessions("open-sesame")
>>> token = sessions.log_in("open-sesame", client="127.0.0.1")
>>> sessions.check(token)
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable

from mmsupport.errors import InvalidInput

logger = logging.getLogger(__name__)

#: The one message for every failed log-in: it does not say whether the password was wrong or the client is locked.
LOGIN_FAILED = ("Wrong admin password, or too many failed attempts. Check the password; after several failures, "
                "wait a few minutes before trying again.")
#: The message for an admin call without a valid token.
NOT_LOGGED_IN = "You are not logged in to the catalog admin, or your session has expired. Log in again."


@dataclasses.dataclass
class _Failures:
    """Failed log-ins from one client (or from all): how many, the last one, and the lockout they earned."""

    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class AdminSessions:
    """Who may use the admin tab: :meth:`log_in` hands out tokens, :meth:`check` accepts only live ones.

    ``free_tries`` failures per client (``global_free_tries`` over all clients) cost nothing; each further one
    locks out for ``base_lock`` seconds, doubling per failure up to ``max_lock``. Failures are forgotten
    ``forget_after`` seconds after the last one, and a successful log-in clears them. A token expires ``ttl``
    seconds after it was last used. ``clock`` is injectable for tests; ``login_failed`` and ``not_logged_in`` are
    the messages shown (another tab behind its own password names it).
    """

    def __init__(self, password: str, *, ttl: float = 30 * 60, free_tries: int = 5, global_free_tries: int = 20,
                 base_lock: float = 2.0, max_lock: float = 15 * 60, forget_after: float = 60 * 60,
                 clock: Callable[[], float] = time.monotonic, login_failed: str = LOGIN_FAILED,
                 not_logged_in: str = NOT_LOGGED_IN):
        self._password = password.encode()
        self.login_failed = login_failed
        self.not_logged_in = not_logged_in
        self.ttl = ttl
        self.free_tries = free_tries
        self.global_free_tries = global_free_tries
        self.base_lock = base_lock
        self.max_lock = max_lock
        self.forget_after = forget_after
        self._clock = clock
        self._tokens: dict[str, float] = {}  # token -> expiry
        self._failures: dict[str, _Failures] = {}  # client -> failures
        self._all = _Failures()
        self._lock = threading.Lock()  # handlers run in several threads

    def log_in(self, password: str, client: str) -> str:
        """A new token if ``password`` is right and neither ``client`` nor everyone is locked out.

        Raises :class:`InvalidInput` with :data:`LOGIN_FAILED` otherwise (the password is not even compared while
        locked out, so a locked-out guess learns nothing).
        """
        with self._lock:
            return self._log_in(password, client, self._clock())

    def _log_in(self, password: str, client: str, now: float) -> str:
        self._forget_old(now)
        mine = self._failures.get(client)
        if now < self._all.locked_until or (mine is not None and now < mine.locked_until):
            logger.warning("admin log-in refused: %s is locked out (%s)", client, self._describe(client, now))
            raise InvalidInput(self.login_failed)
        if not self._password or not hmac.compare_digest(str(password or "").encode(), self._password):
            self._fail(client, now)
            raise InvalidInput(self.login_failed)
        self._failures.pop(client, None)
        self._all = _Failures()
        token = secrets.token_urlsafe(32)
        self._tokens[token] = now + self.ttl
        logger.info("admin logged in from %s", client)
        return token

    def check(self, token: str | None) -> None:
        """Accept a live token (and extend it by ``ttl``); raise :class:`InvalidInput` for anything else."""
        with self._lock:
            now = self._clock()
            self._tokens = {t: expiry for t, expiry in self._tokens.items() if expiry > now}
            if not isinstance(token, str) or token not in self._tokens:
                raise InvalidInput(self.not_logged_in)
            self._tokens[token] = now + self.ttl

    def log_out(self, token: str | None) -> None:
        """End the session of ``token`` (unknown tokens are ignored)."""
        with self._lock:
            self._tokens.pop(token or "", None)

    def _fail(self, client: str, now: float) -> None:
        mine = self._failures.setdefault(client, _Failures())
        for failures, free in ((mine, self.free_tries), (self._all, self.global_free_tries)):
            failures.count += 1
            failures.last = now
            if failures.count > free:
                lock = min(self.max_lock, self.base_lock * 2 ** (failures.count - free - 1))
                failures.locked_until = max(failures.locked_until, now + lock)
        logger.warning("admin log-in failed from %s (%s)", client, self._describe(client, now))

    def _forget_old(self, now: float) -> None:
        """Drop failures older than ``forget_after`` (this also bounds the table an attacker can grow)."""
        self._failures = {client: f for client, f in self._failures.items()
                          if now - f.last < self.forget_after or now < f.locked_until}
        if now - self._all.last >= self.forget_after and now >= self._all.locked_until:
            self._all = _Failures()

    def _describe(self, client: str, now: float) -> str:
        mine = self._failures.get(client, _Failures())
        return (f"{mine.count} failures from it, locked {max(0.0, mine.locked_until - now):.0f} s more; "
                f"{self._all.count} from all clients, all locked {max(0.0, self._all.locked_until - now):.0f} s more")
