"""SSL/TLS Certificate Issues (seed "Issue 4"): what each hostname serves, and why Fly has
not fixed it.

Two sides of every hostname, fetched at once:

* **served** — a real TLS handshake (:mod:`opslib.sources.tls`): expiry, whether the chain
  verifies and why not, whether the certificate covers the name;
* **Fly** — the app's certificate records (``fly certs list`` / ``show``): status
  (``active``, ``pending_validation``, ``pending_ownership``…), whether DNS points at Fly,
  the validation errors and the DNS records Fly asks for.

Remediation follows the seed: ``fly certs check`` (re-run DNS validation and issuance) for a
certificate that is pending or nearing expiry, and remove + add (``cert.readd``) for one that
is already broken (expired, untrusted, wrong name). A hostname that is not configured on the
app is a finding that says how to add it.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
from matplotlib.figure import Figure

from ..actions import Action, cert_action
from ..assess.fly_api import error_finding
from ..config import Target
from ..errors import SourceError
from ..findings import Finding
from ..reads import Read, Readings, gather, measured
from ..session import Session
from ..sources import fly
from ..sources.fly import certificates_frame
from ..sources.fly_models import Certificate, DnsRequirements
from ..sources.tls import TLSResult, probe_tls, tls_frame
from ..times import parse_time

PENDING = ("pending_validation", "pending_ownership")
FLY_SUFFIXES = (".fly.dev",)  # Fly's own wildcard certificate: no per-app record
DETAIL_COLUMNS = ["hostname", "status", "configured", "rate_limited_until", "fly_expires_at",
                  "validation_errors", "dns_required"]


@dataclass(frozen=True)
class TLSData:
    hostnames: list[str]
    requested: list[str]  # hostnames the user asked about
    readings: Readings

    def _by_host(self, prefix: str, measured: bool = True) -> dict[str, Any]:
        return {k[len(prefix):]: (r.value if measured else r.error)
                for k, r in self.readings.items()
                if k.startswith(prefix) and (r.measured if measured else r.failed)}

    @property
    def served(self) -> dict[str, TLSResult]:
        return self._by_host("served:")

    certificates = measured()  # CertificateList | None

    @property
    def certificates_error(self) -> SourceError | None:
        r = self.readings.get("certificates")
        return r.error if r is not None else None

    @property
    def details(self) -> dict[str, Certificate]:
        return self._by_host("detail:")

    @property
    def detail_errors(self) -> dict[str, SourceError]:
        return self._by_host("detail:", measured=False)


def _is_fly_host(host: str) -> bool:
    return host.endswith(FLY_SUFFIXES)


def _host_reads(session: Session, hosts: list[str], ports: dict[str, int], connect_host: str,
                timeout: float) -> list[Read]:
    reads = [Read(f"served:{h}", f"the certificate {h}:{ports[h]} serves (TLS handshake)",
                  lambda h=h: probe_tls(session, h, ports[h], connect_host=connect_host,
                                        timeout=timeout)) for h in hosts]
    return reads + [Read(f"detail:{h}", f"Fly's certificate record for {h} (`fly certs show`)",
                         lambda api, h=h: api.certificate(h), fly.MACHINES)
                    for h in hosts if not _is_fly_host(h)]


def collect(session: Session, target: Target, *, hostnames: list[str] | None = None,
            port: int = 443, connect_host: str = "", timeout: float = 5.0) -> TLSData:
    """TLS probes and Fly certificate records for ``hostnames`` (default: the app URL's host
    and every hostname with a certificate on the app): the names known at the start and the
    certificate list at once, then the names learnt from the list."""
    requested = [h.strip().lower() for h in hostnames or [] if h.strip()]
    url = urlsplit(target.app_url)
    app_host = url.hostname or ""
    known = requested or ([app_host] if app_host else [])
    # the app URL's own port (https://host:8443) for its host; ``port`` for every other name
    ports: dict[str, int] = defaultdict(lambda: port)
    if app_host and url.port and port == 443:
        ports[app_host] = url.port
    readings = gather(session, target, [
        Read("certificates", "the app's certificates (`fly certs list`)",
             lambda api: api.list_certificates(), fly.MACHINES),
        *_host_reads(session, known, ports, connect_host, timeout)])
    listed = readings.value("certificates")
    if listed is not None and not requested:
        extra = [h for h in listed.hostnames if h and h not in known]
        if extra:
            readings = readings | gather(session, target,
                                         _host_reads(session, extra, ports, connect_host, timeout))
            known = known + extra
    return TLSData(known, requested, readings)


# --------------------------------------------------------------------------- analysis
def details_frame(data: TLSData) -> pd.DataFrame:
    """Fly's view of each hostname: status, DNS, validation errors, what DNS must say."""
    details = data.details
    rows = [{"hostname": host, "status": d.status, "configured": d.configured,
             "rate_limited_until": d.rate_limited_until or None,
             "fly_expires_at": d.expires_at or None,
             "validation_errors": "; ".join(e.message for e in d.validation_errors),
             "dns_required": "; ".join(dns_requirements(host, d.dns_requirements))}
            for host in data.hostnames if (d := details.get(host)) is not None]
    return pd.DataFrame(rows, columns=DETAIL_COLUMNS)


