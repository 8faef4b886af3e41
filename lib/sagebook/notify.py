"""Telling people how a run went: apprise's URLs (Slack, Teams, email, SNS, json:// webhooks).

Nobody learns that a run ended or stalled unless they watch it. The job config's `notify`
URLs are told on the events `notify_on` names; the message names the run, its status,
duration, cost, failure reason (masked as every text of a record is) and the record.

A URL holds its service's token (a Slack webhook's path, an SNS key), and a config is shared
and recorded: such a URL written out is refused at launch, and `$NAME` in its place is read
from the environment of the process that sends; only the name is recorded, so `attach`
(another process, maybe another person) can send too. A URL without a credential (a webhook
on the team's network) may be written out; it is recorded as written and only the launch
sends to it.

A notification never fails a run: a service that refuses it, or does not answer within
SEND_SECONDS, is written into the record's `notifications` and the run goes on. apprise is
imported only here, when a run has URLs to tell: its 0.2–0.4 s of import and ~0.6 s of
plugin loading stay off every other command.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

from .config import LaunchConfig
from .errors import ConfigError, StoreError
from .record import TERMINAL, Record, now
from .secrets import redact

SEND_SECONDS = 10.0  # one URL's whole send, whatever the service does
SOCKET_SECONDS = 5.0  # apprise's connect and read timeouts, within SEND_SECONDS
DEFAULT_EVENTS = ("end", "stall")  # what an unset notify_on means
VARIABLE = re.compile(r"^\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")  # `$SLACK_URL`


def resolve(url: str) -> str | None:
    """The URL itself, or a `$NAME`'s value in this environment (None when it is unset)."""
    named = VARIABLE.match(url)
    return os.environ.get(named.group("name")) if named else url


def check(cfg: LaunchConfig) -> None:
    """A URL apprise cannot read is refused at its key before the launch, not at the end."""
    if not cfg.job.notify:
        return
    import apprise  # reason: 0.2–0.4 s of import, paid only by configs that notify

    problems = []
    for index, url in enumerate(cfg.job.notify):
        value = resolve(url)
        if value is None:
            problems.append(cfg.problem("job", ("notify", index),
                                        f"{url} is not set in this environment"))
        elif (plugin := apprise.Apprise.instantiate(value)) is None:
            problems.append(cfg.problem("job", ("notify", index), "not a notification URL "
                                        "apprise knows (e.g. json://host/path, slack://…): "
                                        f"{redact(value)!r}"))
        elif value == url and _carries_secret(url, plugin):
            problems.append(cfg.problem("job", ("notify", index), "this URL carries a token or "
                                        "password, and the job config is recorded with every "
                                        "run: put the URL in an environment variable and "
                                        "write its name here (notify: [$TEAM_SLACK])"))
    if problems:
        raise ConfigError(problems)


def _carries_secret(url: str, plugin: Any) -> bool:
    """Whether a URL written out in a config holds a credential: apprise's own view (its
    privacy form cuts the service's tokens and passwords), or a shape `redact` masks."""
    return plugin.url(privacy=True) != plugin.url(privacy=False) or redact(url) != url


def recorded(job: Any) -> dict[str, Any]:
    """The watch settings for the manifest, URLs as apprise shows them (tokens and passwords
    cut): `{"watch": {...}}`, or nothing when neither stalls nor notifications are asked for."""
    if job.stall_timeout is None and not job.notify:
        return {}
    watch: dict[str, Any] = {"stall_timeout": job.stall_timeout,
                             "stall_action": job.stall_action}
    if job.notify:
        import apprise  # reason: as in `check`

        watch.update(notify=[url if VARIABLE.match(url) else
                             apprise.Apprise.instantiate(url).url(privacy=True)
                             for url in job.notify], notify_on=events(job.notify_on))
    return {"watch": watch}


def from_record(manifest: dict[str, Any]) -> tuple[list[str], list[str] | None]:
    """The URLs a record's watch settings let another process send to (its `$NAME`s), and
    its notify_on."""
    watch = manifest.get("watch") or {}
    return [u for u in watch.get("notify", []) if VARIABLE.match(u)], watch.get("notify_on")


def events(notify_on: Sequence[str] | None) -> list[str]:
    """The events a job config's notify_on names, its default when unset."""
    return list(DEFAULT_EVENTS if notify_on is None else notify_on)


