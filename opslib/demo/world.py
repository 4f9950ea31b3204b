"""Synthetic worlds for the demo captures: Fly, Supabase and the app as the reference shapes them.

A :class:`World` answers HTTP requests (as an ``httpx.MockTransport`` per source) and
non-HTTP captures (Postgres queries, TLS handshakes, configuration) from plain Python data.
The generator runs each runbook's real ``collect`` against a world in record mode, so a demo
capture holds exactly the requests the runbook makes, in the format a live run records.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import httpx

from ..errors import SourceError
from ..times import iso

# Every demo scenario happens at this moment; analyses use the capture's time, not the clock.
REF_NOW = datetime(2026, 11, 20, 3, 14, 0, tzinfo=timezone.utc)
APP = "demo-app"
IMAGE = "registry.fly.io/demo-app:deployment-01JD7Q3K8X"

# What a demo world pretends is configured (never real secrets; recorded captures hold none).
DSN = "postgresql://postgres.demoref@aws-0-us-east-1.pooler.supabase.com:6543/postgres"
ENV = {"FLY_API_TOKEN": "demo", "DATABASE_URL": DSN,
       "SUPABASE_URL": "https://demoref.supabase.co", "SUPABASE_ANON_KEY": "demo",
       "SUPABASE_ACCESS_TOKEN": "demo", "SUPABASE_PROJECT_REF": "demoref"}

Handler = Callable[[httpx.Request], httpx.Response | Exception]


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def ago(**kwargs: float) -> datetime:
    return REF_NOW - timedelta(**kwargs)


def json_response(status: int, body: Any, *, latency_ms: float = 40.0,
                  headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/json", **(headers or {})},
                          content=json.dumps(body).encode(),
                          extensions={"elapsed_ms": latency_ms})


def machine(mid: str, *, name: str, region: str, state: str = "started", checks: str = "passing",
            check_output: str = "HTTP GET http://172.19.0.2:8080/health: 200 OK",
            memory_mb: int = 512, cpus: int = 1, release: str = "42", image: str = IMAGE,
            events: list[dict] | None = None, created: datetime | None = None) -> dict:
    """A Machine object with the fields of reference §1."""
    return {
        "id": mid, "name": name, "state": state, "region": region,
        "instance_id": "01JD7Q" + mid[:8].upper(), "private_ip": f"fdaa:9:1c2f:a7b:{mid[:4]}::2",
        "host_status": "ok",
        "image_ref": {"registry": "registry.fly.io", "repository": APP,
                      "tag": image.rsplit(":", 1)[-1], "digest": "sha256:" + "5e" * 32,
                      "labels": {}},
        "config": {"image": image,
                   "guest": {"cpu_kind": "shared", "cpus": cpus, "memory_mb": memory_mb},
                   "metadata": {"fly_process_group": "app", "fly_release_version": release,
                                "fly_platform_version": "v2"}},
        "checks": [{"name": "servicecheck-00-http-8080", "status": checks,
                    "output": check_output, "updated_at": iso(ago(seconds=20))}],
        "events": events if events is not None else [
            {"type": "start", "status": "started", "source": "flyd",
             "timestamp": ms(ago(days=2, hours=3))},
            {"type": "launch", "status": "created", "source": "user",
             "timestamp": ms(ago(days=2, hours=3, seconds=5))}],
        "created_at": iso(created or ago(days=2, hours=3)),
        "updated_at": iso(ago(minutes=3)),
    }


def exit_events(*, at: datetime, code: int = 137, oom: bool = True, restarts: int = 1,
                requested: bool = False) -> list[dict]:
    """Newest-first exit + start events, as flyd reports an exit."""
    return [
        {"type": "exit", "status": "stopped", "source": "flyd", "timestamp": ms(at),
         "request": {"exit_event": {"exit_code": code, "guest_exit_code": 0, "guest_signal": -1,
                                    "oom_killed": oom, "requested_stop": requested,
                                    "restarting": not requested, "signal": -1,
                                    "exited_at": iso(at)},
                     "restart_count": restarts}},
        {"type": "start", "status": "started", "source": "flyd",
         "timestamp": ms(at - timedelta(hours=6))},
    ]


@dataclass
class World:
    """Routes for each source, answers for captures, and which env vars are 'set'."""

    routes: dict[tuple[str, str, str], Handler | list[Handler]] = field(default_factory=dict)
    captures: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    configured: set[str] = field(default_factory=set)
    environ: dict[str, str] = field(default_factory=dict)
    _served: dict = field(default_factory=dict)

    def route(self, source: str, method: str, path: str, *handlers: Handler) -> "World":
        """Answer ``method path`` on ``source``; several handlers answer successive calls."""
        self.routes[(source, method, path)] = list(handlers)
        return self

    def answer(self, kind: str, source: str, key: str, result: Any) -> "World":
        self.captures[(kind, source, key)] = result
        return self

    def transport(self, source: str) -> httpx.BaseTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            rkey = (source, request.method, request.url.path)
            handlers = self.routes.get(rkey)
            if handlers is None and source == "fly-status":  # Fly reports no incident
                return json_response(200, {"incidents": []})
            if handlers is None:
                raise KeyError(f"demo world has no route for {source} {request.method} "
                               f"{request.url.path}")
            n = self._served.get(rkey, 0)
            self._served[rkey] = n + 1
            out = handlers[min(n, len(handlers) - 1)](request)
            if isinstance(out, Exception):
                raise out
            return out

        return httpx.MockTransport(handle)

    def capture(self, kind: str, source: str, key: str, payload: Any) -> Any:
        if kind == "config":
            return payload in self.configured
        result = self.captures.get((kind, source, key))
        if result is None and kind == "clock":
            return iso(REF_NOW)  # the demo's clock stands still at its moment
        if result is None:
            raise KeyError(f"demo world has no answer for {kind}:{source}:{key}")
        if isinstance(result, SourceError):
            raise result
        return result


def logs_route(world: "World", entries: list[tuple], *, app: str = APP, page_size: int = 100,
               end: datetime | None = None) -> "World":
    """Serve ``(epoch, provider, instance, region, level, message)`` entries as Fly logs-API
    pages (reference §2: by ``next_token``, 100 lines a page), shifted so the last line is
    20 s before ``end`` (default REF_NOW)."""
    from .scenarios._applogs import serve

    end = end or REF_NOW
    entries = sorted(entries, key=lambda e: e[0])
    shift = (end - timedelta(seconds=20)).timestamp() - entries[-1][0] if entries else 0.0
    return serve(world, [(e[0] + shift, *e[1:]) for e in entries], app=app,
                 page_size=page_size)