def dns_requirements(host: str, req: DnsRequirements) -> list[str]:
    """The DNS records Fly asks for, as lines an engineer can type into a DNS console."""
    out = []
    addresses = [f"A {a}" for a in req.a] + [f"AAAA {a}" for a in req.aaaa]
    if req.cname:
        out.append(f"CNAME {host} → {req.cname}"
                   + (f" (or {', '.join(addresses)})" if addresses else ""))
    elif addresses:
        out.append(f"{host}: {', '.join(addresses)}")
    name, target = req.acme_challenge
    if name and target:
        out.append(f"CNAME {name} → {target}")
    name, value = req.ownership
    if name and value:
        out.append(f"TXT {name} = {value}")
    return out


@dataclass
class HostVerdict:
    """What is wrong with one hostname, and what the plan should do about it."""

    host: str
    served_problem: str = ""  # expired | untrusted | name | unreachable | expiring | ""
    fly_problem: str = ""  # pending | not_configured | rate_limited | missing | ""
    action: str = ""  # cert.check | cert.readd | ""
    basis: dict[str, Any] = field(default_factory=dict)


def assess(data: TLSData, app: str, now: datetime, *, warn_days: float = 30,
           critical_days: float = 7) -> tuple[list[Finding], list[HostVerdict]]:
    """Findings per hostname from the served certificate and Fly's record of it."""
    out: list[Finding] = []
    verdicts: list[HostVerdict] = []
    if data.certificates_error is not None:
        out.append(error_finding("tls-fly-error", data.certificates_error, app,
                                 "could not list the app's certificates"))
    if data.certificates is not None and data.certificates.truncated:
        out.append(Finding("tls-list-truncated", "info",
                           f"certificate list truncated after {data.certificates.pages} pages",
                           "only the first pages were checked; pass hostnames=[…] to check "
                           "specific names"))
    for host in data.hostnames:
        v = HostVerdict(host)
        res = data.served.get(host)
        detail = data.details.get(host)
        err = data.detail_errors.get(host)
        fly_managed = detail is not None
        ev = _served_evidence(res)
        if res is not None:
            v.basis = {"served_sha256": res.sha256, "served_not_after":
                       res.not_after.isoformat() if res.not_after else None}
        # -- served certificate
        if res is None:
            pass
        elif res.error:
            v.served_problem = "unreachable"
            out.append(Finding(
                f"tls-unreachable-{host}", "critical",
                f"{host}:{res.port}: no TLS handshake ({res.error})",
                f"{res.error_detail}. If Fly has no certificate for this name yet its proxy "
                "refuses the handshake; otherwise DNS may not point at Fly "
                f"(`fly ips list -a {app}`).", ev, source="tls"))
        else:
            if res.chain_verified is False:
                expired = res.days_left is not None and res.days_left < 0
                v.served_problem = "expired" if expired else "untrusted"
                title = (f"{host}: certificate EXPIRED {abs(res.days_left):.0f} day(s) ago"
                         if expired else f"{host}: browsers reject the certificate "
                                         f"({res.verify_error})")
                out.append(Finding(f"tls-{v.served_problem}-{host}", "critical", title,
                                   "users see a security warning"
                                   + ("; self-signed: not issued by a public CA"
                                      if res.self_signed else ""), ev, source="tls"))
            if res.hostname_match is False:
                v.served_problem = v.served_problem or "name"
                out.append(Finding(f"tls-name-{host}", "critical",
                                   f"{host}: the certificate served does not cover this name",
                                   f"it covers {', '.join(res.sans) or res.common_name}; "
                                   f"add the name: `fly certs add {host} -a {app}`", ev,
                                   source="tls"))
            if not v.served_problem and res.days_left is not None:
                days = res.days_left
                if days <= warn_days:
                    v.served_problem = "expiring"
                    crit = days <= critical_days
                    out.append(Finding(
                        f"tls-expiring-{host}", "critical" if crit else "warning",
                        f"{host}: certificate expires in {days:.0f} day" + ("(s)" if crit else "s"),
                        (f"on {res.not_after:%Y-%m-%d %H:%M} UTC; Let's Encrypt certificates "
                         "renew ~30 days ahead, so renewal is failing") if crit else
                        f"on {res.not_after:%Y-%m-%d} UTC (warning at {warn_days:.0f} days)",
                        ev, source="tls"))
                else:
                    out.append(Finding(f"tls-ok-{host}", "ok",
                                       f"{host}: valid for {days:.0f} more days, trusted, "
                                       f"name matches", f"issuer {res.issuer}", ev,
                                       source="tls"))
        # -- Fly's record (when even the list failed, that one finding says why)
        if err is not None and data.certificates_error is not None:
            pass
        elif err is not None:
            if err.kind == "not_found":
                v.fly_problem = "missing"
                asked = host in data.requested
                out.append(Finding(
                    f"tls-not-configured-{host}", "warning" if asked else "unknown",
                    f"{host} is not configured on app {app}",
                    f"Fly has no certificate record for it ({err.message}). Check the "
                    f"spelling; to serve it from this app: `fly certs add {host} -a {app}`, "
                    "then create the DNS records it prints.", source="fly-machines"))
            else:
                out.append(error_finding(f"tls-fly-error-{host}", err, app,
                                         f"could not read Fly's certificate for {host}"))
        elif fly_managed:
            out.extend(_fly_findings(v, detail, app, now))
        verdicts.append(_decide(v, fly_managed))
    return out, verdicts


