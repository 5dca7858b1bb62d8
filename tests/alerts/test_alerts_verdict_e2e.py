"""QC verdicts that reach the lab, end to end: a real daemon, a real SMTP server (aiosmtpd) and a real
webhook on 127.0.0.1, with values from real RAW files through the real ingestion path (watched
folder, ledger, native stage, stored values, the verdict computed as they arrive).

The series: five runs of the same QC file (small2.RAW, Orbitrap Velos Pro, 49 MS2 scans: RawTools
2.0.7's own count, tests/data/raw/rawtools-small2) form the guide set; the pipeline judges
"MS2 scans" by their percent deviation from the guide-set mean (a lab's choice, set with
``qcdaemon qc rules``; five identical runs have no spread, so the SD-based default rules cannot
judge). Then a run acquired later whose method went wrong: Angiotensin_325-HCD.raw (Orbitrap
Fusion Lumos), an MS2-only run of 10 scans (acquired 2018-09-26, after the guide set's 2018-04-03),
80 % below the mean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alertproc import alert_daemon, arrive, settle
from daemonproc import DATA, Daemon, wait_for
from receivers import SmtpServer, Webhook

pytestmark = pytest.mark.timeout(300)

GOOD = DATA / "raw" / "small2.RAW"
WRONG = DATA / "raw" / "Angiotensin_325-HCD.raw"
METRIC = "NumMs2Scans"
RULES = [{"rule": "percent", "warn": 10, "fail": 25}]  # warn beyond 10 %, fail beyond 25 % from the mean
GUIDE_SCANS = 49  # RawTools 2.0.7 on small2.RAW (tests/data/raw/rawtools-small2): NumMs2Scans
WRONG_SCANS = 10  # Angiotensin_325-HCD.raw: 10 MS2 HCD scans, no MS1 (PNNL's reader test file; tests/data/raw/README.md)


def verdict_daemon(tmp_path: Path, channels: dict[str, str], **alerts: Any) -> tuple[Daemon, Path]:
    instrument = tmp_path / "instrument"
    rule = {"name": "qc-failed", "condition": "verdict", "channels": list(channels),
            **({"repeat_minutes": alerts.pop("repeat_minutes")} if "repeat_minutes" in alerts else {})}
    return alert_daemon(tmp_path, instrument, channels, [rule], alerts=alerts), instrument


def guide_set(d: Daemon, instrument: Path) -> list[str]:
    """Five normal runs, made the pipeline's guide set, and the metric's rule (through the running daemon)."""
    arrive(instrument, {f"QC_HeLa_{i:03d}.raw": GOOD for i in range(1, 6)})
    runs = wait_for(lambda: d.finished(5), 120, "the five guide-set runs")
    assert all(r["state"] == "done" for r in runs), runs
    keys = sorted((r["run_key"] for r in runs), key=lambda k: int(k[2:]))
    out = json.loads(d.cli("qc", "guide-set-add", "lab-qc", "exploris", "--label", "April",
                           *[a for k in keys for a in ("--run", k)]).stdout)
    assert out["run_keys"] == sorted(keys)
    d.cli("qc", "rules", "lab-qc", "exploris", METRIC, json.dumps(RULES))
    return keys


def verdicts(d: Daemon, keys: list[str]) -> dict[str, dict[str, Any]]:
    out = d.api("/api/qc/verdicts", {"project": "lab-qc", "pipeline": "exploris", "run_keys": keys})
    return {r["run_key"]: r for r in out["runs"]}


def test_a_failing_qc_run_sends_one_mail_and_one_webhook_call_with_its_reasons(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        hook = Webhook().up()
        d, instrument = verdict_daemon(tmp_path, {"mail": smtp.url, "hook": hook.url})
        try:
            d.start()
            guide = guide_set(d, instrument)
            qc = d.qc_data()
            assert qc[METRIC] == [GUIDE_SCANS] * 5  # the native reader agrees with RawTools
            assert {v["verdict"] for v in verdicts(d, guide).values()} == {"pass"}
            arrive(instrument, {"QC_HeLa_006.raw": WRONG})
            wait_for(lambda: smtp.mails() and hook.received(), 90, "the e-mail and the webhook call")
            settle(3)
            mails, calls = smtp.mails(), hook.received()
            assert len(mails) == 1 and len(calls) == 1, (mails, calls)

            [run] = [r for r in d.runs() if r["name"] == "QC_HeLa_006.raw"]
            key = run["run_key"]
            stored = verdicts(d, [key])[key]
            assert stored["verdict"] == "fail"
            assert d.qc_data()[METRIC][-1] == WRONG_SCANS
            # the limits, independently: the guide-set mean ± 25 %
            low, high = GUIDE_SCANS * 0.75, GUIDE_SCANS * 1.25
            [reason] = [r for r in stored["reasons"] if r["metric"] == METRIC]
            assert reason["rule"] == "percent" and reason["severity"] == "fail" and reason["value"] == WRONG_SCANS
            assert reason["statistic"] == pytest.approx(100 * (WRONG_SCANS - GUIDE_SCANS) / GUIDE_SCANS)

            subject, body = mails[0]
            # plain text, its lines kept: the run, then each reason on a line of its own, then the link
            assert f"QC_HeLa_006.raw ({key}): verdict fail\n  - MS2 scans: 10, " in body
            assert f"\n  http://127.0.0.1:{d.port}/pipelines/lab-qc/exploris?run={key}" in body
            assert calls[0]["title"] == subject
            assert "lab-qc/exploris" in subject and "QC failed" in subject
            for text in (body, calls[0]["message"]):
                assert f"QC_HeLa_006.raw ({key}): verdict fail" in text  # the run file
                assert "MS2 scans: 10" in text and "percent" in text  # metric, value, rule
                assert f"(limits {low:.4g} to {high:.4g}" in text  # against its limits, in scans
                assert f"guide-set mean {GUIDE_SCANS}" in text
                assert f"/pipelines/lab-qc/exploris?run={key}" in text  # a link to the run's page
                assert "qc-failed (verdict)" in text  # the alert rule
            [alert] = d.api("/api/alerts", {})["alerts"]
            assert alert["condition"] == "verdict" and alert["state"] == "open" and alert["events"] == 1
            assert {x["channel"]: x["state"] for x in alert["deliveries"]} == {"mail": "sent", "hook": "sent"}

            # a normal run after it passes and resolves the alert, with one more message per channel
            arrive(instrument, {"QC_HeLa_007.raw": GOOD})
            wait_for(lambda: len(hook.received()) >= 2 and len(smtp.mails()) >= 2, 90, "the resolution")
            resolved = hook.received()[1]
            assert resolved["title"].startswith("[qcdaemon] Resolved:") and "QC_HeLa_007.raw" in resolved["message"]
            assert smtp.mails()[1][0] == resolved["title"]
            assert d.api("/api/alerts", {"state": "open"})["alerts"] == []
        finally:
            d.close()
            hook.down()


def test_a_burst_of_20_failing_runs_is_one_message_with_a_count_and_an_acknowledged_alert_stays_quiet(
        tmp_path: Path) -> None:
    hook = Webhook().up()
    # the burst is announced once no new failure came for 8 s; reminders at most every ~2 s after
    d, instrument = verdict_daemon(tmp_path, {"hook": hook.url}, group_seconds=8.0, repeat_minutes=0.03)
    try:
        d.start()
        guide_set(d, instrument)
        arrive(instrument, {f"QC_HeLa_{i:03d}.raw": WRONG for i in range(6, 26)})
        wait_for(lambda: hook.received(), 150, "the message about the burst")
        calls = hook.received()
        assert len(calls) == 1, [c["title"] for c in calls]
        assert "QC failed (20 runs)" in calls[0]["title"]
        assert "20 runs since" in calls[0]["message"] and "and 10 more" in calls[0]["message"]
        assert calls[0]["message"].count("MS2 scans: 10") == 10  # ten listed with their reasons, ten counted
        [alert] = d.api("/api/alerts", {})["alerts"]
        assert alert["events"] == 20
        failing = [k for k, v in verdicts(d, [r["run_key"] for r in d.runs()]).items() if v["verdict"] == "fail"]
        assert len(failing) == 20

        # still failing: a reminder with the new count, then acknowledged, then quiet
        arrive(instrument, {"QC_HeLa_026.raw": WRONG})
        wait_for(lambda: len(hook.received()) >= 2, 90, "the reminder with the new failure")
        assert "1 more run, 21 in all" in hook.received()[1]["title"]
        ack = d.api("/api/alerts/ack", {"alert": alert["id"]})
        assert ack["acknowledged_by"] == "op@lab.org"
        arrive(instrument, {"QC_HeLa_027.raw": WRONG, "QC_HeLa_028.raw": WRONG})
        wait_for(lambda: d.api("/api/alerts", {})["alerts"][0]["events"] == 23, 90, "the new failures counted")
        settle(5)  # more than two repeat intervals
        assert len(hook.received()) == 2
        [alert] = d.api("/api/alerts", {})["alerts"]
        assert alert["state"] == "open" and alert["acknowledged_at"]
    finally:
        d.close()
        hook.down()
