"""`erc8004 worker`: claims due jobs, delivers them concurrently, records every attempt.

One claiming loop keeps up to `concurrency` deliveries in flight, claiming as many jobs as
there are free slots (FOR UPDATE SKIP LOCKED, so any number of workers share the queue). It
wakes when the trigger engine queues jobs (NOTIFY action_job), when a slot frees in a full
worker, when a retry is recorded or the next one falls due, or after `poll_interval`.
Each account has a share of the slots (`per_account`, three quarters by default): a claim
takes every account's most urgent jobs within its share first, and gives an account beyond
its share only the slots no other account's due job wants. One account's backlog, or its
slow or hanging endpoints, cannot keep everyone else's deliveries waiting behind it; alone,
an account still has every slot.
Outcomes are written in batches by a second loop, each batch in one statement; a third
returns jobs whose worker died (lease expired).

Firings of an action with a `digest` are not delivered: the claiming loop folds them into
their window's digest, a job of its own (actions/digest.py). When deliveries open a
trigger's circuit breaker, its owner's alert is queued in the same transaction
(actions/alerts.py).

Stopping (SIGTERM): no new claims; deliveries in flight get `shutdown_grace` seconds to
finish; any still running then is interrupted and requeued at once. A worker killed outright
holds its jobs only until their lease ends; receivers see a repeat at most, with the same
Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.actions.alerts import queue_breaker_alerts
from erc8004_backend.actions.channel import Channel, ChannelDependencies
from erc8004_backend.actions.channels import CHANNELS, channel_spec, digest_refusal
from erc8004_backend.actions.configs import ActionConfigError, ChannelConfig, validate_config
from erc8004_backend.actions.delivery import DeliveryFailed, Job
from erc8004_backend.actions.digest import DEFAULT_MAX_ITEMS, fold_firings, open_digest
from erc8004_backend.actions.noise import (
    HOLDER_WAIT,
    forget_old_messages,
    is_repeat,
    take_slot,
)
from erc8004_backend.actions.queue import (
    Attempt,
    breaker_feed,
    claim_jobs,
    decide,
    feed_circuit_breakers,
    next_run_at,
    record_attempts,
    release_expired_leases,
)
from erc8004_backend.chain.config import explorer_urls, load_chains
from erc8004_backend.config import Settings
from erc8004_backend.database.connection import RECONNECT_ERRORS
from erc8004_backend.encryption import SecretBox
from erc8004_backend.outbound import outbound_session
from erc8004_backend.retry import RetryPolicy, run_reconnecting, wait_or_stop

log = structlog.get_logger(__name__)

# A delivery is cut off this long before its lease ends, so that no other worker can take
# the job while this one may still deliver it.
LEASE_MARGIN_SECONDS = 1.0
# Commits need not wait for the disk: if PostgreSQL crashes and loses the latest ones, a
# claim lost makes its job due again and a result lost repeats its delivery (receivers
# deduplicate by Idempotency-Key); nothing is lost.
POOL_SETTINGS = {"autocommit": True, "options": "-c synchronous_commit=off"}
# Outcomes written per statement.
RECORD_BATCH = 500


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Worker:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: Settings,
        *,
        name: str | None = None,
        concurrency: int | None = None,
        per_account: int | None = None,
        lease_seconds: float | None = None,
        poll_interval: float = 1.0,
        shutdown_grace: float = 10.0,
        explorers: Mapping[int, str] | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        # Chain id -> block explorer, for the links templates show; by default the shipped
        # chains' (the commands pass those of their chains files too).
        self.explorers = explorer_urls(load_chains([]).values()) if explorers is None else explorers
        self.name = name or worker_name()
        self.concurrency = concurrency or settings.worker_concurrency
        self.per_account = min(
            self.concurrency,
            per_account
            or settings.worker_per_account
            or max(1, self.concurrency - self.concurrency // 4),
        )
        self.lease_seconds = lease_seconds or settings.worker_lease_seconds
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.policy = RetryPolicy(
            backoff_initial=settings.retry_initial_seconds,
            backoff_max=settings.retry_max_seconds,
            retry_after_max=3600.0,
        )
        self.box = SecretBox.from_spec(settings.token_keys)
        self.delivered = 0  # attempts finished, any outcome
        self.channels: dict[str, Channel] = {}  # built when run() opens their sessions
        self._in_flight: dict[asyncio.Task[Attempt], str] = {}  # -> its job's account
        self._account_deliveries: Counter[str] = Counter()  # in flight, per account
        self._outcomes: list[Attempt] = []
        self._wake = asyncio.Event()
        self._recorded = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop`, then shut down gracefully. Database failures are raised
        (run_worker reconnects and runs this again, with a new pool): deliveries in flight
        finish first, and outcomes not yet written stay here for the next run to record."""
        async with (
            outbound_session(
                allow_private=self.settings.allow_private_urls,
                allowed=self.settings.allowed_ip_networks,
                max_connections=self.concurrency,
            ) as session,
            # For the operator's own endpoints (the Telegram API URL): no address guard.
            outbound_session(allow_private=True, max_connections=8) as operator_session,
            await psycopg.AsyncConnection.connect(self._conninfo(), autocommit=True) as listener,
        ):
            dependencies = ChannelDependencies(self.settings, self.box, session,
                                               operator_session, self.pool)  # fmt: skip
            self.channels = {name: spec.build(dependencies) for name, spec in CHANNELS.items()}
            await listener.execute("LISTEN action_job")
            async with asyncio.TaskGroup() as group:
                listening = group.create_task(self._listen(listener))
                recording = group.create_task(self._record_until(stop))
                reaping = group.create_task(self._release_expired_until(stop))
                try:
                    await self._claim_until(stop)
                finally:
                    await self._finish_in_flight()
                    self._wake.set()
                    self._recorded.set()  # the recorder stops now, not at its next timeout
                    listening.cancel()
                    reaping.cancel()
                await recording

    @property
    def unrecorded(self) -> int:
        """Finished attempts whose outcomes are not written yet."""
        return len(self._outcomes)

    def _conninfo(self) -> str:
        conninfo = self.pool.conninfo
        if not isinstance(conninfo, str):
            raise TypeError("the worker's pool needs a connection string, for LISTEN")
        return conninfo

    # -- claiming --------------------------------------------------------------------------

    async def _claim_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before the claim, not after: a notification that arrives during the
            # claim or the next-due query still wakes the wait that follows.
            self._wake.clear()
            free = self.concurrency - len(self._in_flight)
            claimed: list[Job] = []
            if free > 0:
                async with self.pool.connection() as conn:
                    claimed = await claim_jobs(
                        conn, worker=self.name, limit=free, lease_seconds=self.lease_seconds,
                        per_account=self.per_account, running=self._account_deliveries,
                    )  # fmt: skip
                for job in await self._fold_digest_firings(claimed):
                    task = asyncio.create_task(self._attempt(self._with_links(job)))
                    self._in_flight[task] = job.user_id
                    self._account_deliveries[job.user_id] += 1
                    task.add_done_callback(self._finished)
            if len(self._in_flight) >= self.concurrency:
                await self._wait_for(stop, None)  # full: until a slot frees
            elif len(claimed) < free:
                # Every due job is taken: until a new one (NOTIFY), a retry recorded, or the
                # next one due. (Claiming again at once would find nothing.)
                await self._wait_for(stop, await self._until_next_due())

    async def _fold_digest_firings(self, claimed: list[Job]) -> list[Job]:
        """The claimed jobs to deliver; firings of digest actions among them are folded
        into their windows' digests instead (actions/digest.py)."""
        folding = [(job, window) for job in claimed
                   if (window := self._digest_window(job)) is not None]  # fmt: skip
        if not folding:
            return claimed
        async with self.pool.connection() as conn:
            await fold_firings(conn, worker=self.name, firings=folding)
        folded = {job.id for job, _ in folding}
        return [job for job in claimed if job.id not in folded]

    def _digest_window(self, job: Job) -> int | None:
        """The window (seconds) of a firing to fold into its action's digest; None for a
        job to deliver (a digest itself, an alert, a retraction, any other action's)."""
        if "digest" not in job.config or job.is_digest or job.is_alert or job.retracted:
            return None
        try:
            digest = _shared_settings(job.config).digest
        except ActionConfigError:
            return None  # delivered, to be dead-lettered naming the problem
        spec = CHANNELS.get(job.action_type)
        if digest is None or spec is None or not spec.digests:
            return None  # likewise (_deliver refuses a digest the channel cannot send)
        return digest.window_seconds

    def _with_links(self, job: Job) -> Job:
        """The job with its chain's block explorer, for `{{transaction_url}}` and friends."""
        return replace(job, explorer_url=self.explorers.get(job.chain_id))

    async def _until_next_due(self) -> float:
        async with self.pool.connection() as conn:
            due = await next_run_at(conn)
        if due is None:
            return self.poll_interval
        return min(self.poll_interval, max(0.0, (due - datetime.now(UTC)).total_seconds()))

    async def _wait_for(self, stop: asyncio.Event, timeout: float | None) -> None:
        if stop.is_set():
            return
        stopping = asyncio.ensure_future(stop.wait())
        waking = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopping, waking}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            stopping.cancel()
            waking.cancel()

    async def _listen(self, listener: psycopg.AsyncConnection) -> None:
        async for _ in listener.notifies():
            self._wake.set()

    def _finished(self, task: asyncio.Task[Attempt]) -> None:
        was_full = len(self._in_flight) >= self.concurrency
        account = self._in_flight.pop(task)
        self._account_deliveries[account] -= 1
        if not self._account_deliveries[account]:
            del self._account_deliveries[account]
        if not task.cancelled() and task.exception() is None:
            self._outcomes.append(task.result())
            self._recorded.set()
        if was_full:  # the claim loop waits for a free slot; else, for jobs, not slots
            self._wake.set()

    async def _finish_in_flight(self) -> None:
        """Give deliveries in flight their grace, then interrupt the rest (requeued)."""
        if not self._in_flight:
            return
        log.info("worker.finishing", in_flight=len(self._in_flight), grace=self.shutdown_grace)
        _, pending = await asyncio.wait(set(self._in_flight), timeout=self.shutdown_grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # -- delivering ------------------------------------------------------------------------

    async def _attempt(self, job: Job) -> Attempt:
        started = time.perf_counter()
        response: dict[str, Any] | None = None
        failure: DeliveryFailed | None = None
        try:
            async with asyncio.timeout(self.lease_seconds - LEASE_MARGIN_SECONDS):
                response = await self._deliver(job)
        except DeliveryFailed as error:
            failure = error
        except TimeoutError:
            failure = DeliveryFailed(
                f"not finished within the lease ({self.lease_seconds:g} s)", retryable=True
            )
        except ActionConfigError as error:
            failure = DeliveryFailed(str(error), retryable=False)
        except asyncio.CancelledError:
            # Shutting down: requeue now, whatever the attempt count (not the job's fault).
            duration = _ms_since(started)
            return Attempt(job, "queued", "retrying", 0.0, duration,
                           "interrupted: the worker was stopping")  # fmt: skip
        except Exception as error:  # a bug must not kill the worker or lose the job
            log.exception("worker.unexpected_error", job_id=job.id)
            failure = DeliveryFailed(f"unexpected error: {type(error).__name__}: {error}",
                                     retryable=True)  # fmt: skip
        attempt = decide(job, failure, self._policy_for(job), duration_ms=_ms_since(started),
                         response=response)  # fmt: skip
        self._log(attempt)
        return attempt

    async def _deliver(self, job: Job) -> dict[str, Any]:
        channel = self.channels.get(job.action_type)
        if channel is None:  # a row written around the API: refused, naming the known types
            channel_spec(job.action_type)
            raise ActionConfigError(f"no channel for action type {job.action_type!r}")
        noise = _shared_settings(job.config)
        if noise.digest is not None and not channel_spec(job.action_type).digests:
            raise ActionConfigError(digest_refusal(job.action_type))
        if job.is_digest:
            max_items = noise.digest.max_items if noise.digest else DEFAULT_MAX_ITEMS
            job = await open_digest(self.pool, job, max_items=max_items,
                                    explorer_of=self.explorers.get)  # fmt: skip
            if job.digest is None or not job.digest.count:
                return {"digest": {"count": 0}}  # its firings' leases were lost: none to send
        elif noise.dedup_seconds:
            preview = channel_spec(job.action_type).preview
            shown = preview(job.config, job.values) if preview else None
            # A wait for another job's outcome stays well within this attempt's lease.
            wait = min(HOLDER_WAIT, (self.lease_seconds - LEASE_MARGIN_SECONDS) / 2)
            window = noise.dedup_seconds
            if shown is not None and await is_repeat(self.pool, job, shown, window, max_wait=wait):
                return {"deduplicated": True}
        if noise.rate_limit_per_minute:
            await take_slot(self.pool, f"action:{job.action_id}",
                            60 / noise.rate_limit_per_minute)  # fmt: skip
        response = await channel.deliver(job)
        if job.digest is not None:
            shown_ids = [item.id for item in job.digest.items]
            response = {**response, "digest": {"count": job.digest.count, "shown": shown_ids}}
        return response

    def _policy_for(self, job: Job) -> RetryPolicy:
        """The worker's backoff, or the action's own (its config's retry_*_seconds)."""
        try:
            shared = _shared_settings(job.config)
        except ActionConfigError:
            return self.policy  # the job is dead-lettered for it anyway
        return replace(self.policy,
                       backoff_initial=shared.retry_initial_seconds or self.policy.backoff_initial,
                       backoff_max=shared.retry_max_seconds or self.policy.backoff_max)  # fmt: skip

    def _log(self, attempt: Attempt) -> None:
        job = attempt.job
        fields = {"job_id": job.id, "trigger_id": job.trigger_id, "action": job.action_type,
                  "attempt": job.attempt, "ms": attempt.duration_ms}  # fmt: skip
        if attempt.next_status == "succeeded":
            log.debug("worker.delivered", **fields)
        elif attempt.next_status == "queued":
            log.info("worker.retrying", **fields, error=attempt.error,
                     retry_in=round(attempt.retry_in, 1))  # fmt: skip
        else:
            log.warning("worker.dead_letter", **fields, error=attempt.error)

    # -- recording -------------------------------------------------------------------------

    async def _record_until(self, stop: asyncio.Event) -> None:
        """Write outcomes as they come, in batches; after stop, until none is left."""
        while True:
            if not self._outcomes:
                if stop.is_set() and not self._in_flight:
                    return
                self._recorded.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._recorded.wait(), 0.5)
                continue
            batch = self._outcomes[:RECORD_BATCH]
            tripped, alerts = await record_batch(self.pool, self.name, batch)
            del self._outcomes[: len(batch)]
            self.delivered += len(batch)
            if any(attempt.next_status == "queued" for attempt in batch):
                self._wake.set()  # a retry: the next job due may now be sooner
            for trigger_id in tripped:
                log.warning("worker.trigger_disabled", trigger_id=trigger_id,
                            reason="circuit breaker")  # fmt: skip
            if alerts:
                log.info("worker.owner_alerts_queued", jobs=alerts)

    async def _release_expired_until(self, stop: asyncio.Event) -> None:
        interval = max(1.0, min(30.0, self.lease_seconds / 4))
        while not stop.is_set():
            async with self.pool.connection() as conn:
                released = await release_expired_leases(conn)
            if released:
                log.warning("worker.leases_expired", jobs=released)
                self._wake.set()
            await forget_old_messages(self.pool)  # dedup claims past every window
            await wait_or_stop(stop, interval)


