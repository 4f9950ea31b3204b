"""Benchmark: is live collection the slow part of a runbook? (issue 3, "Performance")

    .venv/bin/python bench/collect_latency.py [--latency-ms 50] [--repeat 5]

Starts local stand-ins for the Fly Machines API and api.fly.io, an HTTP app and a TLS server
(``tests/standins``, ``tests/tls_servers``), each request delayed by ``--latency-ms`` by the
fault proxy (HTTP) or the TLS server itself (handshakes). Then, in record mode as a real run:

1. **health**: ``health.collect`` (5 /health probes + the machine list);
2. **every Fly source**: releases + machines + probes (``deploy.collect``), certificates →
   details + TLS handshakes (``tls.collect``), every machine's events, and every logs page.

For each it prints the median wall time and the ratio to the single slowest request chain
(the longest run of requests that must wait for each other — e.g. log pages, each needing
the previous ``next_token`` — measured alone). Target: at most 1.5×.

Then it replays the recorded "every source" run and prints the ratio of replay (collect from
the capture + the same analysis and charts) to the analysis alone. Target: at most 1.2×.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trustme  # noqa: E402

from opslib.config import Target  # noqa: E402
from opslib.demo.world import exit_events, machine  # noqa: E402
from opslib.thresholds import THRESHOLDS  # noqa: E402
from opslib.runbooks import deploy, health, tls  # noqa: E402
from opslib.runbooks._fly import probes as probe_chain  # noqa: E402
from opslib.session import Session  # noqa: E402
from opslib.times import iso
from opslib.sources.fly import FlyMachines, events_frame  # noqa: E402
from opslib.sources.fly_platform import FlyPlatform, logs_frame  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402
from tests.servers import LocalHTTPServer, Reply  # noqa: E402
from tests.standins.fly_api import FlyApiStandIn, log_attrs, rest_release  # noqa: E402
from tests.standins.fly_machines import FlyMachinesStandIn, new_certificate  # noqa: E402
from tests.tls_servers import LocalTLSServer, ca_file, leaf  # noqa: E402

TOKEN = "fo1_BenchToken_abcdefghijklmnopqrstuvwxyz0123456789"
APP = "bench-app"
HOSTS = ["www.bench.test", "api.bench.test", "shop.bench.test"]
LOG_PAGES = 6
PAGE = 50
NOW = datetime.now(timezone.utc).replace(microsecond=0)
WINDOW = timedelta(minutes=30)


def fixtures() -> dict[str, Any]:
    ids = ["148ed193b95089", "3d8d9e1fe67e89", "6e82d4ec1f4918"]
    machines = [machine(m, name=f"m{i}", region=("iad", "ams")[i % 2], release="7",
                        image=f"registry.fly.io/{APP}:deployment-7",
                        events=exit_events(at=NOW - timedelta(minutes=5 + i)))
                for i, m in enumerate(ids)]
    certs = {}
    for h in HOSTS:
        d = new_certificate(h, APP)
        d.update(status="active", configured=True)
        certs[h] = d
    releases = [rest_release(v, image=f"registry.fly.io/{APP}:deployment-{v}",
                             created_at=iso(NOW - timedelta(hours=10 - v))) for v in (7, 6, 5)]
    n = LOG_PAGES * PAGE - 1
    start = NOW - WINDOW
    logs = [log_attrs(iso(start + WINDOW * i / (n + 1)), f"GET /items/{i} 200 in 12ms",
                      instance=ids[i % 3]) for i in range(n)]
    return {"machines": machines, "certs": certs, "releases": releases, "logs": logs}


def serve(latency: float) -> None:
    """Child process: start every server, print their addresses, serve until stdin closes.

    The servers run in their own process so that they do not share the client's GIL: on
    two cores an in-process stand-in would slow the client down and inflate the ratios.
    """
    import json

    fx = fixtures()
    ca = trustme.CA()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opslib-bench-")))
        flaps = stack.enter_context(FlyMachinesStandIn(TOKEN, {APP: fx["machines"]},
                                                       certificates={APP: fx["certs"]}))
        api = stack.enter_context(FlyApiStandIn(TOKEN, {APP: {"releases": fx["releases"],
                                                              "logs": fx["logs"]}},
                                                page_size=PAGE))
        app = stack.enter_context(LocalHTTPServer(lambda r: Reply(200, {
            "status": "ok", "timestamp": datetime.now(timezone.utc).isoformat()})))
        tls_server = stack.enter_context(LocalTLSServer(*leaf(ca, HOSTS[0]), sni={
            h: leaf(ca, h) for h in HOSTS}))
        tls_server.latency = latency
        urls = {name: stack.enter_context(FaultProxy(srv.url, latency=latency)).url
                for name, srv in (("flaps", flaps), ("api", api), ("app", app))}
        urls.update(tls_port=tls_server.port, cafile=ca_file(ca, tmp),
                    machines=[m["id"] for m in fx["machines"]])
        print(json.dumps(urls), flush=True)
        sys.stdin.read()


class Bench:
    def __init__(self, stack: ExitStack, latency: float) -> None:
        import json
        import os
        import subprocess

        child = subprocess.Popen([sys.executable, __file__, "--serve", "--latency-ms",
                                  str(latency * 1000)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        stack.callback(child.wait, 30)
        stack.callback(child.stdin.close)
        urls = json.loads(child.stdout.readline())
        self.tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opslib-bench-")))
        os.environ["SSL_CERT_FILE"] = urls["cafile"]  # the stdlib default context trusts it
        self.tls_port = urls["tls_port"]
        self.target = Target("live", APP, urls["app"], environ={
            "FLY_API_TOKEN": TOKEN, "FLY_FLAPS_BASE_URL": urls["flaps"],
            "FLY_API_BASE_URL": urls["api"]})
        self.machine_ids = urls["machines"]
        self.runs = 0

    def session(self, mode: str = "record", capture: Path | None = None) -> Session:
        self.runs += 1
        raw = self.tmp / f"run{self.runs}" / "raw"
        return Session(mode, raw_dir=raw, capture_dir=capture, now=None if capture else NOW)

    # ------------------------------------------------------------------ collections
    def health(self, s: Session) -> Any:
        return health.collect(s, self.target, probes=5, timeout=5.0)

    def logs(self, s: Session) -> list[dict]:
        plat = FlyPlatform(s, APP, token=TOKEN, base_url=self.target.env("FLY_API_BASE_URL"))
        return list(plat.logs(since=NOW - WINDOW, until=NOW))

    def events(self, s: Session) -> dict[str, list]:
        fly = FlyMachines(s, APP, token=TOKEN, base_url=self.target.env("FLY_FLAPS_BASE_URL"))
        with ThreadPoolExecutor(max_workers=len(self.machine_ids)) as pool:
            got = dict(zip(self.machine_ids, pool.map(fly.events, self.machine_ids)))
        return got

    def everything(self, s: Session) -> dict[str, Any]:
        """Every Fly source at once: what a triage of deploy + tls + logs + events reads."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            jobs = {"deploy": pool.submit(deploy.collect, s, self.target, probes=3, timeout=5.0),
                    "tls": pool.submit(tls.collect, s, self.target, port=self.tls_port,
                                       connect_host="127.0.0.1", timeout=5.0),
                    "logs": pool.submit(self.logs, s),
                    "events": pool.submit(self.events, s)}
            return {k: f.result() for k, f in jobs.items()}

    # the chains: requests that must wait for one another, each measured alone
    def chains(self) -> dict[str, Callable[[Session], Any]]:
        fly = lambda s: FlyMachines(s, APP, token=TOKEN,  # noqa: E731
                                    base_url=self.target.env("FLY_FLAPS_BASE_URL"))
        return {
            "logs pages (next_token)": self.logs,
            "/health probes ×5": lambda s: probe_chain(s, self.target, 5, 5.0),
            "/health probes ×3": lambda s: probe_chain(s, self.target, 3, 5.0),
            "certificates → detail → handshake": lambda s: (
                fly(s).list_certificates(), fly(s).certificate(HOSTS[0]),
                tls.probe_tls(s, HOSTS[0], self.tls_port, connect_host="127.0.0.1")),
        }

    # ------------------------------------------------------------------ analysis
    @staticmethod
    def analyse(data: dict[str, Any], now: datetime) -> None:
        """What the notebooks do with the data: frames, findings and charts (PNG)."""
        import io

        limits = dict(THRESHOLDS)
        findings, tables = deploy.assess(data["deploy"], APP, now, limits, "http://x/health")
        figs = [deploy.releases_chart(tables["releases"], tables["machines"])]
        tf, verdicts = tls.assess(data["tls"], APP, now)
        tls.plan_actions(verdicts, APP)
        served = tls.served_frame(data["tls"])
        tls.details_frame(data["tls"])
        figs.append(tls.expiry_chart(served, 30, 7))
        logs = logs_frame(data["logs"])
        logs.groupby([logs["timestamp"].dt.floor("min"), "instance"]).size()
        events_frame(data["events"])
        for fig in figs:
            fig.savefig(io.BytesIO(), format="png", dpi=100, bbox_inches="tight")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def median(fn: Callable[[], Any], repeat: int) -> float:
    return statistics.median(timed(fn)[0] for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    latency = args.latency_ms / 1000
    if args.serve:
        serve(latency)
        return 0
    with ExitStack() as stack:
        b = Bench(stack, latency)
        b.health(b.session())  # warm up imports, connections and matplotlib
        b.analyse(b.everything(b.session()), NOW)

        print(f"injected latency {args.latency_ms:.0f} ms per request; median of {args.repeat}")
        chains = {name: median(lambda fn=fn: fn(b.session()), args.repeat)
                  for name, fn in b.chains().items()}
        for name, secs in chains.items():
            print(f"  chain alone  {name:<36} {secs * 1000:7.0f} ms")
        health_chain = chains["/health probes ×5"]
        wall = median(lambda: b.health(b.session()), args.repeat)
        print(f"health collection            {wall * 1000:7.0f} ms   "
              f"ratio to slowest chain {wall / health_chain:.2f}×  (target ≤ 1.5×)")
        slowest = max(chains.values())
        wall = median(lambda: b.everything(b.session()), args.repeat)
        print(f"every-Fly-source collection  {wall * 1000:7.0f} ms   "
              f"ratio to slowest chain {wall / slowest:.2f}×  (target ≤ 1.5×)")

        recorded = b.session()
        data = b.everything(recorded)
        raw = recorded.raw_dir
        requests = len(list(raw.glob("*/*.json")))

        def replay() -> None:
            s = b.session("replay", raw)
            b.analyse(b.everything(s), s.now())

        # Interleaved, so that load from anything else on the machine hits both alike.
        alone_t, again_t = [], []
        for _ in range(args.repeat):
            alone_t.append(timed(lambda: b.analyse(data, NOW))[0])
            again_t.append(timed(replay)[0])
        alone, again = statistics.median(alone_t), statistics.median(again_t)
        print(f"analysis alone               {alone * 1000:7.0f} ms")
        print(f"replay ({requests} exchanges) + analysis {again * 1000:7.0f} ms   "
              f"ratio {again / alone:.2f}×  (target ≤ 1.2×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
