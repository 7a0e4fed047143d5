"""Retries for Hub requests: exponential backoff, a bounded total time, and a permanent error that names the file.

Why: a lab machine's network drops, a Hub answers 500/503 for minutes, a connection is reset mid-body
(the seed's release harness died on an ``httpx.ConnectError`` during the dataset listing). The
``huggingface_hub`` client retries some of this itself (a HEAD without a cached file, a body cut by a
protocol error), but not an HTTP 500 on the download, a connection reset while reading, a body whose
size or hash is wrong, or a listing. Every Hub call of the rollout sources goes through
``call_with_retry``: transient failures are retried with backoff until ``RetryPolicy.attempts`` or
``RetryPolicy.total_s`` is reached, whichever comes first; then ``HubUnavailableError`` names what
could not be fetched, after how many attempts and why. An answer that is not transient (404, 401, a
revision that does not exist) is raised at once: retrying would only delay the same answer.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_TOTAL_ENV = "TA_HUB_RETRY_TOTAL_S"
RETRY_ATTEMPTS_ENV = "TA_HUB_RETRY_ATTEMPTS"
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class HubUnavailableError(RuntimeError):
    """A Hub request still failing after the retry budget: names the file (or listing) and the last error."""

    def __init__(self, what: str, attempts: int, seconds: float, last: BaseException):
        self.what, self.attempts, self.seconds, self.last = what, attempts, seconds, last
        super().__init__(f"{what}: failed after {attempts} attempt(s) in {seconds:.1f} s; last error: "
                         f"{type(last).__name__}: {_first_line(last)}")


class IntegrityError(OSError):
    """Downloaded bytes whose size or hash differs from what the Hub announced (retried like a network error)."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying: ``attempts`` tries at most, ``total_s`` seconds at most, waits doubling
    from ``base_s`` up to ``max_wait_s``. Defaults from ``TA_HUB_RETRY_ATTEMPTS`` / ``TA_HUB_RETRY_TOTAL_S``."""

    attempts: int = 6
    total_s: float = 300.0
    base_s: float = 0.5
    max_wait_s: float = 8.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        attempts = int(os.environ.get(RETRY_ATTEMPTS_ENV, cls.attempts))
        total = float(os.environ.get(RETRY_TOTAL_ENV, cls.total_s))
        return cls(attempts=max(1, attempts), total_s=max(0.0, total))


def transport_errors() -> tuple[type[BaseException], ...]:
    """Network-level errors of whichever HTTP stack ``huggingface_hub`` uses (httpx2 or httpx)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module_name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def status_of(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def is_transient(error: BaseException) -> bool:
    """True for failures a later try may not see: network errors, 5xx/408/429, a short or corrupt body.

    The client wraps a failed metadata HEAD in ``LocalEntryNotFoundError`` with the network error as
    its cause; the chain is followed so that case counts as transient too.
    """
    if isinstance(error, HubUnavailableError):
        return False  # a budget already spent further down: do not spend it again
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, transport_errors()) or isinstance(error, IntegrityError):
            return True
        status = status_of(error)
        if status is not None:
            return status in TRANSIENT_STATUS
        if isinstance(error, OSError) and "Consistency check failed" in str(error):
            return True  # the client's own size check on a body shorter than announced
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def call_with_retry(fn: Callable[[], T], what: str, policy: RetryPolicy,
                    on_failure: Callable[[BaseException], None] | None = None) -> T:
    """``fn()``, retried on transient errors with backoff within ``policy``; ``HubUnavailableError`` after.

    ``on_failure(error)`` runs after every failed attempt (the Hub source removes what a failed
    download left in the cache there), so a permanent failure leaves nothing partial behind.
    """
    started = time.monotonic()
    wait = policy.base_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - classified just below; non-transient ones re-raise
            if on_failure is not None:
                on_failure(error)
            if not is_transient(error):
                raise
            elapsed = time.monotonic() - started
            if attempt >= policy.attempts or elapsed + wait > policy.total_s:
                raise HubUnavailableError(what, attempt, elapsed, error) from error
            logger.warning("%s: attempt %d failed (%s: %s); retrying in %.1f s", what, attempt,
                           type(error).__name__, _first_line(error), wait)
            time.sleep(wait)
            wait = min(policy.max_wait_s, wait * 2)