def _served_evidence(res: TLSResult | None) -> list[str]:
    if res is None:
        return []
    if res.error:
        return [f"handshake with {res.host}:{res.port}: {res.error} {res.error_detail}"[:300]]
    return [f"subject {res.subject}; SANs {', '.join(res.sans) or '(none)'}",
            f"issuer {res.issuer}",
            f"valid {res.not_before:%Y-%m-%d} → {res.not_after:%Y-%m-%d %H:%M} UTC",
            f"chain: {'verified' if res.chain_verified else 'NOT verified: ' + res.verify_error}",
            f"{res.tls_version}, HTTP {res.http_status if res.http_status is not None else res.http_error}",
            f"sha256 {res.sha256}"]


def _fly_findings(v: HostVerdict, detail: Certificate, app: str,
                  now: datetime) -> list[Finding]:
    host = v.host
    out = []
    status = detail.status
    errors = detail.validation_errors
    err_lines = [f"{e.code}: {e.message}" + (f" — {e.remediation}" if e.remediation else "")
                 for e in errors]
    dns = dns_requirements(host, detail.dns_requirements)
    v.basis.update(fly_status=status, configured=detail.configured)
    if status in PENDING:
        v.fly_problem = "pending"
        what = "DNS validation" if status == "pending_validation" else "proof of ownership"
        out.append(Finding(
            f"tls-fly-pending-{host}", "critical" if v.served_problem else "warning",
            f"{host}: Fly certificate stuck awaiting {what} ({status})",
            "Let's Encrypt cannot issue until DNS says what Fly asks for; set the records "
            f"below, then `fly certs check {host} -a {app}`",
            err_lines + [f"set: {d}" for d in dns], source="fly-machines", escalate=2,
            escalate_reason="DNS records must change: an infrastructure change for the "
                            "Platform Team"))
    elif detail.configured is False:
        v.fly_problem = "not_configured"
        out.append(Finding(
            f"tls-fly-dns-{host}", "warning", f"{host}: DNS does not point at Fly yet",
            "Fly reports the hostname as not configured", err_lines + [f"set: {d}" for d in dns],
            source="fly-machines", escalate=2,
            escalate_reason="DNS records must change: an infrastructure change for the "
                            "Platform Team"))
    elif errors:
        v.fly_problem = "validation_errors"
        out.append(Finding(
            f"tls-fly-validation-{host}", "critical" if v.served_problem else "warning",
            f"{host}: Fly reports {len(errors)} validation error(s) (status {status})",
            "renewal needs the validation to pass: fix DNS (records in the evidence and in "
            "the table above), then "
            f"`fly certs check {host} -a {app}`", err_lines + [f"set: {d}" for d in dns],
            source="fly-machines", escalate=2,
            escalate_reason="DNS records must change: an infrastructure change for the "
                            "Platform Team"))
    limited = parse_time(detail.rate_limited_until)
    if limited and limited > now:
        v.fly_problem = v.fly_problem or "rate_limited"
        out.append(Finding(f"tls-fly-rate-limited-{host}", "warning",
                           f"{host}: Let's Encrypt rate limit until {limited:%Y-%m-%d %H:%M} UTC",
                           "re-adding the certificate now would fail; wait for the limit",
                           source="fly-machines"))
    if not out and status == "active" and not v.served_problem:
        out.append(Finding(f"tls-fly-ok-{host}", "ok", f"{host}: Fly certificate active",
                           "DNS validated, certificate issued", source="fly-machines"))
    elif not out and status and status != "active":
        out.append(Finding(f"tls-fly-status-{host}", "info",
                           f"{host}: Fly certificate status {status!r} (flyctl shows "
                           "'Issuing...')", source="fly-machines"))
    return out


