"""HTTP fetching with bounded concurrency, retries with backoff and jitter, a circuit breaker.

Retried: timeouts, connection errors (refused, reset, truncated body), 5xx, 408, 429
(honouring ``Retry-After``) and bodies that fail verification (garbage, cut-off files).
404 means "no data" and is final. Other 4xx are final failures. The breaker counts
consecutive failed attempts over the whole run; once open, no new request starts and
every waiting fetch fails at once, so a refusing server is not hammered.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
import structlog

from aio.data.dukascopy.bi5 import CorruptFileError
from aio.errors import DataError

log = structlog.get_logger(__name__)

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class CircuitOpenError(DataError):
    """The server kept refusing; the run stopped asking it."""


class FetchFailedError(DataError):
    """One URL failed after all retries (or with a final status)."""


@dataclass
class Policy:
    concurrency: int = 4
    retries: int = 5
    timeout_s: float = 30.0
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    breaker_failures: int = 25


@dataclass
class Stats:
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def note(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


@dataclass
class Breaker:
    threshold: int
    consecutive: int = 0
    opened_after: str | None = None

    @property
    def open(self) -> bool:
        return self.opened_after is not None

    def failure(self, reason: str) -> None:
        self.consecutive += 1
        if self.consecutive >= self.threshold and self.opened_after is None:
            self.opened_after = reason
            log.warning("circuit breaker open: server keeps refusing", failures=self.consecutive, last=reason)

    def success(self) -> None:
        self.consecutive = 0


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(policy: Policy, attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Exponential backoff with equal jitter, never below Retry-After, never above the cap."""
    base = min(policy.backoff_max_s, policy.backoff_s * (2**attempt))
    delay = base / 2 + rng.uniform(0, base / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, policy.backoff_max_s)


class Fetcher:
    """One client, one semaphore, one breaker per source and run."""

    def __init__(self, client: httpx.AsyncClient, policy: Policy, name: str, rng: random.Random | None = None):
        self.client = client
        self.policy = policy
        self.name = name
        self.sem = asyncio.Semaphore(policy.concurrency)
        self.breaker = Breaker(policy.breaker_failures)
        self.stats = Stats()
        self.rng = rng or random.Random()

    async def get(self, url: str, verify: Callable[[bytes], Any]) -> tuple[bytes, Any] | None:
        """(body, verify(body)) of a good answer; None for 404 (no data).

        Raises FetchFailedError after the retries, CircuitOpenError once the breaker is open.
        """
        p = self.policy
        last = "?"
        for attempt in range(p.retries + 1):
            if self.breaker.open:
                raise CircuitOpenError(f"{self.name}: stopped after {self.breaker.consecutive} consecutive failures "
                                       f"(last: {self.breaker.opened_after})")
            retry_after = None
            async with self.sem:
                if self.breaker.open:
                    continue
                self.stats.requests += 1
                try:
                    resp = await self.client.get(url)
                except httpx.TimeoutException:
                    last = "timeout"
                except httpx.RequestError as exc:  # refused, reset, body cut short, bad encoding
                    last = f"connection: {type(exc).__name__}"
                else:
                    status = resp.status_code
                    if status == 404:
                        self.breaker.success()
                        return None
                    if status == 200:
                        body = resp.content
                        self.stats.bytes += len(body)
                        try:
                            decoded = await asyncio.to_thread(verify, body)
                        except CorruptFileError as exc:
                            last = f"corrupt: {exc}"
                        else:
                            self.breaker.success()
                            return body, decoded
                    elif status in RETRY_STATUS:
                        last = f"HTTP {status}"
                        retry_after = retry_after_s(resp.headers.get("Retry-After"))
                    else:
                        self.breaker.failure(f"HTTP {status}")
                        self.stats.note(f"HTTP {status}")
                        raise FetchFailedError(f"{url}: HTTP {status} (not retried)")
            self.stats.note(last.split(":")[0] if last.startswith(("corrupt", "connection")) else last)
            self.breaker.failure(last)
            if attempt < p.retries and not self.breaker.open:
                self.stats.retries += 1
                delay = backoff_delay(p, attempt, retry_after, self.rng)
                log.debug("retrying", url=url, reason=last, attempt=attempt + 1, delay_s=round(delay, 3))
                await asyncio.sleep(delay)
        if self.breaker.open:
            raise CircuitOpenError(f"{self.name}: stopped after {self.breaker.consecutive} consecutive failures "
                                   f"(last: {self.breaker.opened_after})")
        raise FetchFailedError(f"{url}: failed {p.retries + 1} times (last: {last})")


def make_client(policy: Policy) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=policy.concurrency, max_keepalive_connections=policy.concurrency)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(policy.timeout_s),
        limits=limits,
        follow_redirects=True,
        headers={"User-Agent": "aio-dukascopy/0.1"},
    )
