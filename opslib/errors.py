"""One error tree for opslib.

    OpsError                      base: every error opslib raises on purpose
    ├── UsageError                bad parameters, unknown runbook, unwritable reports/ (exit 2)
    ├── NotConfigured             a source needs an environment variable that is not set
    ├── ReplayMissError           a replay capture does not hold the request asked for
    ├── EvidenceError             an evidence folder cannot be read or written
    ├── ApplyRefused              a plan cannot be applied here (not a live target)
    └── SourceError               a call to an outside system failed (carries system, target)
        ├── SourceUnavailable     timeout, refused, DNS, TLS, reset: nothing usable came back
        ├── SourceAuthError       401/403: the token is missing, wrong or lacks permission
        ├── SourceNotFound        404: the app / machine / project does not exist
        ├── SourceRateLimited     429 after the allowed retries
        ├── SourceProtocolError   the answer was not what the platform documents (bad JSON…)
        └── PrometheusQueryError  Prometheus answered its error envelope (kind: errorType)

An unhealthy service is data, not an exception: an HTTP 503 from the app under diagnosis is a
result. These errors are for calls that could not produce a usable answer.

Every error survives a ``pickle`` round trip (papermill and multiprocessing carry exceptions
between processes): the state is the instance's attributes, not the constructor's arguments.
"""
from __future__ import annotations

from typing import Any


def _rebuild(cls: type, args: tuple, state: dict[str, Any]) -> "OpsError":
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class OpsError(Exception):
    """Base of every error opslib raises on purpose.

    ``hint`` says what to do about it, in words an on-call engineer can act on.
    """

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    def __reduce__(self) -> tuple:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))

    def _render_traceback_(self) -> list[str]:
        """In a notebook, show the message and hint, not a Python traceback."""
        return [f"{type(self).__name__}: {self}"]


class UsageError(OpsError):
    """The command line or a parameter is wrong; nothing was run or written."""


class WebhookRejected(OpsError):
    """An alert webhook request that was refused: ``status`` is the HTTP answer (401, 400,
    413, 503), the message says why; nothing was run."""

    def __init__(self, message: str, *, status: int = 400, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.status = status


class NotConfigured(OpsError):
    """A source cannot run because configuration (an environment variable) is missing."""

    def __init__(self, source: str, needs: str, *, hint: str = "") -> None:
        super().__init__(f"{source}: not configured (set {needs})", hint=hint)
        self.source = source
        self.needs = needs


class ReplayMissError(OpsError):
    """A replay capture does not hold the request the runbook asked for."""


class EvidenceError(OpsError):
    """An evidence folder or file cannot be read or written as required."""


class ApplyRefused(OpsError):
    """A plan cannot be applied here (e.g. not a live target): nothing was changed."""


class SourceError(OpsError):
    """A call to an outside system failed.

    Attributes: ``system`` (e.g. ``fly-machines``), ``target`` (URL or host), ``status`` (HTTP
    status when there was one), ``kind`` (a short machine-readable cause, e.g. ``timeout``).
    """

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        system: str,
        target: str = "",
        status: int | None = None,
        kind: str | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.system = system
        self.target = target
        self.status = status
        if kind:
            self.kind = kind

    def to_dict(self) -> dict:
        return {
            "type": type(self).__name__,
            "kind": self.kind,
            "system": self.system,
            "target": self.target,
            "status": self.status,
            "message": self.message,
            "hint": self.hint,
        }


class SourceUnavailable(SourceError):
    kind = "unavailable"


class SourceAuthError(SourceError):
    kind = "auth"


class SourceNotFound(SourceError):
    kind = "not_found"


class SourceRateLimited(SourceError):
    kind = "rate_limited"


class SourceProtocolError(SourceError):
    kind = "protocol"


class PrometheusQueryError(SourceError):
    """The server answered with the Prometheus error envelope; ``kind`` is its ``errorType``."""

    kind = "query"


SOURCE_ERRORS = {
    cls.__name__: cls
    for cls in (SourceError, SourceUnavailable, SourceAuthError, SourceNotFound,
                SourceRateLimited, SourceProtocolError, PrometheusQueryError)
}


def source_error_from_dict(data: dict) -> SourceError:
    """Rebuild a recorded SourceError (replay re-raises what the live run saw)."""
    cls = SOURCE_ERRORS.get(data.get("type", ""), SourceError)
    return cls(
        data.get("message", ""),
        system=data.get("system", ""),
        target=data.get("target", ""),
        status=data.get("status"),
        kind=data.get("kind"),
        hint=data.get("hint", ""),
    )