def _decide(v: HostVerdict, fly_managed: bool) -> HostVerdict:
    """The seed's remedy for this hostname, if any (only for names on the app)."""
    if not fly_managed or v.fly_problem == "rate_limited":
        return v
    if v.served_problem in ("expired", "untrusted", "name") and v.fly_problem != "pending":
        v.action = "cert.readd"  # already broken for users: a fresh order costs nothing
    elif v.served_problem in ("expiring", "unreachable") or v.fly_problem in (
            "pending", "not_configured", "validation_errors"):
        v.action = "cert.check"
    return v


def plan_actions(verdicts: list[HostVerdict], app: str) -> list[Action]:
    """``cert.check`` / ``cert.readd`` per hostname, as :func:`assess` decided."""
    actions = []
    for v in verdicts:
        if v.action == "cert.check":
            title = f"re-run DNS validation and issuance for {v.host}"
            reason = {"pending": "Fly is waiting for DNS validation",
                      "not_configured": "DNS did not point at Fly when last checked",
                      "validation_errors": "validation is failing"}.get(
                v.fly_problem, "the served certificate is close to expiry")
        elif v.action == "cert.readd":
            title = f"remove and re-add the certificate of {v.host}"
            reason = (f"the served certificate is {v.served_problem}: a fresh Let's Encrypt "
                      "order (users already see an error, so removal costs nothing)")
        else:
            continue
        actions.append(cert_action(v.action, app, v.host, basis=v.basis, title=title,
                                   reason=reason))
    return actions


# --------------------------------------------------------------------------- chart
def expiry_chart(served: pd.DataFrame, warn_days: float, critical_days: float) -> Figure:
    """Days left per hostname against the warning and critical lines."""
    fig = Figure(figsize=(7, 0.6 + 0.5 * max(len(served), 1)))
    ax = fig.subplots()
    ok = served[served["days_left"].notna()] if not served.empty else served
    colours = ["#c62828" if (d <= critical_days or v is False or m is False) else
               "#ef6c00" if d <= warn_days else "#2e7d32"
               for d, v, m in zip(ok.get("days_left", []), ok.get("chain_verified", []),
                                  ok.get("hostname_match", []))]
    ax.barh(list(ok.get("host", [])), list(ok.get("days_left", [])), color=colours)
    ax.axvline(warn_days, color="#ef6c00", linestyle="--", linewidth=1,
               label=f"warning {warn_days:.0f} d")
    ax.axvline(critical_days, color="#c62828", linestyle="--", linewidth=1,
               label=f"critical {critical_days:.0f} d")
    ax.axvline(0, color="black", linewidth=0.8)
    failed = served[served["days_left"].isna()] if not served.empty else served
    for host in failed.get("host", []):
        ax.barh([host], [0.5], color="#9e9e9e")
        ax.annotate("no certificate read", (0.5, host), xytext=(4, -3),
                    textcoords="offset points", fontsize=8)
    ax.set_xlabel("days until the served certificate expires")
    ax.set_title("served certificates")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2)
    return fig


def served_frame(data: TLSData) -> pd.DataFrame:
    return tls_frame([data.served[h] for h in data.hostnames if h in data.served])


def fly_frame(data: TLSData) -> pd.DataFrame:
    return certificates_frame(data.certificates.certificates) if data.certificates else pd.DataFrame()