def wanted(event: str, status: str, notify_on: Sequence[str] | None) -> bool:
    """Whether `notify_on` asks for `event` ("end" or "stall") ending in `status`."""
    notify_on = events(notify_on)
    if event == "stall":
        return "stall" in notify_on
    return "end" in notify_on or ("failure" in notify_on and status != "Completed")


def message(record: Record, event: str) -> tuple[str, str]:
    """The title and body that tell of `event` for the run as its manifest stands."""
    manifest = record.manifest
    status = manifest.get("status", "")
    what = "stalled" if event == "stall" else status.lower()
    title = f"sagebook: run {record.experiment}/{record.run_id} {what}"
    cost = (manifest.get("cost") or {}).get("usd")
    lines = [f"run: {record.experiment}/{record.run_id} ({manifest.get('job_name', '')})",
             f"status: {status}" + (" (stalled)" if event == "stall" else ""),
             f"duration: {_duration(manifest)}",
             "cost: " + (f"${cost:,.2f}" if isinstance(cost, int | float)
                         else "none (local)" if manifest.get("backend", "").startswith("Local")
                         else "not known yet")]
    reason = manifest.get("failure_reason") or (
        (manifest.get("stalled") or {}).get("reason") if event == "stall" else None)
    if reason:
        lines.append(f"failure reason: {reason.splitlines()[0]}")
    lines.append(f"record: {record.uri}")
    return redact(title), redact("\n".join(lines))


def send(record: Record, event: str, urls: Sequence[str], notify_on: Sequence[str] | None) -> None:
    """Tell each URL of `event` when `notify_on` asks for it; what each did goes into the
    record's `notifications`. Never raises for a URL: a notification must not fail a run."""
    if not urls or not wanted(event, record.manifest.get("status", ""), notify_on):
        return
    title, body = message(record, event)
    sent = [{"event": event, "time": now(), **_send_one(url, title, body)} for url in urls]
    try:
        record.update(notifications=[*record.manifest.get("notifications", []), *sent])
    except StoreError:  # the run's own end is written already; this note is not worth a failure
        pass


def send_end(record: Record, urls: Sequence[str], notify_on: Sequence[str] | None) -> None:
    """`send` for a run whose record has reached its end."""
    if record.manifest.get("status") in TERMINAL:
        send(record, "end", urls, notify_on)


def _send_one(url: str, title: str, body: str) -> dict[str, Any]:
    """One URL told, in a thread of its own that is waited for at most SEND_SECONDS: loading
    apprise's plugins (a second, the first time) and the service's answer both count."""
    named = VARIABLE.match(url)
    result: dict[str, Any] = {"url": url if named else redact(url)}

    def notify() -> None:
        import apprise  # reason: as in `check`

        value = resolve(url)
        service = apprise.Apprise.instantiate(value) if value is not None else None
        if service is None:
            result.update(ok=False, error=f"{url} is not set here" if value is None
                          else "not a URL apprise knows")
            return
        if not named:
            result["url"] = service.url(privacy=True)
        service.socket_connect_timeout = service.socket_read_timeout = SOCKET_SECONDS
        with apprise.LogCapture(level=apprise.logging.WARNING) as log:
            try:
                result["ok"] = bool(service.notify(body=body, title=title))
            except Exception as exc:  # noqa: BLE001 - a plugin's fault is recorded, not raised
                result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            said = log.getvalue().strip()
        if not result["ok"] and "error" not in result:
            result["error"] = said.splitlines()[-1] if said else "the service refused it"

    thread = threading.Thread(target=notify, daemon=True, name="notify")
    thread.start()
    thread.join(SEND_SECONDS)
    if thread.is_alive() or "ok" not in result:
        return {"url": result["url"], "ok": False,
                "error": f"no answer within {SEND_SECONDS:g} s"}
    return {k: redact(str(v)) if k == "error" else v for k, v in result.items()}


def _duration(manifest: dict[str, Any]) -> str:
    """Seconds from the run's creation to its end (or to now, for one still running)."""
    try:
        start = _dt.datetime.fromisoformat(manifest["created"])
        end = _dt.datetime.fromisoformat(manifest.get("ended") or now())
    except (KeyError, TypeError, ValueError):
        return "not known"
    seconds = max((end - start).total_seconds(), 0.0)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
