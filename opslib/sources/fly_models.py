"""Fly.io's JSON, parsed once at the source boundary into frozen dataclasses.

The shapes are fly-go's (``machine_types.go``: ``Machine``, ``MachineEvent``,
``MachineExitEvent``, ``MachineCheckStatus``, ``MachineGuest``, ``MachineService``;
``flaps_certificates.go``; the releases REST/GraphQL shapes of reference §1). Unknown fields
are tolerated and missing ones get neutral values, so a platform that adds a field does not
break a diagnosis. Runbooks read attributes, never raw JSON; the raw ``config`` is kept on
:class:`Machine` only because a machine update must send the *full* config back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Mapping

from ..times import iso, parse_time

# Fly adds this check to every machine deployed by the old bluegreen path; it says nothing.
IGNORED_CHECK_PREFIX = "bg_deployments_compat"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip().lstrip("vV")) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _lower_keys(value: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in _dict(value).items()}


def _bool(value: Any, default: bool | None = None) -> bool | None:
    return bool(value) if value is not None else default


# --------------------------------------------------------------------------- machines
@dataclass(frozen=True)
class ExitInfo:
    """``MachineExitEvent``: how the machine's main process ended."""

    exit_code: int | None = None
    oom_killed: bool = False
    requested_stop: bool = False
    restarting: bool | None = None
    signal: int | None = None
    exited_at: datetime | None = None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> "ExitInfo":
        return cls(exit_code=_int(raw.get("exit_code")), oom_killed=bool(raw.get("oom_killed")),
                   requested_stop=bool(raw.get("requested_stop")),
                   restarting=_bool(raw.get("restarting")), signal=_int(raw.get("signal")),
                   exited_at=parse_time(raw.get("exited_at")))


def _exit_of(request: Mapping[str, Any]) -> ExitInfo | None:
    """Exit data wherever flyd put it: fly-go checks ``request.MonitorEvent.exit_event``
    first, then ``request.exit_event``; key casing varies, so keys are matched case-blind."""
    lowered = _lower_keys(request)
    inner = _lower_keys(lowered.get("monitorevent")).get("exit_event")
    for candidate in (inner, lowered.get("exit_event")):
        if isinstance(candidate, dict):
            return ExitInfo.from_api(candidate)
    return None


@dataclass(frozen=True)
class MachineEvent:
    """``MachineEvent``: ``timestamp`` is epoch milliseconds in the API."""

    type: str = ""
    status: str = ""
    source: str = ""
    timestamp: datetime | None = None
    exit: ExitInfo | None = None
    restart_count: int = 0
    id: str = ""
    request: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: Any) -> "MachineEvent | None":
        if not isinstance(raw, dict):
            return None
        request = _dict(raw.get("request"))
        return cls(type=str(raw.get("type") or ""), status=str(raw.get("status") or ""),
                   source=str(raw.get("source") or ""), timestamp=parse_time(raw.get("timestamp")),
                   exit=_exit_of(request), restart_count=_int(request.get("restart_count")) or 0,
                   id=str(raw.get("id") or ""), request=request)


def parse_events(raw: Any) -> tuple[MachineEvent, ...]:
    """Events as the API lists them (newest first), unreadable entries dropped."""
    return tuple(e for e in (MachineEvent.from_api(x) for x in _list(raw)) if e is not None)


@dataclass(frozen=True)
class Check:
    """``MachineCheckStatus``: ``status`` is ``passing``, ``warning`` or ``critical``."""

    name: str = ""
    status: str = ""
    output: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class Guest:
    cpu_kind: str = ""
    cpus: int | None = None
    memory_mb: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Service:
    """A service of the machine config: what Fly's proxy does with idle machines."""

    protocol: str = ""
    internal_port: int | None = None
    autostart: bool = True  # Fly's default when the field is absent
    autostop: str = "off"  # off | stop | suspend (true means stop, false off)
    min_machines_running: int = 0

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> "Service":
        stop = raw.get("autostop")
        autostop = ("stop" if stop is True else "off" if stop in (False, None, "")
                    else str(stop))
        return cls(protocol=str(raw.get("protocol") or ""),
                   internal_port=_int(raw.get("internal_port")),
                   autostart=bool(raw.get("autostart", True)), autostop=autostop,
                   min_machines_running=_int(raw.get("min_machines_running")) or 0)


