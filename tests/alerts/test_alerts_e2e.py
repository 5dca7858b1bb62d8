"""Alerts end to end: a real daemon, a real SMTP server (aiosmtpd) and a real webhook on 127.0.0.1.

Here the failing runs are truncated RAW files (the native stage fails on them: the ``stage_failed``
condition); failing QC verdicts are in test_alerts_verdict_e2e.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from alertproc import alert_daemon, fail_files, settle
from daemonproc import copy_raw, wait_for
from receivers import SmtpServer, Webhook

pytestmark = pytest.mark.timeout(300)


def test_a_failing_run_sends_one_mail_and_one_webhook_call_with_the_reasons(tmp_path: Path) -> None:
    instrument = tmp_path / "instrument"
    with SmtpServer() as smtp:
        hook = Webhook().up()
        rule = {"name": "native-failures", "condition": "stage_failed", "channels": ["mail", "hook"]}
        d = alert_daemon(tmp_path, instrument, {"mail": smtp.url, "hook": hook.url}, [rule])
        try:
            d.start()
            fail_files(instrument, ["QC_HeLa_001.raw"])
            wait_for(lambda: smtp.mails() and hook.received(), 60, "the e-mail and the webhook call")
            settle(3)
            mails, calls = smtp.mails(), hook.received()
            assert len(mails) == 1 and len(calls) == 1, (mails, calls)
            subject, body = mails[0]
            assert "lab-qc/exploris" in subject and "native stage failed" in subject
            for text in (body, calls[0]["message"]):
                assert "QC_HeLa_001.raw" in text and "truncated" in text  # the run file and the reason
                assert "/pipelines/lab-qc/exploris?run=rf1" in text  # a link to the run
                assert "native-failures" in text  # the rule
            assert calls[0]["title"] == subject
            listed = d.api("/api/alerts", {})
            [alert] = listed["alerts"]
            assert alert["state"] == "open" and alert["events"] == 1
            assert {x["channel"]: x["state"] for x in alert["deliveries"]} == {"mail": "sent", "hook": "sent"}
            assert listed["rules"][0]["name"] == "native-failures"
            metrics = _get(d.base + "/metrics")
            assert 'qcdaemon_alerts_open{rule="native-failures"} 1.0' in metrics
            assert 'qcdaemon_runs{state="failed"} 1.0' in metrics and "process_resident_memory_bytes" in metrics
            out = json.loads(d.cli("alerts", "test", "hook").stdout)  # through the running daemon
            assert out["sent"] is True and out["target"] == "json://127.0.0.1"
            assert hook.received()[-1]["title"] == "[qcdaemon] test message" and len(hook.received()) == 2
            bad = d.cli("alerts", "test", "pager", check=False)
            assert bad.returncode == 1 and "no alert channel 'pager'" in bad.stderr
        finally:
            d.close()
            hook.down()


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_a_burst_of_20_failing_runs_is_one_message_with_a_count(tmp_path: Path) -> None:
    instrument = tmp_path / "instrument"
    hook = Webhook().up()
    rule = {"name": "failures", "condition": "stage_failed", "channels": ["hook"]}
    d = alert_daemon(tmp_path, instrument, {"hook": hook.url}, [rule], alerts={"group_seconds": 8.0})
    try:
        d.start()
        fail_files(instrument, [f"burst_{i:02d}.raw" for i in range(20)])
        wait_for(lambda: hook.received(), 90, "the message about the burst")
        settle(3)
        calls = hook.received()
        assert len(calls) == 1, [c["title"] for c in calls]
        assert "(20 runs)" in calls[0]["title"]
        assert "20 runs since" in calls[0]["message"] and "and 10 more" in calls[0]["message"]
        [alert] = d.api("/api/alerts", {})["alerts"]
        assert alert["events"] == 20
    finally:
        d.close()
        hook.down()


def test_silence_opens_an_alert_and_a_new_file_resolves_it(tmp_path: Path) -> None:
    instrument = tmp_path / "instrument"
    hook = Webhook().up()
    rule = {"name": "silent", "condition": "silence", "minutes": 0.05, "channels": ["hook"]}  # 3 s
    d = alert_daemon(tmp_path, instrument, {"hook": hook.url}, [rule], alerts={"group_seconds": 0.5},
                     watch={"settle_seconds": 600.0})
    try:
        d.start()
        wait_for(lambda: hook.received(), 30, "the silence alert")
        [opened] = hook.received()
        assert "no new RAW file" in opened["title"] and str(instrument) in opened["message"]
        (instrument / "QC_new.raw").write_bytes(b"x" * 1000)
        wait_for(lambda: len(hook.received()) >= 2, 30, "the resolution")
        resolved = hook.received()[1]
        assert resolved["title"].startswith("[qcdaemon] Resolved") or "Resolved" in resolved["title"]
        assert "QC_new.raw" in resolved["message"]
        assert d.api("/api/alerts", {"state": "open"})["alerts"] == []
    finally:
        d.close()
        hook.down()


def test_a_file_that_stops_growing_opens_a_stalled_acquisition_alert(tmp_path: Path) -> None:
    instrument = tmp_path / "instrument"
    hook = Webhook().up()
    rule = {"name": "stalled", "condition": "stalled", "minutes": 0.05, "channels": ["hook"]}
    d = alert_daemon(tmp_path, instrument, {"hook": hook.url}, [rule], alerts={"group_seconds": 0.5},
                     watch={"settle_seconds": 600.0})  # never "finished" during the test
    try:
        d.start()
        growing = instrument / "QC_acquiring.raw"
        with growing.open("wb") as f:
            for _ in range(4):
                f.write(b"\0" * 100_000)
                f.flush()
                time.sleep(0.5)
        wait_for(lambda: hook.received(), 30, "the stalled-acquisition alert")
        [msg] = hook.received()
        assert "stalled" in msg["title"] and "QC_acquiring.raw" in msg["title"]
        assert "has not grown" in msg["message"]
    finally:
        d.close()
        hook.down()


def test_a_receiver_that_is_down_gets_the_message_when_back_and_across_a_restart(tmp_path: Path) -> None:
    instrument = tmp_path / "instrument"
    hook = Webhook()  # not listening yet
    rule = {"name": "failures", "condition": "stage_failed", "channels": ["hook"]}
    d = alert_daemon(tmp_path, instrument, {"hook": hook.url}, [rule], alerts={"failing_after": 2})
    try:
        d.start()
        fail_files(instrument, ["QC_down_1.raw"])

        def failed_attempts(n: int) -> bool:
            alerts = d.api("/api/alerts", {})["alerts"]
            return bool(alerts) and any(sum(not x["ok"] for x in dl["attempts_log"]) >= n
                                        for a in alerts for dl in a["deliveries"])

        wait_for(lambda: failed_attempts(2), 60, "failed delivery attempts")
        status = d.api("/api/status", method="GET")
        assert status["alert_channels"][0]["state"] == "failing"  # a channel that keeps failing shows
        hook.up()
        wait_for(lambda: hook.received(), 30, "the message once the receiver is back")
        assert "QC_down_1.raw" in hook.received()[0]["message"]
        hook.down()
        # across a restart: queued while the receiver is down, delivered by the next daemon process
        copy_raw("small2.RAW", instrument / "QC_good.raw")  # the native stage succeeds: the alert resolves
        wait_for(lambda: failed_attempts(3), 90, "the resolution's failed attempts")
        assert d.stop() == 0
        hook.up()
        d.start()
        wait_for(lambda: len(hook.received()) >= 2, 60, "the resolution after the restart")
        assert "Resolved" in hook.received()[1]["title"] and "QC_good.raw" in hook.received()[1]["message"]
        settle(2)
        assert len(hook.received()) == 2  # delivered once
    finally:
        d.close()
        hook.down()


def test_acknowledged_alerts_stay_quiet(tmp_path: Path) -> None:
    instrument = tmp_path / "instrument"
    hook = Webhook().up()
    rule = {"name": "failures", "condition": "stage_failed", "channels": ["hook"], "repeat_minutes": 0.03}  # ~2 s
    d = alert_daemon(tmp_path, instrument, {"hook": hook.url}, [rule], alerts={"group_seconds": 0.5})
    try:
        d.start()
        fail_files(instrument, ["QC_a.raw"])
        wait_for(lambda: hook.received(), 60, "the first message")
        fail_files(instrument, ["QC_b.raw"])
        wait_for(lambda: len(hook.received()) >= 2, 60, "the reminder with the new failure")
        assert "1 more run" in hook.received()[1]["title"]
        [alert] = d.api("/api/alerts", {})["alerts"]
        out = json.loads(d.cli("alerts", "ack", str(alert["id"])).stdout)  # through the CLI (via the daemon)
        assert out["acknowledged_by"]
        fail_files(instrument, ["QC_c.raw", "QC_d.raw"])
        wait_for(lambda: d.api("/api/alerts", {})["alerts"][0]["events"] == 4, 60, "the new failures counted")
        settle(5)  # more than two repeat intervals
        assert len(hook.received()) == 2
        listing = d.cli("alerts", "list").stdout
        assert "failures" in listing and "yes" in listing
    finally:
        d.close()
        hook.down()


def test_a_restart_after_a_kill_is_announced_and_a_clean_one_is_not(tmp_path: Path) -> None:
    import signal

    instrument = tmp_path / "instrument"
    hook = Webhook().up()
    rule = {"name": "crash", "condition": "daemon_crash", "channels": ["hook"]}
    d = alert_daemon(tmp_path, instrument, {"hook": hook.url}, [rule])
    try:
        d.start()
        d.stop(signal.SIGKILL)
        d.start()
        wait_for(lambda: hook.received(), 30, "the crash notice")
        assert "restarted after an unclean stop" in hook.received()[0]["title"]
        assert d.stop() == 0
        d.start()
        settle(2)
        assert len(hook.received()) == 1
    finally:
        d.close()
        hook.down()
