"""Deterministic, realistic Fly.io log streams with an incident hidden in ordinary traffic.

Used by the benchmark (`bench/logs_vs_grep.py`), the test suite and demo captures. The
message texts are the ones Fly (proxy, init, health checks), Postgres, Supavisor, GoTrue and
PostgREST print (their sources are listed in ``tests/test_logs_samples.py``).

The stream is a sequence of entries ``(epoch_seconds, provider, instance, region, level,
message)`` rendered as ``fly logs`` text or as log-shipper NDJSON. Background traffic is
mostly HTTP access lines (several framework layouts, some with "error" inside URLs or JSON
keys) plus SQL, auth and platform chatter. The incident, placed by fraction of the stream:

* 40 %: instance ``e784079b449483`` is OOM-killed (kernel + init lines), restarts (boot with
  the harmless ``PCI: Fatal`` line and a health-check blip), and the proxy logs ``[PC01]`` and
  ``[PR04] ... last error: [PC01]`` while users get 502s;
* 55 %: Postgres runs out of connection slots (``too many clients``) and Supavisor rejects
  clients (``EMAXCONNSESSION``) for a few minutes;
* 70 %: JWTs "issued at future" on one instance (clock skew);
* 85 %: auto-stop of instance ``6e82d4e2a17658`` (SIGINT, exit code 0, reboot: no signal).
"""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

APP = "acme-web"
MACHINES: tuple[tuple[str, str], ...] = (
    ("148ed193b95089", "iad"),
    ("e784079b449483", "iad"),
    ("3d8d413b29d089", "lhr"),
    ("6e82d4e2a17658", "syd"),
)
OOM_INSTANCE = "e784079b449483"
SKEW_INSTANCE = "3d8d413b29d089"
AUTOSTOP_INSTANCE = "6e82d4e2a17658"
START_EPOCH = 1716897600  # 2024-05-28T12:00:00Z

Entry = tuple[float, str, str, str, str, str]

_PATHS = (
    "/api/projects/{n}/tasks?limit=50",
    "/api/projects/{n}",
    "/api/users/{n}/avatar",
    "/api/orders/{uuid}",
    "/api/errors/summary",
    "/api/error-reports/{n}",
    "/static/app.{hex}.js",
    "/health",
    "/api/search?q=failed+payments",
    "/rest/v1/projects?select=*&org_id=eq.{n}",
)
_METHODS = ("GET", "GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH")
_STATUS = (200,) * 80 + (201, 204, 204, 301, 304, 304, 304, 400, 401, 403, 404, 404, 404, 422, 429)
_SQL = (
    'SELECT "id", "name", "org_id" FROM "public"."projects" WHERE "org_id" = $1 LIMIT 50',
    'SELECT count(*) FROM "public"."tasks" WHERE "project_id" = $1 AND "done" = false',
    'UPDATE "public"."tasks" SET "done" = true, "updated_at" = now() WHERE "id" = $1',
    'INSERT INTO "public"."events" ("kind", "payload") VALUES ($1, $2)',
)


