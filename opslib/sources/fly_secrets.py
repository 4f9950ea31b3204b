"""Fly app secrets on the Machines API host: names and digests only, never values.

* ``GET /v1/apps/{app}/secrets`` → ``{"secrets": [{"name", "digest", "created_at",
  "updated_at"}]}`` (reference §1 "Secrets"). ``show_secrets`` is never sent, and a ``value``
  field, should one ever come back, is dropped before anything else sees it.
* The ``secrets.set`` action (``fly secrets set NAME=… -a app``) posts
  ``POST /v1/apps/{app}/secrets`` with ``{"values": {"NAME": "value"}}``, as fly-go's
  ``flaps.UpdateAppSecrets`` does (``flaps/flaps_secrets.go``, ``UpdateAppSecretsRequest``;
  the answer is ``{"secrets": [{"name","digest"}], "version"}``).

Values come ONLY from this process's environment at apply time. An action's ``params`` hold
the names; its ``basis`` holds :func:`value_digest` of each value, so the plan digest changes
when a value changes, and the executor refuses a value that differs from the planned one.
The session records request headers (redacted) but never request bodies.
"""
from __future__ import annotations

import hashlib
import shlex
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd

from ..actions import Action
from ..errors import NotConfigured, OpsError
from ..reads import Source, require
from ..session import Session
from ..times import parse_time
from .fly import TOKEN_ENV, TOKEN_HINT, auth_header
from .http import call_json

if TYPE_CHECKING:  # pragma: no cover
    from ..actions import ApplyContext
    from ..config import Target

SYSTEM = "fly-machines"
SECRET_COLUMNS = ["name", "digest", "created_at", "updated_at"]


def value_digest(app: str, name: str, value: str) -> str | None:
    """A short fingerprint of a secret value for the plan (None when the value is unset).

    Salted with the app and name so equal values in different places do not look alike; 16 hex
    digits of SHA-256, enough to notice a change, useless for recovering a high-entropy key.
    """
    if not value:
        return None
    return hashlib.sha256(f"{app}\0{name}\0{value}".encode()).hexdigest()[:16]


class FlySecrets:
    """List (and, only through a confirmed plan, set) the secrets of one Fly app."""

    def __init__(self, session: Session, app: str, *, token: str, base_url: str) -> None:
        if session.mode != "replay" and not token:
            raise NotConfigured("Fly secrets API", TOKEN_ENV, hint=TOKEN_HINT)
        self.session, self.app = session, app
        headers = {"Authorization": auth_header(token)} if token else {}
        self.client = session.client(SYSTEM, base_url=base_url.rstrip("/") + "/v1",
                                     headers=headers)

    def list(self) -> pd.DataFrame:
        """Names and digests of the app's secrets (columns: SECRET_COLUMNS), sorted by name."""
        body = call_json(self.session, self.client, "GET", f"/apps/{quote(self.app)}/secrets",
                         system=SYSTEM, op="list_secrets")
        items = body.get("secrets") if isinstance(body, dict) else body
        rows = [{"name": s.get("name", ""), "digest": s.get("digest", ""),
                 "created_at": parse_time(s.get("created_at")),
                 "updated_at": parse_time(s.get("updated_at"))}
                for s in items or [] if isinstance(s, dict)]
        df = pd.DataFrame(rows, columns=SECRET_COLUMNS)
        return df.sort_values("name").reset_index(drop=True) if not df.empty else df

    # Mutating: only ever called by the executor of a confirmed plan.
    def update(self, values: dict[str, str]) -> Any:
        body = call_json(self.session, self.client, "POST", f"/apps/{quote(self.app)}/secrets",
                         system=SYSTEM, op="set_secrets", idempotent=False,
                         json={"values": values})
        if isinstance(body, dict):  # keep names, digests and the version only
            return {"version": body.get("version"),
                    "secrets": [{"name": s.get("name"), "digest": s.get("digest")}
                                for s in body.get("secrets") or [] if isinstance(s, dict)]}
        return body


def connect(session: Session, target: "Target") -> FlySecrets:
    token, = require(session, target, "Fly secrets API", TOKEN_ENV, hint=TOKEN_HINT)
    return FlySecrets(session, target.app, token=token, base_url=target.env("FLY_FLAPS_BASE_URL"))