# A recording that loses a deadlock or a serialization conflict is rolled back whole, and
# written again: the error would otherwise take the worker down, and with it the deliveries
# under way, left to their leases.
_CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
RECORD_CONFLICT_ATTEMPTS = 5


async def record_batch(
    pool: AsyncConnectionPool, worker: str, batch: list[Attempt]
) -> tuple[list[str], list[int]]:
    """A batch of outcomes, the circuit breakers they feed and the owner alerts of those they
    open, in one transaction (an opened breaker has its alert, exactly once); returns the
    triggers disabled and the alerts queued."""
    attempt = 1
    while True:
        try:
            async with pool.connection() as conn, conn.transaction():
                await record_attempts(conn, worker=worker, attempts=batch)
                tripped = await feed_circuit_breakers(conn, breaker_feed(batch))
                return tripped, await queue_breaker_alerts(conn, tripped)
        except _CONFLICTS as conflict:
            if attempt == RECORD_CONFLICT_ATTEMPTS:
                raise
            log.warning("worker.record_conflict", attempt=attempt,
                        error=str(conflict).splitlines()[0])  # fmt: skip
            attempt += 1


def _shared_settings(config: dict[str, Any]) -> ChannelConfig:
    """The settings every action's config shares (the channel checks the rest)."""
    shared = {key: config[key] for key in ChannelConfig.model_fields if key in config}
    return validate_config(ChannelConfig, "the action", shared)


