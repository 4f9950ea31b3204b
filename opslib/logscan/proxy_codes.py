"""Fly proxy error codes, their meanings (Fly's "Error codes and troubleshooting" page) and
the runbook that handles each. The one table every other module reads.

The proxy logs ``[PC01] instance refused connection. …``; routing errors nest the last
upstream error: ``[PR04] could not find a good candidate within 40 attempts at load
balancing. last error: [PC01] …``. Older proxies printed the same texts without codes, so
``LEGACY_TEXTS`` maps well-known wordings to their code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ProxyCode:
    """One proxy error code."""

    code: str
    title: str
    meaning: str
    runbook: str
    severity: str  # ok | warning | critical, for a handful of occurrences


def _c(code: str, title: str, meaning: str, runbook: str = "not-responding", severity: str = "warning") -> ProxyCode:
    return ProxyCode(code, title, meaning, runbook, severity)


_TABLE = [
    _c("PP01", "Failed to set TCP socket options", "Internal to the Fly proxy, not your app.", severity="ok"),
    _c("PU01", "Failed HTTP/2 handshake", "The h2c handshake to a machine failed (only apps that accept h2c)."),
    _c("PU02", "Failed to complete HTTP request to instance", "A request to a machine started but could not be completed: the app closed the connection, crashed or restarted mid-request."),
    _c("PU03", "Unreachable worker host", "The host the machine lives on became unreachable (Fly-internal)."),
    _c("PU04", "Could not build HTTP request", "The proxy could not build the upstream request."),
    _c("PC01", "Machine refused connection on port", "Nothing listens on the service's internal port: the app is down, restarting, on another port, or bound to 127.0.0.1 instead of 0.0.0.0/::.", severity="critical"),
    _c("PC02", "Connection refused", "A connection to an unspecified port was refused: is the app listening on 0.0.0.0 or ::?", severity="critical"),
    _c("PC03", "Connection reset", "The app reset the TCP connection prematurely; check application logs."),
    _c("PC04", "Connection aborted", "The app aborted the TCP connection prematurely; check application logs."),
    _c("PC05", "Connection timed out", "Connections to the app time out: overloaded (concurrency limits), or CPU/memory/IO exhausted.", severity="critical"),
    _c("PC06", "Unidentified I/O error", "An unidentified I/O error on the connection to a machine."),
    _c("PC07", "Connection retries exhausted", "The proxy gave up connecting to a machine after too many retries.", severity="critical"),
    _c("PC08", "TCP timeout couldn't be set", "Fly-internal: failed to set the TCP timeout upstream.", severity="ok"),
    _c("PT01", "Exceeded TLS handshake rate limit", "An IP range exceeded the TLS handshake rate limit.", runbook="tls"),
    _c("PT02", "Exceeded rate limit for SNI", "TLS handshakes for one SNI exceeded the rate limit.", runbook="tls"),
    _c("PT03", "TLS handshake canceled", "A TLS handshake was canceled prematurely.", runbook="tls", severity="ok"),
    _c("PT04", "TLS handshake failed", "A TLS handshake failed.", runbook="tls"),
    _c("PT05", "No valid TLS certificate for SNI", "No certificate exists for the requested hostname: add it with `fly certs add` and check DNS validation.", runbook="tls", severity="critical"),
    _c("PT06", "No valid TLS certificate", "No certificate was found for the connection.", runbook="tls", severity="critical"),
    _c("PT07", "TLS handshake I/O error", "A TLS handshake failed on an I/O error.", runbook="tls", severity="ok"),
    _c("PT08", "TLS handshake timed out", "A TLS handshake timed out.", runbook="tls"),
    _c("PT09", "Internal TLS error", "Fly-internal TLS error.", runbook="tls"),
    _c("PM01", "Machines API error", "The Machines API returned an error while the proxy started/stopped a machine."),
    _c("PM02", "Machine wake internal error", "Fly-internal error while starting a stopped machine."),
    _c("PM03", "Machine wake timeout", "Starting a stopped machine timed out.", severity="critical"),
    _c("PM04", "Machine wake parsing error", "A parsing error prevented starting a stopped machine."),
    _c("PM05", "Machine connection failed", "The proxy failed to connect to a machine.", severity="critical"),
    _c("PM06", "Missing app name", "Fly-internal: the Machines API call lacked an app name."),
    _c("PM07", "Machine state change failed", "The proxy could not stop or start a machine."),
    _c("PM08", "Non-startable machine state", "A machine could not be started from its current state (stopping, destroyed…).", severity="critical"),
    _c("PM09", "Unknown machine state", "The proxy does not recognise the machine's state."),
    _c("PM10", "Machine start canceled", "Fly-internal: a machine start was canceled."),
    _c("PM11", "Machine recently stopped", "An edge proxy routed to a machine stopped within 5 minutes; the request is re-routed (usually harmless).", severity="ok"),
    _c("PA01", "Replay/retry buffer exceeded", "The request body grew past the 10 MB replay buffer, so it cannot be retried or replayed."),
    _c("PA02", "Excess fly-replay headers", "The app returned fly-replay more than 10 times for one request."),
    _c("PA03", "Invalid fly-replay", "The app returned an invalid fly-replay header."),
    _c("PA04", "Replay target app not found", "fly-replay targeted an app that does not exist."),
    _c("PA05", "Unauthorized replay target app", "fly-replay targeted an app in another organization."),
    _c("PE01", "Replay source app not found", "Fly-internal fly-replay error (source app)."),
    _c("PE02", "Replay source organization not found", "Fly-internal fly-replay error (source organization)."),
    _c("PR01", "No healthy machines", "No healthy machine to route to: machines stopped after exhausting restarts, failing deploys, immediate strategy, or all at their concurrency limit.", severity="critical"),
    _c("PR02", "Machine not found", "The target machine disappeared between edge and worker proxies (common during bluegreen deploys)."),
    _c("PR03", "No candidate machines found after retries", "Up to 90 attempts found no machine that could take the request; the last error says why.", severity="critical"),
    _c("PR04", "No candidate machines found after retries", "Like PR03, without the previous error.", severity="critical"),
    _c("PR05", "Statics retrieval failed", "The proxy could not fetch a static file from the Tigris bucket."),
    _c("PL01", "Bypassed connection concurrency limit", "Machines are over their connection concurrency limit: too much load, or exhausted pools to the database.", severity="warning"),
    _c("PL02", "Bypassed request concurrency limit", "Machines are over their request concurrency limit.", severity="warning"),
]

PROXY_CODES: dict[str, ProxyCode] = {c.code: c for c in _TABLE}

# Wordings older proxies printed without a code, mapped to the code they became.
LEGACY_TEXTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"instance refused connection", re.I), "PC01"),
    (re.compile(r"timed out while connecting to (?:your )?instance", re.I), "PC05"),
    (re.compile(r"could not find a good candidate within \d+ attempts", re.I), "PR04"),
    (re.compile(r"no known healthy instances found for route", re.I), "PR01"),
    (re.compile(r"could not complete HTTP request to instance", re.I), "PU02"),
    # "could not send/make HTTP request to instance: connection error: timed out" (2023 proxies)
    (re.compile(r"could not (?:send|make) HTTP request to instance: connection error: timed out", re.I), "PC05"),
    (re.compile(r"could not (?:send|make) HTTP request to instance", re.I), "PU02"),
    (re.compile(r"no valid tls certificate was found for SNI", re.I), "PT05"),
    (re.compile(r"could not wake up machine due to a timeout", re.I), "PM03"),
)

CODE_RE = re.compile(r"\[(P[A-Z]\d\d)\]")


def codes_in(message: str) -> list[str]:
    """Proxy codes in a message, outermost first (``[PR04] … last error: [PC01]`` → PR04, PC01).

    Falls back to the legacy wordings when no bracketed code is present.
    """
    found = [c for c in CODE_RE.findall(message) if c in PROXY_CODES]
    if found:
        return found
    for rx, code in LEGACY_TEXTS:
        if rx.search(message):
            return [code]
    return []


def root_code(codes: list[str]) -> str:
    """The code that says what actually went wrong: the innermost ``last error``."""
    return codes[-1]
