"""``python -m opslib``: a thin layer that turns library errors into clean messages.

Exit codes (``run``): 0 completed, 1 the runbook failed to execute (evidence saved), 2 bad
usage or configuration (nothing written), 3 severity reached ``--fail-on``.
``verify``: 0 all evidence intact, 1 problems found, 2 bad usage.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import NoReturn

from .errors import OpsError, UsageError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep its message short
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m opslib",
                description="Executable runbook notebooks for Fly.io + Supabase.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run a runbook and pack its evidence")
    r.add_argument("runbook", help="runbook name (see: list)")
    r.add_argument("--app", default="", help="Fly app name (implies --target live)")
    r.add_argument("--app-url", default="", help="app base URL (default https://<app>.fly.dev)")
    r.add_argument("--incident", default="", help="incident id grouping the evidence")
    r.add_argument("--target", default="", help="demo | live | replay:PATH")
    r.add_argument("--scenario", default="", help="demo scenario (demo target only)")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="runbook parameter (repeatable)")
    r.add_argument("--fail-on", default="never", choices=["never", "warning", "critical"],
                   help="exit 3 when severity reaches this level (default never); "
                        "`unknown` (a check could not run) reaches warning and critical")
    r.add_argument("--allow-unknown", action="store_true",
                   help="with --fail-on: do not fail on `unknown` (checks that could not run)")
    r.add_argument("--timeout", type=float, default=None,
                   help="execution deadline in seconds (default 600)")
    r.add_argument("--apply", action="store_true", help="apply the planned actions")
    r.add_argument("--confirm", default="", help="plan digest from a previous run's plan")
    r.add_argument("--reports", default="", help="evidence folder (default reports/)")
    r.add_argument("--replay-unverified", action="store_true",
                   help="replay a run whose evidence does not verify (the new run says so)")
    r.add_argument("--json", action="store_true", help="print findings.json instead of a summary")

    sub.add_parser("list", help="list runbooks and their parameters")
    sub.add_parser("keygen", help="make an Ed25519 key pair for signing evidence")

    sv = sub.add_parser("serve", help="receive Alertmanager webhooks and run the runbooks")
    sv.add_argument("--listen", default="127.0.0.1:9095", help="HOST:PORT (default 127.0.0.1:9095)")
    sv.add_argument("--workers", type=int, default=None, help="runs at once (default: cores)")
    sv.add_argument("--max-queue", type=int, default=100, help="alerts waiting at most")
    sv.add_argument("--cooldown", type=float, default=300.0,
                    help="seconds before the same group's runbook runs again")
    sv.add_argument("--runbook-map", default="", metavar="FILE",
                    help="YAML: alert name -> runbook or list of runbooks (default: each "
                         "alert's runbook annotation)")

    da = sub.add_parser("demo-alert", help="the alert flow on a demo incident: alert → serve → "
                                           "run → evidence → notification (all local)")
    da.add_argument("--scenario", default="oom-loop",
                    help="demo incident: oom-loop (default) | connection-leak")

    al = sub.add_parser("alerts", help="Prometheus alerting rules from the seed's thresholds")
    al_sub = al.add_subparsers(dest="alerts_command", required=True, parser_class=_Parser)
    ar = al_sub.add_parser("rules", help="write the rules file (stdout, or --out FILE)")
    ar.add_argument("--app", required=True, help="Fly app name the rules watch")
    ar.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="thresholds={…} or promql={…}, as for the runbooks")
    ar.add_argument("--out", default="-", help="file to write (default: stdout)")

    v = sub.add_parser("verify", help="verify a run, an incident or all of reports/")
    v.add_argument("path", nargs="?", default="", help="default: reports/")
    v.add_argument("--json", action="store_true", help="machine-readable report")

    lg = sub.add_parser("logs", help="analyse Fly logs (file, .gz or - for stdin)",
                        add_help=False)
    lg.add_argument("rest", nargs=argparse.REMAINDER)

    from .review.cli import register  # review, compare, triage: their own module

    register(sub)
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from .catalog import parse_assignments
    from .runner import DEFAULT_TIMEOUT_S, RunRequest, execute, install_sigterm_handler, prepare, summary_text

    req = RunRequest(
        runbook=args.runbook, app=args.app, app_url=args.app_url, incident=args.incident,
        target=args.target, scenario=args.scenario, params=parse_assignments(args.param),
        fail_on=args.fail_on, allow_unknown=args.allow_unknown, timeout=args.timeout if args.timeout is not None else DEFAULT_TIMEOUT_S,
        reports=Path(args.reports) if args.reports else None, apply=args.apply,
        confirm=args.confirm, replay_unverified=args.replay_unverified)
    prep = prepare(req)
    install_sigterm_handler()
    outcome = execute(prep)
    if args.json:
        import json

        print(json.dumps(outcome.findings, indent=2))
    else:
        print(summary_text(outcome))
    return outcome.exit_code


def _cmd_list(args: argparse.Namespace) -> int:
    from .catalog import runbooks
    from .context import demo_scenarios

    books = runbooks()
    if not books:
        print("no runbooks found", file=sys.stderr)
        return 1
    for rb in books.values():
        scen = demo_scenarios(rb.name)
        print(f"{rb.name}: {rb.title}" + (f"  [demo scenarios: {', '.join(scen)}]" if scen else ""))
        for p in rb.params:
            print(f"    {p.name:<18} {p.type:<6} {p.default!r:<16} {p.description}")
        print()
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    import json

    from .evidence import verify_tree
    from .runner import reports_dir

    path = Path(args.path) if args.path else reports_dir()
    results = verify_tree(path)
    if args.json:
        print(json.dumps([{"path": str(r.path), "ok": r.ok, "files_checked": r.files_checked,
                           "trust": r.trust, "chained": r.chained,
                           "problems": [vars(p) for p in r.problems]} for r in results], indent=2))
    else:
        from .runner import plain

        if not results:
            print(f"no runs found under {plain(path)}")
        for r in results:  # names from the evidence cannot forge lines (plain: no newlines)
            level = r.trust + ("; chain intact" if r.chained and r.ok else
                               "; not chained" if not r.chained else "")
            print(f"{'OK  ' if r.ok else 'FAIL'} {plain(r.path)} ({r.files_checked} files "
                  f"checked; {level})")
            for problem in r.problems:
                print(f"     {plain(problem)}")
        bad = sum(not r.ok for r in results)
        if results:
            print(f"{len(results) - bad}/{len(results)} runs verified" +
                  (f"; {bad} with problems" if bad else ""))
    return 1 if any(not r.ok for r in results) else 0


def _cmd_alerts(args: argparse.Namespace) -> int:
    from .alerts import rules_yaml
    from .catalog import parse_assignments
    from .config import check_app
    from .errors import UsageError
    from .evidence import atomic_write_text

    check_app(args.app)
    params = parse_assignments(args.param)
    unknown = set(params) - {"thresholds", "promql", "rate"}
    if unknown:
        raise UsageError(f"unknown parameter(s) for alert rules: {', '.join(sorted(unknown))}",
                         hint="alerts rules takes thresholds={…}, promql={…} and rate=5m")
    import json

    for name in ("thresholds", "promql"):
        value = params.get(name)
        if isinstance(value, str):
            try:
                params[name] = value = json.loads(value)
            except ValueError:
                value = None
        if name in params and not isinstance(value, dict):
            raise UsageError(f"{name} must be a JSON object, e.g. {name}='{{\"memory_pct\": "
                             "[60, 85]}'" if name == "thresholds" else
                             f"{name} must be a JSON object of query name to PromQL")
    text = rules_yaml(args.app, overrides=params.get("thresholds"),
                      promql=params.get("promql"), rate=str(params.get("rate") or "5m"))
    if args.out == "-":
        print(text, end="")
    else:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out} (check it: promtool check rules {args.out})")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from .runner import install_sigterm_handler, reports_dir
    from .serve import TOKEN_ENV, Receiver, make_server

    if args.workers is not None and args.workers < 1 or args.max_queue < 1:
        from .errors import UsageError

        raise UsageError("--workers and --max-queue must be 1 or more")
    from pathlib import Path

    from .serve import load_runbook_map

    mapping = load_runbook_map(Path(args.runbook_map)) if args.runbook_map else None
    receiver = Receiver(reports_dir(), token=os.environ.get(TOKEN_ENV, ""),
                        workers=args.workers, max_queue=args.max_queue,
                        cooldown_s=args.cooldown, runbook_map=mapping)
    server = make_server(receiver, args.listen)
    install_sigterm_handler()
    print(f"opslib serve: POST http://{args.listen}/alertmanager (GET /healthz, /runs); "
          f"{receiver.workers} worker(s); state in {receiver.state_path}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        receiver.stop(kill_runs=True)
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    from .signing import KEY_ENV, TRUSTED_ENV, generate

    private, public = generate()
    print("# keep the first line secret (a CI secret, your shell's keychain); share the second")
    print(f"export {KEY_ENV}={private}")
    print(f"export {TRUSTED_ENV}={public}")
    return 0


def _cmd_demo_alert(args: argparse.Namespace) -> int:
    from .demo.alert import demo_alert
    from .runner import reports_dir

    return demo_alert(args.scenario, reports_dir())


_FAST_EXIT = False  # see exit_now


def _cmd_logs(args: argparse.Namespace) -> int:
    global _FAST_EXIT
    from .logscan.cli import main as logs_main

    _FAST_EXIT = True
    return logs_main(args.rest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "logs":  # its own parser, its own --help
        args = argparse.Namespace(command="logs", rest=argv[1:])
    else:
        args = _parser().parse_args(argv)
    handler = getattr(args, "handler", None) or {"run": _cmd_run, "list": _cmd_list,
                                                 "verify": _cmd_verify, "logs": _cmd_logs,
                                                 "keygen": _cmd_keygen,
                                                 "alerts": _cmd_alerts,
                                                 "serve": _cmd_serve,
                                                 "demo-alert": _cmd_demo_alert}[args.command]
    try:
        return handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def exit_now(status: int, *, fast: bool | None = None) -> NoReturn:
    """End a ``python -m`` command with ``status``.

    Nothing is left to collect when a command ends, but the interpreter's last cycle
    collection still walks every object; after the log engine has loaded numba's compiler
    tables that walk alone adds ~0.3 s to each command. Freezing skips it (files and
    streams are still closed and flushed as usual).

    A command that leaves nothing for the interpreter to finish (``logs``: it only reads and
    prints; ``fast`` defaults to whether it ran) ends at once after flushing its output:
    tearing down pandas' and numba's modules costs another ~0.15 s per run, which a script
    that reads logs in a loop pays every time. A flush that fails (the reader of a pipe went
    away) exits 120, as the interpreter does.
    """
    if fast if fast is not None else _FAST_EXIT:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            os._exit(120)
        os._exit(status)
    gc.freeze()
    sys.exit(status)
