"""Log lines for the demo worlds: ordinary traffic re-homed onto a scenario's machines and
times, the scenario's own lines, and a Fly logs-API route that pages by ``next_token``.

Entries are ``(epoch, provider, instance, region, level, message)`` as in
:mod:`opslib.logscan.synth`. The route answers like Fly's logs API (reference §2): each page holds
the entries at or after ``next_token`` (a Unix time in ns), and the next token follows the
last entry, so a runbook may read the recent window and slices around past events from the
same world in any order.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Iterable

import httpx

from ...logscan import synth
from ...times import iso
from ..world import APP, REF_NOW, World, json_response

Entry = tuple[float, str, str, str, str, str]
NOW_S = REF_NOW.timestamp()


def background(machines: list[tuple[str, str]], *, start: float, end: float, seed: int,
               mean_gap: float = 2.5) -> list[Entry]:
    """Ordinary traffic (access logs, SQL timings, auth chatter) between ``start`` and ``end``
    (epoch seconds) on the scenario's machines: synth's stream without its boot lines, its
    machines mapped onto ``machines`` and its app name onto the demo app's."""
    n = max(1, int((end - start) / mean_gap))
    home = {inst: machines[i % len(machines)] for i, (inst, _) in enumerate(synth.MACHINES)}
    out: list[Entry] = []
    first: float | None = None
    for t, provider, inst, _region, level, msg in synth.entries(n, seed=seed, incident=False,
                                                                mean_gap=mean_gap):
        if t < synth.START_EPOCH + 7:  # synth's own boot of its four machines
            continue
        first = t if first is None else first
        at = start + (t - first)
        if at > end:
            break
        mid, region = home[inst]
        out.append((at, provider, mid, region, level, msg.replace(synth.APP, APP)))
    return out


def ns(t: float) -> int:
    return int(round(t * 1e9))


def serve(world: World, entries: Iterable[Entry], *, app: str = APP,
          page_size: int = 100) -> World:
    """Serve ``entries`` (absolute times) as Fly logs-API pages of 100 lines (as the real
    API), by ``next_token``."""
    ordered = sorted(entries, key=lambda e: e[0])
    stamps = [ns(e[0]) for e in ordered]

    def item(i: int, e: Entry) -> dict:
        return {"id": f"{stamps[i]:x}{i % 65536:04x}",
                "attributes": {"timestamp": iso(datetime.fromtimestamp(e[0], timezone.utc)),
                               "message": e[5], "level": e[4], "instance": e[2],
                               "region": e[3], "meta": {"event": {"provider": e[1]}}}}

    def handle(request: httpx.Request) -> httpx.Response:
        given = request.url.params.get("next_token")
        # without a token the API answers the latest lines
        token = int(given) if given else (stamps[-page_size:] or [0])[0]
        lo = next((i for i, s in enumerate(stamps) if s >= token), len(stamps))
        page = list(range(lo, min(lo + page_size, len(stamps))))
        if not page:
            return json_response(200, {"data": [], "meta": {}}, latency_ms=120.0)
        more = page[-1] + 1 < len(stamps)
        nxt = stamps[page[-1]] + 1 if more else max(stamps[page[-1]] + 1, ns(NOW_S))
        return json_response(200, {"data": [item(i, ordered[i]) for i in page],
                                   "meta": {"next_token": str(nxt)}}, latency_ms=180.0)

    return world.route("fly-api", "GET", f"/api/v1/apps/{app}/logs", handle)


def at(t: float, lines: list[tuple[float, str, str, str, str, str]]) -> list[Entry]:
    """Scripted lines given as offsets from ``t``."""
    return [(t + dt, provider, inst, region, level, msg) for dt, provider, inst, region, level, msg in lines]


def access(status: int, path: str, ms: float, size: int = 512, method: str = "GET") -> str:
    """An access line in the layout of the demo app's framework."""
    return f"{method} {path} {status} {ms:.3f} ms - {size}"


def proxy_pc01(port: int = 8080) -> str:
    return (f"[PC01] instance refused connection. is your app listening on 0.0.0.0:{port}? make "
            "sure it is not only listening on 127.0.0.1 (hint: look at your startup logs, "
            "servers often print the address they are listening on)")


def proxy_pr04(port: int = 8080) -> str:
    return ("[PR04] could not find a good candidate within 40 attempts at load balancing. last "
            "error: " + proxy_pc01(port))


def boot(mid: str, region: str, image: str, *, listen: str = "0.0.0.0:8080",
         check_port: int = 8080, passes: bool = True) -> list[tuple]:
    """A machine (re)start as Fly and the app print it (offsets in seconds)."""
    lines: list[tuple] = [
        (0.0, "runner", mid, region, "info", f"Pulling container image {image}"),
        (0.6, "runner", mid, region, "info", f"Successfully prepared image {image} (611.3ms)"),
        (1.0, "runner", mid, region, "info", "Configuring firecracker"),
        (1.3, "app", mid, region, "info", "[    0.039311] PCI: Fatal: No config space access function found"),
        (1.5, "app", mid, region, "info", " INFO Starting init (commit: 15c0b3a1)..."),
        (1.6, "app", mid, region, "info", " INFO Preparing to run: `docker-entrypoint.sh node server.js` as node"),
        (1.6, "app", mid, region, "info", " INFO [fly api proxy] listening at /.fly/api"),
        (1.7, "runner", mid, region, "info", "Machine started in 1.612s"),
        (3.8, "app", mid, region, "info", f"Server listening on http://{listen}"),
    ]
    if passes:
        lines += [(2.0, "health", mid, region, "error",
                   f"Health check on port {check_port} has failed. Your app is not responding "
                   "properly. Services exposed on ports [80, 443] will have intermittent "
                   "failures until the health check passes."),
                  (6.1, "health", mid, region, "info",
                   f"Health check on port {check_port} is now passing.")]
    return lines


def every(start: float, end: float, gap: float, make: Callable[[int], tuple]) -> list[Entry]:
    """A line every ``gap`` seconds between ``start`` and ``end`` (epoch seconds); ``make(k)``
    gives the rest of the k-th entry (provider, instance, region, level, message)."""
    out, k, t = [], 0, start
    while t <= end:
        out.append((t, *make(k)))
        k, t = k + 1, t + gap
    return out
