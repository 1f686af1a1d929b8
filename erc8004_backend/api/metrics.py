"""Prometheus metrics: the API's own requests (counted by route template, not by path, so
ids do not explode the label set) and gauges of the system read from the database when
/metrics is scraped (events indexed, jobs by status, queue depth, head lag, unknown logs)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from erc8004_backend.api.errors import HTTP_METHODS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics:
    """One registry per application (tests make many applications in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "erc8004_api_requests", "API requests answered.",
            ["method", "route", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "erc8004_api_request_seconds", "Time to answer an API request.",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.events = Gauge(
            "erc8004_events_indexed", "Events stored (the planner's estimate).",
            registry=self.registry,
        )  # fmt: skip
        self.jobs = Gauge(
            "erc8004_action_jobs", "Action jobs by status.", ["status"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "erc8004_action_queue_depth", "Jobs queued and due now.", registry=self.registry
        )
        self.head_lag = Gauge(
            "erc8004_indexer_head_lag_blocks", "Chain head minus the last indexed block.",
            ["chain_id"], registry=self.registry,
        )  # fmt: skip
        self.unknown_logs = Gauge(
            "erc8004_indexer_unknown_logs",
            "Logs at a registry's address that no decoder turned into an event (topic0 none:"
            " a log without topics).",
            ["chain_id", "registry", "topic0"], registry=self.registry,
        )  # fmt: skip

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def update_system(
        self,
        *,
        events: int,
        jobs: Sequence[Mapping[str, Any]],
        queue_depth: int,
        chains: Sequence[Mapping[str, Any]],
        unknown_logs: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.events.set(events)
        for status in ("queued", "running", "succeeded", "dead", "cancelled"):
            self.jobs.labels(status).set(0)
        for row in jobs:
            self.jobs.labels(row["status"]).set(row["jobs"])
        self.queue_depth.set(queue_depth)
        self.head_lag.clear()
        for row in chains:
            if row["head_lag"] is not None:
                self.head_lag.labels(str(row["chain_id"])).set(row["head_lag"])
        self.unknown_logs.clear()
        for row in unknown_logs:
            labels = (str(row["chain_id"]), row["registry"], row["topic0"] or "none")
            self.unknown_logs.labels(*labels).set(row["logs"])

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting every HTTP request by method, route template and status, in
    the application's current ApiMetrics (`app.state.metrics`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def noting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics: ApiMetrics = scope["app"].state.metrics
            # Any other method is "other": the client chooses it, and each distinct label
            # would be a series kept for good (and served at /metrics).
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            metrics.observe(method, template, status, time.perf_counter() - started)
