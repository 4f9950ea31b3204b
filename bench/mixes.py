"""Generated log mixes that are not our own generator's (``opslib.logscan.synth``) shape, for
``bench/logs_vs_grep.py --formats short,errors,access,ndjson-mix``.

* ``short`` — bare application lines of ~100 bytes (no Fly prefix), 5 % errors;
* ``errors`` — ``fly logs`` text where ~6 % of the lines are errors, most of them inside
  multi-line stack traces (Python, Java, Node, Go panics, Elixir);
* ``access`` — ``fly logs`` text of access logs in six styles: Common Log Format, morgan
  (combined and dev), uvicorn, gunicorn, Go ``log``, Rails and Phoenix;
* ``ndjson-mix`` — the ``errors`` and ``access`` mixes as log-shipper NDJSON;
* ``raw-traces`` — ``fly logs`` text access lines where 5 % of the requests fail with a stack
  trace whose continuation lines carry no Fly prefix (an app writing its traces to stdout in
  one write, as a file captured outside ``fly logs`` shows them).

Deterministic for a seed; written once into ``bench/out/`` (git-ignored).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Iterator

MIXES = ("short", "errors", "access", "ndjson-mix", "raw-traces")
MACHINES = (("148ed193b95089", "iad"), ("e784079b449483", "ams"), ("3d8d413b29d089", "lhr"))
START = 1716897600  # 2024-05-28T12:00:00Z
PATHS = ("/api/projects/{n}/tasks", "/api/users/{n}", "/api/orders/{n}/items", "/healthz",
         "/api/search?q=failed+jobs", "/assets/app-{n}.js", "/api/error-reports/{n}")
METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE")


def _ts(t: float) -> str:
    """RFC 3339 with microseconds, from 2024-05-28T12:00:00Z on (a day or two at most)."""
    rel = int(t) - START
    hour = 12 + rel // 3600
    return (f"2024-05-{28 + hour // 24:02d}T{hour % 24:02d}:{rel // 60 % 60:02d}:{rel % 60:02d}."
            f"{int((t - int(t)) * 1e6):06d}Z")


def _access(r: random.Random, ip: str) -> list[str]:
    """One request in one of the six styles (Rails and Phoenix print two lines)."""
    method, path = r.choice(METHODS), r.choice(PATHS).format(n=r.randrange(1, 99999))
    status = r.choice((200,) * 40 + (201, 204, 304, 400, 401, 404, 404, 422, 500, 502, 503))
    ms = r.uniform(0.5, 900)
    size = r.randrange(80, 90000)
    style = r.randrange(7)
    if style == 0:
        return [f'{ip} - - [28/May/2024:12:{r.randrange(60):02d}:{r.randrange(60):02d} +0000] '
                f'"{method} {path} HTTP/1.1" {status} {size}']
    if style == 1:
        return [f'{ip} - - [28/May/2024:12:00:00 +0000] "{method} {path} HTTP/1.1" {status} {size} '
                f'"https://example.com/" "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"']
    if style == 2:
        return [f"{method} {path} {status} {ms:.3f} ms - {size}"]
    if style == 3:
        reason = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
                  500: "Internal Server Error"}.get(status, "")
        return [f'INFO:     {ip}:{r.randrange(1024, 65535)} - "{method} {path} HTTP/1.1" {status} {reason}']
    if style == 4:
        return [f'[2024-05-28 12:00:00 +0000] [{r.randrange(2, 64)}] [INFO] {ip} - - '
                f'"{method} {path} HTTP/1.1" {status} {size} "-" "python-requests/2.32"']
    if style == 5:
        return [f"2024/05/28 12:00:00 {method} {path} {status} {ms:.1f}ms"]
    if r.random() < 0.5:
        return [f'Started {method} "{path}" for {ip} at 2024-05-28 12:00:00 +0000',
                f"Completed {status} OK in {ms:.0f}ms (Views: {ms / 3:.1f}ms | ActiveRecord: {ms / 5:.1f}ms)"]
    return [f"12:00:00.000 request_id=F{r.randrange(16**12):012x} [info] {method} {path}",
            f"12:00:00.000 request_id=F{r.randrange(16**12):012x} [info] Sent {status} in {ms:.0f}ms"]


def _trace(r: random.Random) -> list[str]:
    """A stack trace as one language prints it, one log line per trace line."""
    kind = r.randrange(5)
    if kind == 0:
        return ["Traceback (most recent call last):",
                '  File "/app/app/views.py", line 42, in create_order',
                "    order = Order.objects.create(**data)",
                '  File "/app/.venv/lib/python3.12/site-packages/django/db/models/query.py", line 679, in create',
                "    obj.save(force_insert=True, using=self.db)",
                "django.db.utils.OperationalError: connection to server at \"db.internal\" failed: timeout expired"]
    if kind == 1:
        return ["ERROR 1 --- [nio-8080-exec-7] o.a.c.c.C.[.[.[/].[dispatcherServlet] : Servlet.service() threw exception",
                "java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"name\" is null",
                "\tat com.example.web.OrderController.create(OrderController.java:57)",
                "\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)",
                "\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)",
                "\t... 48 common frames omitted"]
    if kind == 2:
        return ["TypeError: Cannot read properties of undefined (reading 'id')",
                "    at OrderService.create (/app/dist/services/order.js:88:31)",
                "    at async /app/dist/routes/orders.js:21:17",
                "    at async Promise.all (index 0)"]
    if kind == 3:
        return ["2024/05/28 12:00:00 http: panic serving 172.19.0.1:43210: runtime error: index out of range [3] with length 3",
                "goroutine 2231 [running]:",
                "net/http.(*conn).serve.func1()",
                "\t/usr/local/go/src/net/http/server.go:1898 +0xbe",
                "main.(*api).orders(0xc0001a2000, {0x9d1e40, 0xc0003c01c0}, 0xc000412000)",
                "\t/app/api.go:212 +0x5a5"]
    return ["** (exit) an exception was raised:",
            "    ** (Ecto.NoResultsError) expected at least one result but got none in query:",
            "        (ecto 3.11.2) lib/ecto/repo/queryable.ex:164: Ecto.Repo.Queryable.one!/3",
            "        (shop 0.1.0) lib/shop_web/controllers/order_controller.ex:31: ShopWeb.OrderController.show/2"]


def _short(r: random.Random) -> Iterator[str]:
    while True:
        n = r.randrange(1, 99999)
        if r.random() < 0.05:
            yield (f"2024-05-28T12:00:00Z ERROR worker: job {n} failed: upstream timeout after 30s "
                   f"(attempt {r.randrange(1, 5)})")
        else:
            yield (f"2024-05-28T12:00:00Z INFO http: {r.choice(METHODS)} "
                   f"{r.choice(PATHS).format(n=n)} {r.choice((200, 200, 200, 204, 304, 404))} "
                   f"{r.uniform(0.2, 90):.1f}ms")


def _entries(r: random.Random, *, errors: bool, access: bool) -> Iterator[tuple[float, str, str, str]]:
    """(epoch, machine, region, message): mostly access lines, stack traces now and then."""
    t = float(START)
    while True:
        mid, region = r.choice(MACHINES)
        t += r.uniform(0.0, 0.02)
        if errors and r.random() < 0.012:
            for line in _trace(r):
                yield t, mid, region, line
        else:
            ip = f"203.0.113.{r.randrange(1, 255)}"
            for line in (_access(r, ip) if access else [f"worker: processed batch {r.randrange(10**6)}"]):
                yield t, mid, region, line


def _raw_traces(r: random.Random) -> Iterator[str]:
    t = float(START)
    while True:
        mid, region = r.choice(MACHINES)
        t += r.uniform(0.0, 0.02)
        if r.random() < 0.05:
            first, *rest = _trace(r)
            yield _fly_text((t, mid, region, first))
            yield from rest
        else:
            for line in _access(r, f"203.0.113.{r.randrange(1, 255)}"):
                yield _fly_text((t, mid, region, line))


def _fly_text(e: tuple[float, str, str, str]) -> str:
    t, mid, region, msg = e
    return f"{_ts(t)} app[{mid}] {region} [info] {msg}"


def _ndjson(e: tuple[float, str, str, str]) -> str:
    t, mid, region, msg = e
    return json.dumps({"event": {"provider": "app"}, "fly": {"app": {"instance": mid, "name": "shop"},
                                                              "region": region},
                       "host": "a1b2", "log": {"level": "info"}, "message": msg,
                       "timestamp": _ts(t)}, separators=(",", ":"))


def lines(mix: str, seed: int) -> Iterator[str]:
    r = random.Random(f"{mix}:{seed}")
    if mix == "short":
        return _short(r)
    if mix == "raw-traces":
        return _raw_traces(r)
    render: Callable = _ndjson if mix == "ndjson-mix" else _fly_text
    return (render(e) for e in _entries(r, errors=mix in ("errors", "ndjson-mix"),
                                        access=mix in ("access", "ndjson-mix", "errors")))


def write(path: Path, mix: str, size: int, seed: int = 7) -> Path:
    """About ``size`` bytes of ``mix`` into ``path``."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}: one of {', '.join(MIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        buf: list[str] = []
        for line in lines(mix, seed):
            buf.append(line)
            written += len(line) + 1
            if len(buf) >= 20000:
                fh.write("\n".join(buf) + "\n")
                buf.clear()
                if written >= size:
                    break
        if buf:
            fh.write("\n".join(buf) + "\n")
    return path
