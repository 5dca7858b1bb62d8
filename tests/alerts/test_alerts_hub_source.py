"""``hub_unreachable`` (issue 17): a real hub daemon pulling from a real source daemon, which is
stopped; a real webhook on 127.0.0.1 gets one message naming the source, its last error and since
when, once it has been unreachable for the rule's limit, and one "Resolved" message when the source
is started again and the hub's next pull reaches it.

Both daemons run in real time (their clocks cannot be moved from outside the processes); the
limit is a few seconds (``minutes`` is a float), the checks run every 0.3 s.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from alertproc import settle
from daemonproc import Daemon, wait_for
from receivers import Webhook

pytestmark = pytest.mark.timeout(300)

LIMIT_MINUTES = 0.1  # 6 s


def _hub(root: Path, source: Daemon, hook: Webhook) -> Daemon:
    root.mkdir(parents=True)
    hub = Daemon(root)
    hub.cli("user", "add", "op@lab.org", "--admin", "--password-stdin", input="operator-pass\n")
    alerts = {"check_seconds": 0.3, "group_seconds": 0.5, "repeat_minutes": 60.0, "retry_seconds": 0.5}
    with open(hub.config, "a") as f:
        f.write("[hub]\ninterval_seconds = 1\ntimeout_seconds = 3\n"
                f'[[hub.source]]\nname = "orbi-a"\nurl = "{source.base}"\ntoken = "{source.token}"\n'
                "[alerts]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in alerts.items())
                + f'[[alerts.channel]]\nname = "hook"\nurl = "{hook.url}"\n'
                + f'[[alerts.rule]]\nname = "hub-sources"\ncondition = "hub_unreachable"\nminutes = {LIMIT_MINUTES}\n'
                + 'channels = ["hook"]\n')
    return hub


def _source_ok(hub: Daemon) -> Any:
    st = hub.api("/api/status", method="GET")["hub_sources"]["orbi-a"]
    return st if st["ok"] is True else None


def test_an_unreachable_hub_source_alerts_once_and_its_return_resolves_it(tmp_path: Path) -> None:
    hook = Webhook().up()
    (tmp_path / "orbi-a").mkdir()
    source = Daemon(tmp_path / "orbi-a")
    hub: Daemon | None = None
    try:
        source.setup_lab(mq=False)
        source.start()
        hub = _hub(tmp_path / "hub", source, hook)
        hub.start()
        wait_for(lambda: _source_ok(hub), 60, "the hub to pull from its source")
        settle(LIMIT_MINUTES * 60 + 1)
        assert hook.received() == []  # a source that answers: no alert

        assert source.stop() == 0
        stopped = time.monotonic()
        wait_for(hook.received, 60, "the alert about the unreachable source")
        waited = time.monotonic() - stopped
        assert waited >= LIMIT_MINUTES * 60  # not before the limit
        settle(3)  # ten more checks and three more failed pulls: still one message
        [opened] = hook.received()
        assert opened["title"] == "[qcdaemon] hub: source orbi-a unreachable", opened
        body = opened["message"]
        assert f"source orbi-a ({source.base})" in body  # the source and its address
        assert "Last error: Cannot connect to host 127.0.0.1:" in body, body  # what the pull met
        assert " since " in body and "local time" in body and "limit 6 min" not in body and "limit 0.1 min" in body
        status = hub.api("/api/status", method="GET")["hub_sources"]["orbi-a"]
        assert status["ok"] is False and "Cannot connect to host" in status["error"]
        [alert] = hub.api("/api/alerts", {})["alerts"]
        assert alert["state"] == "open" and alert["rule"] == "hub-sources" and alert["subject"] == "hub:orbi-a"

        source.start()  # the same address and data: the next pull reaches it
        wait_for(lambda: len(hook.received()) >= 2, 60, "the message that the source is back")
        settle(2)
        calls = hook.received()
        assert len(calls) == 2, [c["title"] for c in calls]
        assert calls[1]["title"] == "[qcdaemon] Resolved: hub: source orbi-a unreachable"
        assert "the source answers again" in calls[1]["message"]
        [alert] = hub.api("/api/alerts", {"state": "resolved"})["alerts"]
        assert alert["subject"] == "hub:orbi-a"
        assert _source_ok(hub) is not None
        assert hub.stop() == 0 and source.stop() == 0
    finally:
        if hub is not None:
            hub.close()
        source.close()
        hook.down()