@dataclass(frozen=True)
class Machine:
    """One machine of ``GET /v1/apps/{app}/machines`` (or ``…/machines/{id}``)."""

    id: str
    name: str = ""
    state: str = ""
    region: str = ""
    instance_id: str = ""
    host_status: str = "ok"
    image: str = ""
    guest: Guest = field(default_factory=Guest)
    metadata: Mapping[str, str] = field(default_factory=dict)
    services: tuple[Service, ...] = ()
    checks: tuple[Check, ...] = ()
    events: tuple[MachineEvent, ...] = ()
    created_at: str = ""
    updated_at: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    partial_config: bool = False  # host not ok: only ``incomplete_config`` is known

    @classmethod
    def from_api(cls, raw: Any) -> "Machine":
        raw = _dict(raw)
        partial = not isinstance(raw.get("config"), dict)
        config = _dict(raw.get("config")) or _dict(raw.get("incomplete_config"))
        guest = _dict(config.get("guest"))
        checks = tuple(Check(str(c.get("name") or ""), str(c.get("status") or ""),
                             str(c.get("output") or ""), str(c.get("updated_at") or ""))
                       for c in _list(raw.get("checks")) if isinstance(c, dict)
                       and not str(c.get("name") or "").startswith(IGNORED_CHECK_PREFIX))
        return cls(
            id=str(raw.get("id") or ""), name=str(raw.get("name") or ""),
            state=str(raw.get("state") or ""), region=str(raw.get("region") or ""),
            instance_id=str(raw.get("instance_id") or ""),
            host_status=str(raw.get("host_status") or "ok"), image=str(config.get("image") or ""),
            guest=Guest(str(guest.get("cpu_kind") or ""), _int(guest.get("cpus")),
                        _int(guest.get("memory_mb"))),
            metadata={str(k): str(v) for k, v in _dict(config.get("metadata")).items()},
            services=tuple(Service.from_api(s) for s in _list(config.get("services"))
                           if isinstance(s, dict)),
            checks=checks, events=parse_events(raw.get("events")),
            created_at=str(raw.get("created_at") or ""), updated_at=str(raw.get("updated_at") or ""),
            config=config, partial_config=partial)

    @property
    def release_version(self) -> str:
        """``fly_release_version`` of the machine's config metadata, e.g. ``42``."""
        return self.metadata.get("fly_release_version", "")

    @property
    def process_group(self) -> str:
        return self.metadata.get("fly_process_group", "")

    @property
    def last_exit(self) -> ExitInfo | None:
        """The newest exit among the machine's recent events."""
        return next((e.exit for e in self.events if e.exit is not None), None)

    @property
    def restart_count(self) -> int:
        return max((e.restart_count for e in self.events if e.exit is not None), default=0)

    @property
    def autostart(self) -> bool:
        """Whether Fly's proxy starts this machine on a request (any service with autostart)."""
        return any(s.autostart for s in self.services)

    @property
    def auto_stopped(self) -> bool:
        """Stopped (or suspended) by Fly's proxy for want of traffic, to be started by it on
        the next request: a service has autostop and autostart on, and the machine's last exit
        was a requested stop (not a crash or an OOM kill). Not a fault."""
        if self.state not in ("stopped", "suspended"):
            return False
        if not any(s.autostop != "off" and s.autostart for s in self.services):
            return False
        last = self.last_exit
        return last is None or (last.requested_stop and not last.oom_killed)

    def checks_with(self, status: str) -> list[Check]:
        return [c for c in self.checks if c.status == status]


def parse_machines(raw: Any) -> list[Machine]:
    return [Machine.from_api(m) for m in _list(raw) if isinstance(m, dict)]


# --------------------------------------------------------------------------- certificates
@dataclass(frozen=True)
class CertificateSummary:
    """An item of ``GET /v1/apps/{app}/certificates``."""

    hostname: str
    status: str = ""
    configured: bool | None = None
    acme_requested: bool | None = None
    dns_configured: bool | None = None
    alpn_configured: bool | None = None
    http_configured: bool | None = None
    ownership_txt_configured: bool | None = None
    has_fly_certificate: bool | None = None
    has_custom_certificate: bool | None = None
    created_at: str = ""
    updated_at: str = ""

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> "CertificateSummary":
        validation = _dict(raw.get("validation"))

        def flag(summary_key: str, detail_key: str) -> bool | None:
            return _bool(raw.get(summary_key, validation.get(detail_key)))

        return cls(hostname=str(raw.get("hostname") or ""), status=str(raw.get("status") or ""),
                   configured=_bool(raw.get("configured")),
                   acme_requested=_bool(raw.get("acme_requested")),
                   dns_configured=flag("acme_dns_configured", "dns_configured"),
                   alpn_configured=flag("acme_alpn_configured", "alpn_configured"),
                   http_configured=flag("acme_http_configured", "http_configured"),
                   ownership_txt_configured=flag("ownership_txt_configured",
                                                 "ownership_txt_configured"),
                   has_fly_certificate=_bool(raw.get("has_fly_certificate")),
                   has_custom_certificate=_bool(raw.get("has_custom_certificate")),
                   created_at=str(raw.get("created_at") or ""),
                   updated_at=str(raw.get("updated_at") or ""))