def _ms_since(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))


async def run_worker(
    url: str,
    stop: asyncio.Event,
    settings: Settings,
    *,
    concurrency: int | None = None,
    per_account: int | None = None,
    lease_seconds: float | None = None,
    shutdown_grace: float = 10.0,
    explorers: Mapping[int, str] | None = None,
) -> None:
    """A worker until `stop`, reconnecting after database failures.

    The same Worker (same name, so it still holds its leases) carries on after a reconnect:
    deliveries that finished while the database was away are recorded then. A new Worker
    would drop those outcomes, and their jobs would be delivered again after their lease.
    """
    name = worker_name()
    worker: Worker | None = None

    async def deliver() -> None:
        nonlocal worker
        async with AsyncConnectionPool(
            url, min_size=2, max_size=4, open=False, kwargs=POOL_SETTINGS
        ) as pool:
            await pool.wait(timeout=10)
            if worker is None:
                worker = Worker(
                    pool,
                    settings,
                    name=name,
                    concurrency=concurrency,
                    per_account=per_account,
                    lease_seconds=lease_seconds,
                    shutdown_grace=shutdown_grace,
                    explorers=explorers,
                )
            else:
                worker.pool = pool
            log.info("worker.started", worker=name, concurrency=worker.concurrency,
                     per_account=worker.per_account, unrecorded=worker.unrecorded)  # fmt: skip
            await worker.run(stop)

    await run_reconnecting(deliver, stop, event="worker.database_unavailable",
                           retry_on=RECONNECT_ERRORS)  # fmt: skip
