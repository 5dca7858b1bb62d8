"""Sending: apprise for every channel kind, and the outbox worker that retries with back-off.

apprise turns one URL into a channel: ``mailtos://user:pass@smtp.lab.org?from=..&to=qc@lab.org``
(SMTP with STARTTLS, port 587; ``&mode=ssl`` for TLS from the first byte, port 465; ``mailto://``
is plain SMTP, for a relay without login), ``json://host/path`` (a JSON webhook), ``slack://``,
``msteams://``, ``mmost://`` and many more. TLS certificates are checked against OpenSSL's trust
store (``SSL_CERT_FILE`` in the daemon's environment can name a bundle with a lab's own CA);
``verify=no`` in a URL turns the check off for that channel. Channel URLs hold secrets:
they are read from the config, a file or an environment variable when a message is sent and are
never logged; errors are reported without them.

The outbox is the ``alert_deliveries`` table: the worker sends what is due, records each attempt,
and on failure sets the next attempt after ``retry_seconds * 2**(attempts-1)`` (at most
``retry_max_minutes``), until ``give_up_hours`` after the message was queued. Pending rows left by a
stopped or crashed daemon are sent after the restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import structlog

from qcdaemon.alerts.conditions import in_quiet_hours, to_local
from qcdaemon.config import AlertChannelConfig, Config
from qcdaemon.core.clock import utcnow
from qcdaemon.errors import QcdaemonError
from qcdaemon.store import AsyncStore, Store

log = structlog.get_logger("qcdaemon.alerts")

Clock = Callable[[], dt.datetime]
Sender = Callable[[str, str, str], "str | None"]
"""``send(url, title, body)`` -> None when sent, else the error (blocking; runs in a worker thread)."""

IDLE_POLL = 30.0  # seconds the worker sleeps when nothing is due (it is woken when something is queued)


class ChannelError(QcdaemonError):
    status = 400


def channel_url(ch: AlertChannelConfig) -> str:
    """The channel's apprise URL (from ``url``, ``url_file`` or ``url_env``)."""
    if ch.url:
        return ch.url.strip()
    if ch.url_file:
        try:
            return Path(ch.url_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ChannelError(f"channel {ch.name}: cannot read url_file {ch.url_file}: {exc.strerror}") from None
    value = os.environ.get(ch.url_env, "").strip()
    if not value:
        raise ChannelError(f"channel {ch.name}: the environment variable {ch.url_env} is not set")
    return value


def scrub(text: str, url: str) -> str:
    """``text`` without the URL's secrets (its password, and the URL itself)."""
    secrets = {url}
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets |= {parts.password, unquote(parts.password)}
        if parts.username:
            secrets |= {parts.username, unquote(parts.username)}
    except ValueError:
        pass
    for s in sorted(secrets, key=len, reverse=True):
        if len(s) >= 3:
            text = text.replace(s, "***")
    return text


def apprise_send(url: str, title: str, body: str) -> str | None:
    """Send through apprise; None on success, else what went wrong (without secrets)."""
    import apprise  # heavy: loaded when the first message is sent, not by every CLI command

    ap = apprise.Apprise()
    if not ap.add(url):
        return "apprise does not understand this channel URL (check its scheme and parameters)"
    # apprise says what failed at WARNING ("Connection error while submitting email") and why only at
    # DEBUG ("Socket Exception: [SSL: CERTIFICATE_VERIFY_FAILED] ..."): keep both, nothing else
    with apprise.LogCapture(level=logging.DEBUG, fmt="%(levelname)s|%(message)s") as captured:
        # our messages are plain text: said so, apprise keeps their lines (else it takes them for
        # HTML, and an e-mail reader shows one run-on paragraph)
        ok = ap.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
    if ok:
        return None
    lines = []
    for ln in captured.getvalue().splitlines():
        level, _, message = ln.partition("|")
        if message.strip() and (level in ("WARNING", "ERROR", "CRITICAL") or message.startswith("Socket Exception:")):
            lines.append(message.strip())
    detail = "; ".join(dict.fromkeys(lines))[-500:] or "the notification service refused the message"
    return scrub(detail, url)


class Outbox:
    """Sends due deliveries; :meth:`run` until cancelled, or :meth:`deliver_due` once (tests)."""

    def __init__(self, store: AsyncStore, cfg: Config, *, clock: Clock = utcnow,
                 sender: Sender = apprise_send) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self.sender = sender
        self.channels = {c.name: c for c in cfg.alerts.channel}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one sender at a time: a delivery is never sent twice in parallel

    def wake(self) -> None:
        self._wake.set()

    def backoff(self, attempts: int) -> dt.timedelta:
        a = self.cfg.alerts
        return dt.timedelta(seconds=min(a.retry_seconds * 2 ** max(attempts - 1, 0), a.retry_max_minutes * 60))

    async def release_digests(self) -> int:
        """Channels out of their quiet hours: their held messages become one digest each."""
        now = self.clock()
        made = 0
        for ch in self.channels.values():
            if not ch.quiet_hours or in_quiet_hours(to_local(now), ch.quiet_hours):
                continue
            held = await self.store.call(Store.deliveries_held, ch.name)
            if not held:
                continue
            title = f"[qcdaemon] {len(held)} alert message{'s' if len(held) != 1 else ''} from the quiet hours"
            body = "\n\n".join(f"--- {to_local(d['created_at']).strftime('%Y-%m-%d %H:%M')}: {d['title']}\n{d['body']}"
                               for d in held)
            await self.store.call(Store.delivery_digest, ch.name, [d["id"] for d in held], title, body, now)
            made += 1
        return made

    async def deliver_due(self) -> int:
        """Send everything due now; returns the number sent."""
        async with self._lock:
            return await self._deliver_due()

    async def _deliver_due(self) -> int:
        await self.release_digests()
        now = self.clock()
        due = await self.store.call(Store.deliveries_due, now)
        sent = 0
        for d in due:
            ch = self.channels.get(d["channel"])
            error: str | None
            if ch is None:
                error = f"no channel {d['channel']!r} in the configuration"
            else:
                try:
                    url = channel_url(ch)
                except ChannelError as exc:
                    error = str(exc)
                else:
                    try:
                        error = await asyncio.to_thread(self.sender, url, d["title"], d["body"])
                    except Exception as exc:  # a channel plug-in bug must not stop the outbox
                        error = scrub(f"{type(exc).__name__}: {exc}", url)
            at = self.clock()
            retry_at = None
            if error is not None:
                give_up = d["created_at"] + dt.timedelta(hours=self.cfg.alerts.give_up_hours)
                nxt = at + self.backoff(int(d["attempts"]) + 1)
                retry_at = nxt if nxt <= give_up else None
                log.warning("alert_delivery_failed", channel=d["channel"], delivery=d["id"], error=error,
                            attempts=int(d["attempts"]) + 1, retry_at=retry_at.isoformat() if retry_at else None)
            else:
                sent += 1
                log.info("alert_delivered", channel=d["channel"], delivery=d["id"], kind=d["kind"])
            await self.store.call(Store.delivery_record, d["id"], ok=error is None, error=error, now=at,
                                  retry_at=retry_at)
        return sent

    async def run(self) -> None:
        while True:
            try:
                await self.deliver_due()
                nxt = await self.store.call(Store.delivery_next_due)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert_outbox_failed")
                nxt = None
            wait = IDLE_POLL
            if nxt is not None:
                wait = min(max((nxt - self.clock()).total_seconds(), 0.05), IDLE_POLL)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass


def describe_channel(ch: AlertChannelConfig) -> str:
    """The channel's kind and host, for doctor and logs (no secrets)."""
    try:
        url = channel_url(ch)
    except ChannelError as exc:
        return str(exc)
    m = re.match(r"([a-z0-9+.-]+)://", url, re.I)
    scheme = m.group(1) if m else "?"
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    return f"{scheme}://{host}" if host else f"{scheme}://"