class _Gen:
    """Stateful generator of entries; one instance produces one deterministic stream."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.t = float(START_EPOCH)
        self.up = {inst for inst, _ in MACHINES}
        self.req = 0

    def _uuid(self) -> str:
        r = self.r.getrandbits(128)
        h = f"{r:032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def _ip(self) -> str:
        r = self.r.getrandbits(24)
        return f"172.16.{(r >> 8) & 255}.{r & 255}"

    def _path(self) -> str:
        p = self.r.choice(_PATHS)
        return p.format(n=self.r.randrange(1, 99999), uuid=self._uuid(), hex=f"{self.r.getrandbits(32):08x}")

    def access(self, status: int | None = None) -> str:
        """One HTTP access line in one of four common framework layouts."""
        r = self.r
        st = status if status is not None else r.choice(_STATUS)
        if st == 200 and r.random() < 0.002:
            st = r.choice((500, 502, 503))
        m = r.choice(_METHODS)
        path = self._path()
        ms = r.random() * 80 + 0.4
        kind = r.random()
        self.req += 1
        if kind < 0.45:
            return f"{m} {path} {st} {ms:.3f} ms - {r.randrange(20, 40000)}"
        if kind < 0.65:
            return f'INFO:     {self._ip()}:{r.randrange(30000, 65000)} - "{m} {path} HTTP/1.1" {st}'
        if kind < 0.85:
            err = "null" if st < 400 else '"request failed"'
            return (
                f'{{"level":30,"time":{int(self.t * 1000)},"pid":314,"reqId":"req-{self.req}",'
                f'"req":{{"method":"{m}","url":"{path}"}},"res":{{"statusCode":{st}}},'
                f'"error":{err},"responseTime":{ms:.1f},"msg":"request completed"}}'
            )
        return (
            f'"{m} http://{APP}.fly.dev{path} HTTP/1.1" from {self._ip()}:{r.randrange(30000, 65000)}'
            f" - {st} {r.randrange(20, 40000)}B in {ms:.4f}ms"
        )

    def chatter(self) -> str:
        """Non-HTTP app lines: SQL timings, auth, jobs, pool stats."""
        r = self.r
        k = r.random()
        if k < 0.35:
            return f"query took {r.randrange(1, 90)}ms: {r.choice(_SQL)}"
        if k < 0.5:
            return f"JWT created successfully for user {self._uuid()} (expires in 3600s)"
        if k < 0.6:
            return f"db pool: {r.randrange(0, 10)} idle, {r.randrange(0, 10)} active connections, 0 waiting"
        if k < 0.7:
            return f"job {self._uuid()} completed in {r.randrange(5, 4000)}ms (send-digest-email)"
        if k < 0.8:
            return f'auth: user {self._uuid()} signed in via "password" from {self._ip()}'
        if k < 0.86:
            return f"cache hit ratio 0.{r.randrange(50, 99)} over last 60s ({r.randrange(1000, 9000)} lookups)"
        if k < 0.9:
            return (
                "GoTrue: invalid JWT: unable to parse or verify signature, token has invalid claims: "
                "token is expired"
                if r.random() < 0.3
                else "refreshing session for user " + self._uuid()
            )
        if k < 0.95:
            return f"Webhook delivery to https://hooks.example.com/{r.getrandbits(40):x} took {r.randrange(20, 900)}ms"
        return f"GET https://{APP}.supabase.co/auth/v1/user 200 in {r.randrange(8, 120)}ms"

    def tick(self, mean_gap: float) -> None:
        self.t += self.r.expovariate(1.0 / mean_gap)

    def background(self, mean_gap: float) -> Entry:
        self.tick(mean_gap)
        inst, region = self.r.choice(MACHINES)
        if inst not in self.up:
            inst, region = MACHINES[0]
        k = self.r.random()
        if k < 0.7:
            return (self.t, "app", inst, region, "info", self.access())
        return (self.t, "app", inst, region, "info", self.chatter())

    # --- incident scripts (lists of entries at offsets from now) -----------------------------

    def boot(self, inst: str, region: str, t: float) -> list[Entry]:
        """A machine (re)start, with the harmless boot lines and a health-check blip."""
        return [
            (t + 0.0, "runner", inst, region, "info", "Pulling container image registry.fly.io/acme-web:deployment-01HZ3V6C9Q8W2X"),
            (t + 0.6, "runner", inst, region, "info", "Successfully prepared image registry.fly.io/acme-web:deployment-01HZ3V6C9Q8W2X (611.3ms)"),
            (t + 1.0, "runner", inst, region, "info", "Configuring firecracker"),
            (t + 1.3, "app", inst, region, "info", "[    0.039311] PCI: Fatal: No config space access function found"),
            (t + 1.5, "app", inst, region, "info", " INFO Starting init (commit: 15c0b3a1)..."),
            (t + 1.6, "app", inst, region, "info", " INFO Preparing to run: `docker-entrypoint.sh node server.js` as node"),
            (t + 1.6, "app", inst, region, "info", " INFO [fly api proxy] listening at /.fly/api"),
            (t + 1.7, "runner", inst, region, "info", "Machine started in 1.612s"),
            (t + 2.0, "health", inst, region, "error", "Health check on port 8080 has failed. Your app is not responding properly. Services exposed on ports [80, 443] will have intermittent failures until the health check passes."),
            (t + 3.8, "app", inst, region, "info", "Server listening on http://0.0.0.0:8080"),
            (t + 6.1, "health", inst, region, "info", "Health check on port 8080 is now passing."),
        ]

    def oom(self, inst: str, region: str) -> list[Entry]:
        t = self.t
        out: list[Entry] = [
            (t, "app", inst, region, "info", "warning: heap usage 92% of 512MB limit, 3 GCs in the last 10s"),
            (t + 4.0, "app", inst, region, "info", "[  812.442150] Out of memory: Killed process 314 (node) total-vm:1437168kB, anon-rss:483236kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:1344kB oom_score_adj:0"),
            (t + 4.2, "app", inst, region, "info", " INFO Main child exited with signal (with signal 'SIGKILL', core dumped? false)"),
            (t + 4.2, "app", inst, region, "info", " INFO Process appears to have been OOM killed!"),
            (t + 4.3, "app", inst, region, "info", " INFO Starting clean up."),
            (t + 4.5, "app", inst, region, "info", "[  812.611280] reboot: Restarting system"),
            (t + 4.9, "runner", inst, region, "info", "machine restart policy set to 'on-failure', restarting"),
        ]
        for k in range(8):
            out.append((t + 5 + k * 0.7, "proxy", inst, region, "error",
                        "[PC01] instance refused connection. is your app listening on 0.0.0.0:8080? make sure it is not only listening on 127.0.0.1 (hint: look at your startup logs, servers often print the address they are listening on)"))
        out.append((t + 9.0, "proxy", inst, region, "error",
                    "[PR04] could not find a good candidate within 40 attempts at load balancing. last error: [PC01] instance refused connection. is your app listening on 0.0.0.0:8080? make sure it is not only listening on 127.0.0.1 (hint: look at your startup logs, servers often print the address they are listening on)"))
        other = MACHINES[0]
        for k in range(30):
            out.append((t + 5 + k * 0.2, "app", other[0], other[1], "info", self.access(status=502)))
        out.extend(self.boot(inst, region, t + 10.0))
        return out

    def db_exhaustion(self) -> list[Entry]:
        t = self.t
        out: list[Entry] = []
        for k in range(120):
            inst, region = MACHINES[k % 3]
            tt = t + k * 1.5
            if k % 3 == 0:
                msg = "error: sorry, too many clients already"
            elif k % 3 == 1:
                msg = "PostgresError: (EMAXCONNSESSION) max clients reached in session mode - max clients are limited to pool_size: 15"
            else:
                msg = 'FATAL:  remaining connection slots are reserved for non-replication superuser connections'
            out.append((tt, "app", inst, region, "info", msg))
            out.append((tt + 0.1, "app", inst, region, "info", self.access(status=500)))
        return out

    def clock_skew(self) -> list[Entry]:
        t = self.t
        out = [
            (t + k * 2.0, "app", SKEW_INSTANCE, "lhr", "info",
             'PostgREST error PGRST303: {"code":"PGRST303","details":null,"hint":null,"message":"JWT issued at future"}')
            for k in range(40)
        ]
        out.append((t + 1, "app", SKEW_INSTANCE, "lhr", "info",
                    "@supabase/gotrue-js: Session as retrieved from URL was issued in the future? Check the device clock for skew 1716897601 1716897641 1716897600"))
        return out

    def autostop(self) -> list[Entry]:
        t = self.t
        inst, region = AUTOSTOP_INSTANCE, "syd"
        self.up.discard(inst)
        return [
            (t, "proxy", inst, region, "info", "Downscaling app acme-web from 4 machines to 3 machines, stopping machine 6e82d4e2a17658 (region=syd, process group=app)"),
            (t + 0.1, "app", inst, region, "info", " INFO Sending signal SIGINT to main child process w/ PID 314"),
            (t + 0.4, "app", inst, region, "info", "SIGINT received, closing HTTP server"),
            (t + 0.9, "app", inst, region, "info", " INFO Main child exited normally with code: 0"),
            (t + 0.9, "app", inst, region, "info", " INFO Starting clean up."),
            (t + 1.0, "app", inst, region, "info", " WARN hallpass exited, pid: 315, status: signal: 15 (SIGTERM)"),
            (t + 1.8, "app", inst, region, "info", "[ 4021.101127] reboot: Restarting system"),
        ]


def entries(n_lines: int, seed: int = 7, *, incident: bool = True,
            mean_gap: float = 0.02) -> Iterator[Entry]:
    """Yield about ``n_lines`` entries (the incident adds a few hundred) in time order.

    ``incident=False`` gives ordinary traffic only (boots, access logs, chatter, the harmless
    lines that must not raise a signal); ``mean_gap`` is the mean seconds between lines.
    """
    g = _Gen(seed)
    triggers = {
        int(n_lines * 0.40): lambda: g.oom(OOM_INSTANCE, "iad"),
        int(n_lines * 0.55): g.db_exhaustion,
        int(n_lines * 0.70): g.clock_skew,
        int(n_lines * 0.85): g.autostop,
    } if incident else {}
    for inst, region in MACHINES:
        yield from g.boot(inst, region, g.t + MACHINES.index((inst, region)) * 0.01)
    g.t += 7
    pending: list[Entry] = []
    for i in range(n_lines):
        fn = triggers.get(i)
        if fn is not None:
            pending = sorted(fn(), key=lambda e: e[0])
        e = g.background(mean_gap)
        while pending and pending[0][0] <= e[0]:
            yield pending.pop(0)
        yield e
    yield from pending


_sec_cache: dict[int, str] = {}


def _sec(sec: int) -> str:
    s = _sec_cache.get(sec)
    if s is None:
        if len(_sec_cache) > 4096:
            _sec_cache.clear()
        s = _sec_cache[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return s


def _ts_text(t: float) -> str:
    return _sec(int(t)) + "Z"


def _ts_nano(t: float) -> str:
    sec = int(t)
    return f"{_sec(sec)}.{int((t - sec) * 1e9):09d}Z"


def render_text(e: Entry) -> str:
    """One ``fly logs`` text line (current flyctl layout: no space after the level)."""
    t, prov, inst, region, level, msg = e
    return f"{_ts_text(t)} {prov}[{inst}] {region} [{level}]{msg}"


def render_ndjson(e: Entry) -> str:
    """One log-shipper (Vector) NDJSON line."""
    t, prov, inst, region, level, msg = e
    return (
        f'{{"event":{{"provider":"{prov}"}},"fly":{{"app":{{"instance":"{inst}","name":"{APP}"}},'
        f'"region":"{region}"}},"host":"a1b2","log":{{"level":"{level}"}},'
        f'"message":{json.dumps(msg)},"timestamp":"{_ts_nano(t)}"}}'
    )


def write(path: str | Path, fmt: str, size_bytes: int, seed: int = 7) -> Path:
    """Write a stream of about ``size_bytes`` in ``fmt`` ("fly-text" or "ndjson").

    A ``.gz`` suffix gzips the output. Returns the path.
    """
    render = {"fly-text": render_text, "ndjson": render_ndjson}[fmt]
    sample = [render(e) for e in entries(4000, seed)]
    avg = sum(len(s) + 1 for s in sample) / len(sample)
    n = max(50, int(size_bytes / avg))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="\n") as fh:  # type: ignore[operator]
        buf: list[str] = []
        for e in entries(n, seed):
            buf.append(render(e))
            if len(buf) >= 20000:
                fh.write("\n".join(buf) + "\n")
                buf.clear()
        if buf:
            fh.write("\n".join(buf) + "\n")
    return path
