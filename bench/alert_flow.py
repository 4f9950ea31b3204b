"""Benchmark: from Alertmanager's post to the notification, against the same runbook by hand.

Both ways run the ``memory`` runbook live against the same local STAND-INS of Fly's Machines,
logs and Prometheus APIs (tests/standins/) and tell the same Slack stand-in:

* **by hand** — ``python -m opslib run memory --app shop``, timed from the command's start to
  the Slack message arriving;
* **alert** — an Alertmanager webhook payload (version 4) posted to a running
  ``python -m opslib serve``, timed from the post to the Slack message arriving.

The two are interleaved ``--repeat`` times; the medians and their ratio are printed (target:
alert ≤ 1.2 × by hand). Then ``--alerts`` more alerts (distinct groups, so each one runs) go
to the same ``serve``, and its resident memory (the receiver process alone; each run's kernel
is a child that exits) is printed as the runs complete: flat means no growth per alert.

    .venv/bin/python bench/alert_flow.py [--repeat 3] [--alerts 100]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psutil  # noqa: E402

from opslib.alerts import rules, webhook_payload  # noqa: E402
from opslib.demo.world import machine  # noqa: E402
from opslib.promql import queries  # noqa: E402
from tests.servers import LocalHTTPServer, Reply, free_port  # noqa: E402
from tests.standins.fly_api import FlyApiStandIn  # noqa: E402
from tests.standins.fly_machines import FlyMachinesStandIn  # noqa: E402
from tests.standins.prometheus import PrometheusStandIn  # noqa: E402

APP = "shop"
A, B = "148ed193b95089", "3d8d9e1fe67e89"
TOKEN = "fo1_BenchReadOnlyToken_abcdefghijklmnopqrstuvwxyz0123"
HOOK = "bench-webhook-token-0123456789abcdef"


class Slack(LocalHTTPServer):
    """An incoming webhook that notes when each message arrived."""

    def __init__(self) -> None:
        self.arrived: list[float] = []
        self.cv = threading.Condition()
        super().__init__(self._handle)

    def _handle(self, req) -> Reply:
        with self.cv:
            self.arrived.append(time.perf_counter())
            self.cv.notify_all()
        return Reply(200, "ok")

    def wait(self, count: int, timeout: float = 600) -> float:
        with self.cv:
            if not self.cv.wait_for(lambda: len(self.arrived) >= count, timeout):
                raise SystemExit(f"no notification {count} within {timeout:.0f} s")
            return self.arrived[count - 1]


def _fixture() -> dict:
    q = queries(APP, window="6h")
    labels = lambda mid: {"app": APP, "instance": mid}  # noqa: E731
    return {q["memory_pct"]: [(labels(A), lambda t: 96.0), (labels(B), lambda t: 41.0)],
            q["memory_used_incl_cache_pct"]: [(labels(A), lambda t: 98.0), (labels(B), lambda t: 60.0)],
            q["memory_total_bytes"]: [(labels(A), lambda t: 480e6), (labels(B), lambda t: 480e6)],
            q["oom_exits"]: [({"instance": A}, lambda t: 0.0), ({"instance": B}, lambda t: 0.0)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--alerts", type=int, default=100)
    args = ap.parse_args()
    now = datetime.now(timezone.utc)
    machines = [machine(A, name="a", region="iad", created=now - timedelta(days=2)),
                machine(B, name="b", region="ams", created=now - timedelta(days=2))]
    rule = next(r for r in rules(APP)["groups"][0]["rules"] if r["alert"] == "OpslibMemoryUsageCritical")
    with tempfile.TemporaryDirectory(prefix="bench-alert-") as tmp, Slack() as slack, \
            FlyMachinesStandIn(TOKEN, {APP: machines}) as flaps, \
            FlyApiStandIn(TOKEN, {APP: {"logs": []}}) as api, \
            PrometheusStandIn(TOKEN, _fixture()) as prom:
        env = {**os.environ, "OPSLIB_REPORTS": str(Path(tmp) / "reports"),
               "OPSLIB_WEBHOOK_TOKEN": HOOK, "FLY_API_TOKEN": TOKEN,
               "FLY_FLAPS_BASE_URL": flaps.url, "FLY_API_BASE_URL": api.url,
               "FLY_PROMETHEUS_URL": prom.base, "SLACK_WEBHOOK_URL": slack.url + "/hook",
               "FLY_INCIDENTS_URL": "http://127.0.0.1:9/v1/incidents"}
        for k in ("PAGERDUTY_ROUTING_KEY", "DATABASE_URL", "SUPABASE_URL", "SUPABASE_ACCESS_TOKEN"):
            env.pop(k, None)
        port = free_port()
        serve = subprocess.Popen([sys.executable, "-m", "opslib", "serve", "--listen",
                                  f"127.0.0.1:{port}", "--workers", "2", "--max-queue", "1000"],
                                 env=env, cwd=REPO, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    httpx.get(url + "/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            sent = 0

            def post(group: str) -> float:
                body = webhook_payload(rule, starts_at=now.isoformat())
                body["groupKey"] = group
                t0 = time.perf_counter()
                r = httpx.post(url + "/alertmanager", json=body, timeout=10,
                               headers={"authorization": f"Bearer {HOOK}"})
                assert r.status_code == 202, r.text
                return t0

            hand, alert = [], []
            for i in range(args.repeat):
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "opslib", "run", "memory", "--app", APP,
                                       "--incident", f"by-hand-{i}"], env=env, cwd=REPO,
                                      capture_output=True, text=True)
                assert proc.returncode == 0, proc.stderr
                sent += 1
                hand.append(slack.wait(sent) - t0)
                t0 = post(f"{{}}:{{bench=\"latency-{i}\"}}")
                sent += 1
                alert.append(slack.wait(sent) - t0)
                print(f"  round {i + 1}: by hand {hand[-1]:.2f} s, alert → notification {alert[-1]:.2f} s",
                      flush=True)
            h, a = statistics.median(hand), statistics.median(alert)
            print(f"by hand (command start → Slack): median {h:.2f} s")
            print(f"alert (post → Slack):            median {a:.2f} s")
            print(f"ratio alert / by hand: {a / h:.2f}x  (target <= 1.2x)")

            rss = psutil.Process(serve.pid)
            marks = sorted({max(1, args.alerts * k // 4) for k in range(1, 5)})
            print(f"serve's resident memory over {args.alerts} more alerts (each runs):")
            print(f"  after {sent - args.repeat:>3} runs: {rss.memory_info().rss / 2**20:.0f} MiB")
            base = sent
            for n in range(args.alerts):
                post(f"{{}}:{{bench=\"memory-{n}\"}}")
            first = None
            for mark in marks:
                slack.wait(base + mark, timeout=60 * 60)
                mib = rss.memory_info().rss / 2**20
                first = first or mib
                print(f"  after {args.repeat + mark:>3} runs: {mib:.0f} MiB", flush=True)
            print(f"growth over the last {marks[-1] - marks[0]} alerts: {mib / first:.2f}x (flat: ~1.0x)")
        finally:
            serve.terminate()
            serve.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