@dataclass(frozen=True)
class IssuedCertificate:
    source: str = ""  # fly | custom
    status: str = ""
    expires_at: str = ""
    issuer: str = ""


@dataclass(frozen=True)
class DnsRequirements:
    """The DNS records Fly asks for (``dns_requirements``)."""

    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    cname: str = ""
    acme_challenge: tuple[str, str] = ("", "")  # name, target
    ownership: tuple[str, str] = ("", "")  # name, value (app's, else org's)

    @classmethod
    def from_api(cls, raw: Any) -> "DnsRequirements":
        raw = _dict(raw)
        ch, own = _dict(raw.get("acme_challenge")), _dict(raw.get("ownership"))
        return cls(a=tuple(str(x) for x in _list(raw.get("a"))),
                   aaaa=tuple(str(x) for x in _list(raw.get("aaaa"))),
                   cname=str(raw.get("cname") or ""),
                   acme_challenge=(str(ch.get("name") or ""), str(ch.get("target") or "")),
                   ownership=(str(own.get("name") or ""),
                              str(own.get("app_value") or own.get("org_value") or "")))


@dataclass(frozen=True)
class ValidationError:
    """One of ``validation_errors``: what Fly could not verify, and what to do about it."""

    code: str = ""
    message: str = ""
    remediation: str = ""
    timestamp: str = ""


@dataclass(frozen=True)
class Certificate(CertificateSummary):
    """The detail of ``GET /v1/apps/{app}/certificates/{hostname}``."""

    rate_limited_until: str = ""
    certificates: tuple[IssuedCertificate, ...] = ()
    dns_requirements: DnsRequirements = field(default_factory=DnsRequirements)
    validation_errors: tuple[ValidationError, ...] = ()

    @classmethod
    def from_api(cls, raw: Any) -> "Certificate":
        raw = _dict(raw)
        summary = asdict(CertificateSummary.from_api(raw))
        return cls(**summary, rate_limited_until=str(raw.get("rate_limited_until") or ""),
                   certificates=tuple(
                       IssuedCertificate(str(c.get("source") or ""), str(c.get("status") or ""),
                                         str(c.get("expires_at") or ""), str(c.get("issuer") or ""))
                       for c in _list(raw.get("certificates")) if isinstance(c, dict)),
                   dns_requirements=DnsRequirements.from_api(raw.get("dns_requirements")),
                   validation_errors=tuple(
                       ValidationError(str(e.get("code") or ""), str(e.get("message") or ""),
                                       str(e.get("remediation") or ""),
                                       str(e.get("timestamp") or ""))
                       for e in _list(raw.get("validation_errors")) if isinstance(e, dict)))

    @property
    def expires_at(self) -> str:
        """The latest expiry among the issued certificates ('' when none is issued)."""
        dates = sorted(c.expires_at for c in self.certificates if c.expires_at)
        return dates[-1] if dates else ""


# --------------------------------------------------------------------------- releases
@dataclass(frozen=True)
class Release:
    """A release from REST (``/api/v1/apps/{app}/releases``) or GraphQL, in one shape."""

    version: int | None
    id: str = ""
    status: str = ""  # running | complete | interrupted | failed
    stable: bool = False
    in_progress: bool = False
    image_ref: str = ""
    created_at: str | None = None
    user: str = ""
    strategy: str = ""
    description: str = ""
    source: str = "rest"  # rest | graphql

    @classmethod
    def from_api(cls, raw: Mapping[str, Any], source: str) -> "Release":
        status = str(raw.get("status") or "")
        created = parse_time(raw.get("created_at", raw.get("createdAt")))
        in_progress = raw.get("in_progress", raw.get("inProgress"))
        user = raw.get("user")
        if isinstance(user, dict):
            user = user.get("email") or user.get("name") or user.get("id")
        return cls(version=_int(raw.get("version")), id=str(raw.get("id") or ""), status=status,
                   stable=bool(raw.get("stable")),
                   in_progress=bool(in_progress) if in_progress is not None else status == "running",
                   image_ref=str(raw.get("image_ref", raw.get("imageRef")) or ""),
                   created_at=iso(created) if created else None, user=str(user or ""),
                   strategy=str(raw.get("strategy") or raw.get("deploymentStrategy") or ""),
                   description=str(raw.get("description") or raw.get("reason") or ""),
                   source=source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
