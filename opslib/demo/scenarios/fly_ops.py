"""Demo scenarios of the scale-down and tls runbooks."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

from ...times import iso
from ..certs import failed_handshake, handshake
from ..world import APP, ENV, REF_NOW, World, ago, exit_events, json_response, machine

M = [("148ed193b95089", "silent-sun-1234", "iad"), ("6e82d4ec1f4918", "quiet-lake-9012", "iad"),
     ("3d8d9e1fe67e89", "misty-river-5678", "ams")]


# --------------------------------------------------------------------------- scale-down
def _fleet(state: str) -> list[dict]:
    out = []
    for mid, name, region in M:
        events = (exit_events(at=ago(minutes=25), code=0, oom=False, restarts=0, requested=True)
                  if state == "stopped" else None)
        m = machine(mid, name=name, region=region, state=state, memory_mb=512,
                    checks="passing" if state == "started" else "critical",
                    check_output="HTTP GET http://172.19.0.2:8080/health: 200 OK"
                    if state == "started" else "machine is stopped", events=events)
        # An explicit service: autostart off, so a stopped machine stays stopped.
        m["config"]["services"] = [{"protocol": "tcp", "internal_port": 8080, "autostart": False,
                                    "autostop": "off",
                                    "ports": [{"port": 80, "handlers": ["http"]},
                                              {"port": 443, "handlers": ["tls", "http"]}]}]
        out.append(m)
    return out


def _scale_world(state: str) -> World:
    w = World(configured={"FLY_API_TOKEN"}, environ=ENV)
    machines = _fleet(state)
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines",
            lambda r: json_response(200, machines, latency_ms=90))
    return w


def _scale_collect(session, target):  # noqa: ANN001
    from ...runbooks import scale_down

    return scale_down.collect(session, target)


def scale_running() -> tuple[World, Callable[..., Any]]:
    return _scale_world("started"), _scale_collect


def scale_stopped() -> tuple[World, Callable[..., Any]]:
    return _scale_world("stopped"), _scale_collect


# --------------------------------------------------------------------------- tls
WWW, API_HOST, FLY_HOST = "www.demo-shop.com", "api.demo-shop.com", f"{APP}.fly.dev"


def _detail(host: str, *, status: str = "active", configured: bool = True,
            expires: Any = None, errors: list[dict] | None = None,
            created: Any = None) -> dict:
    """A CertificateDetail (reference §1 "Certificates")."""
    certs = [] if expires is None else [{
        "source": "fly", "status": "active", "created_at": iso(expires - timedelta(days=90)),
        "expires_at": iso(expires), "issuer": None,
        "issued": [{"type": "ecdsa", "expires_at": iso(expires),
                    "certificate_authority": "lets_encrypt"},
                   {"type": "rsa", "expires_at": iso(expires),
                    "certificate_authority": "lets_encrypt"}]}]
    ok = status == "active" and not errors
    return {"hostname": host, "configured": configured, "acme_requested": True,
            "status": status, "rate_limited_until": None, "certificates": certs,
            "validation": {"dns_configured": configured, "alpn_configured": ok,
                           "http_configured": ok, "ownership_txt_configured": ok},
            "dns_requirements": {"a": ["66.241.124.37"], "aaaa": ["2a09:8280:1::3c:9f1e"],
                                 "cname": f"{APP}.fly.dev",
                                 "acme_challenge": {"name": f"_acme-challenge.{host}",
                                                    "target": f"{host}.7kq2.flydns.net"}},
            "validation_errors": errors or [],
            "created_at": iso(created or ago(days=200)), "updated_at": iso(ago(hours=6))}


def _summary(d: dict) -> dict:
    v = d["validation"]
    return {"hostname": d["hostname"], "status": d["status"], "configured": d["configured"],
            "acme_dns_configured": v["dns_configured"], "acme_alpn_configured": v["alpn_configured"],
            "acme_http_configured": v["http_configured"],
            "ownership_txt_configured": v["ownership_txt_configured"],
            "acme_requested": d["acme_requested"], "has_custom_certificate": False,
            "has_fly_certificate": bool(d["certificates"]), "created_at": d["created_at"],
            "updated_at": d["updated_at"]}


def _tls_world(details: list[dict], handshakes: dict[str, dict]) -> World:
    w = World(configured={"FLY_API_TOKEN"}, environ=ENV)
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/certificates", lambda r: json_response(
        200, {"certificates": [_summary(d) for d in details], "next_cursor": None,
              "total_count": len(details)}, latency_ms=110))
    for d in details:
        w.route("fly-machines", "GET", f"/v1/apps/{APP}/certificates/{d['hostname']}",
                (lambda body: lambda r: json_response(200, body, latency_ms=95))(d))
    for host, rec in handshakes.items():
        w.answer("tls", "tls", f"{host}:443", rec)
    return w


def _tls_collect(session, target):  # noqa: ANN001
    from ...runbooks import tls

    return tls.collect(session, target, port=443, timeout=5.0)


def tls_expiring() -> tuple[World, Callable[..., Any]]:
    """www's certificate expires in 5 days because renewal cannot validate: its
    _acme-challenge CNAME was deleted; api was added a day ago and DNS never pointed at Fly."""
    www_expiry = REF_NOW + timedelta(days=5, hours=2)
    details = [
        _detail(WWW, expires=www_expiry, errors=[{
            "code": "ACME_CHALLENGE_CNAME_MISSING",
            "message": f"_acme-challenge.{WWW} has no CNAME record",
            "remediation": f"add CNAME _acme-challenge.{WWW} → {WWW}.7kq2.flydns.net",
            "timestamp": iso(ago(hours=6))}]),
        _detail(API_HOST, status="pending_validation", configured=False, created=ago(days=1),
                errors=[{"code": "DNS_NOT_CONFIGURED",
                         "message": f"{API_HOST} resolves to 203.0.113.40, not to this app",
                         "remediation": f"point {API_HOST} at {APP}.fly.dev (CNAME) or its IPs",
                         "timestamp": iso(ago(hours=1))}]),
    ]
    handshakes = {
        FLY_HOST: handshake(FLY_HOST, ["*.fly.dev", "fly.dev"], not_after=REF_NOW + timedelta(days=61)),
        WWW: handshake(WWW, [WWW, "demo-shop.com"], not_after=www_expiry),
        API_HOST: failed_handshake(API_HOST, "handshake",
                                   "[SSL: TLSV1_ALERT_INTERNAL_ERROR] tlsv1 alert internal error "
                                   "(_ssl.c:1006)"),
    }
    return _tls_world(details, handshakes), _tls_collect


def tls_healthy() -> tuple[World, Callable[..., Any]]:
    www_expiry, api_expiry = REF_NOW + timedelta(days=71), REF_NOW + timedelta(days=54)
    details = [_detail(WWW, expires=www_expiry), _detail(API_HOST, expires=api_expiry)]
    handshakes = {
        FLY_HOST: handshake(FLY_HOST, ["*.fly.dev", "fly.dev"], not_after=REF_NOW + timedelta(days=61)),
        WWW: handshake(WWW, [WWW, "demo-shop.com"], not_after=www_expiry),
        API_HOST: handshake(API_HOST, [API_HOST], not_after=api_expiry),
    }
    return _tls_world(details, handshakes), _tls_collect


SCENARIOS = {
    "scale-down": {
        "running": ("three started machines (iad×2, ams×1, shared-cpu-1x 512 MB): plan to zero",
                    scale_running),
        "scaled-down": ("the same three machines stopped after a scale-down: restore with "
                        "direction=up", scale_stopped),
    },
    "tls": {
        "expiring": ("www's certificate expires in 5 days (ACME challenge CNAME gone); api "
                     "stuck in pending_validation, DNS not pointing at Fly", tls_expiring),
        "healthy": ("every hostname trusted, 54+ days left, Fly certificates active",
                    tls_healthy),
    },
}
