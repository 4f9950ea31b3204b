"""``logs`` command: ``logs PATH|- [--format …] [--since … --until …] [--json]``.

A thin layer over `analyze`: library errors become one-line messages on stderr with exit
status 2; a successful analysis exits 0 whatever it found (findings carry the severity).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import NoReturn, TextIO

from ..errors import UsageError
from .analysis import analyze
from .signal_findings import findings_from_logs
from .inputs import FORMATS

USAGE_EXAMPLES = """examples:
  fly logs -a my-app --no-tail > fly.log && python -m opslib logs fly.log
  fly logs -a my-app --no-tail | python -m opslib logs -
  python -m opslib logs shipper.ndjson.gz --since 2024-05-28T12:00:00Z --until 2024-05-28T13:00:00Z --json
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so the top-level CLI can document it)."""
    p = _Parser(
        prog="python -m opslib logs",
        description="Analyse Fly.io logs: what the seed's greps would count (errors, auth, database), "
        "the incident signals behind them (OOM kills, proxy errors, pool exhaustion, JWT, TLS …) "
        "with the runbook for each, per-minute series and top message templates.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", metavar="PATH|-", help="log file (.gz read transparently) or - for standard input")
    p.add_argument("--format", default="auto", choices=FORMATS,
                   help="input layout (default: auto-detect from the first lines)")
    p.add_argument("--since", help="keep lines at or after this time: ISO 8601 or a duration before now (15m, 2h, 1d)")
    p.add_argument("--until", help="keep lines before this time (same forms as --since)")
    p.add_argument("--json", action="store_true", help="print the documented JSON summary (schema 1) instead of text")
    p.add_argument("--examples", type=int, default=3, help="example lines per signal (default: 3)")
    p.add_argument("--top", type=int, default=20, help="message templates to list (default: 20)")
    p.add_argument("--no-per-minute", action="store_true", help="leave the per-minute series out of --json")
    return p


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command; ``argv`` excludes the word ``logs``. Returns the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        err.write(f"{parser.format_usage()}error: {exc}\n(run with --help for the options and examples)\n")
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        report = analyze(args.path, fmt=args.format, since=args.since, until=args.until,
                         examples=args.examples, top_templates=args.top)
    except OSError as exc:
        err.write(f"error: {exc.strerror or exc}\n")
        return 2
    except ValueError as exc:
        err.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
    try:
        if args.json:
            d = report.to_dict(per_minute=not args.no_per_minute)
            d["findings"] = findings_from_logs(report)
            out.write(json.dumps(d, indent=2, ensure_ascii=False) + "\n")
        else:
            out.write(report.summary_text() + "\n")
        out.flush()
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: not an error of the analysis
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the interpreter's flush at exit
    return 0