SECRETS = Source("Fly secrets API", connect)


def env_digests(session: Session, app: str, names: list[str],
                environ_get: Any) -> dict[str, str | None]:
    """:func:`value_digest` of each name's value in our environment, recorded (the digests,
    never the values) so a replay plans exactly what the live run planned."""
    out: dict[str, str | None] = {}
    for name in names:
        out[name] = session.capture("env", "environment", f"digest:{name}",
                                    lambda n=name: value_digest(app, n, environ_get(n)),
                                    op=f"digest of ${name}", payload=name)
    return out


def set_action(app: str, names: list[str], digests: dict[str, str | None],
               present: dict[str, str], reason: str) -> Action:
    """Stage ``names`` on the app from the environment, then deploy them: two steps, as
    ``fly secrets set --stage`` and ``fly secrets deploy`` (``fly secrets set`` alone does
    both). The API call sets them *staged*: machines load them only when deployed.

    ``present`` maps names already on the app to their Fly digest (part of the basis, so a
    change made meanwhile by someone else makes the plan stale).
    """
    names = sorted(names)
    return Action(
        id="secrets-set-" + "-".join(n.lower() for n in names), kind="secrets.set",
        title=(f"set {', '.join(names)} on {app} from this environment and deploy them (the "
               "machines restart with them)"),
        # NAME="$NAME": the value comes from the engineer's shell, never printed
        command=("fly secrets set " + " ".join(n + '="$' + n + '"' for n in names)
                 + f" -a {shlex.quote(app)}"),
        api={"method": "POST", "path": f"/v1/apps/{app}/secrets",
             "body": {"values": {n: f"<${n} from the environment>" for n in names}}},
        params={"names": names},
        basis={"value_digests": {n: digests.get(n) for n in names},
               "fly_digests": {n: present.get(n) for n in names}},
        reason=reason + ". Applied as flyctl does it: staged, then every machine updated "
               "with the new secrets version (min_secrets_version), so none keeps the old ones")


def apply_set(ctx: "ApplyContext", action: Action) -> Any:
    names = list(action.params["names"])
    values: dict[str, str] = {}
    for name in names:
        value = ctx.target.env(name)
        if not value:
            raise OpsError(f"${name} is not set in this environment: nothing was sent",
                           hint="export the value, run again and confirm the new plan")
        if value_digest(ctx.target.app, name, value) != action.basis["value_digests"].get(name):
            raise OpsError(f"${name} changed since the plan was made: nothing was sent",
                           hint="run again and confirm the new plan")
        values[name] = value
    staged = FlySecrets(ctx.session, ctx.target.app, token=ctx.target.env("FLY_API_TOKEN"),
                        base_url=ctx.target.env("FLY_FLAPS_BASE_URL")).update(values)
    return deploy(ctx, staged)


def deploy(ctx: "ApplyContext", staged: dict[str, Any]) -> dict[str, Any]:
    """``fly secrets deploy``: each machine updated (its config unchanged) with
    ``min_secrets_version`` — the version the set answered — so it boots with the new
    secrets; started machines are waited for, stopped ones stay stopped and load them on
    their next start. The result says, per machine, which version it was pinned to."""
    from .fly import FlyMachines, update_in_place

    version = staged.get("version") if isinstance(staged, dict) else None
    if not isinstance(version, int):
        raise OpsError("the secrets were staged, but the API gave no secrets version to deploy",
                       hint=f"run `fly secrets deploy -a {ctx.target.app}` by hand")
    fly = FlyMachines(ctx.session, ctx.target.app, token=ctx.target.env("FLY_API_TOKEN"),
                      base_url=ctx.target.env("FLY_FLAPS_BASE_URL"))
    deployed = []
    for m in fly.list_machines():
        if m.state in ("destroyed", "destroying"):
            continue
        r = update_in_place(fly, m.id, {}, min_secrets_version=version)
        deployed.append({"machine_id": m.id, "min_secrets_version": version,
                         "state": r.get("state", m.state)})
    return {**staged, "deployed": deployed}