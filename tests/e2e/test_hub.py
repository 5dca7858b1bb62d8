"""The lab-wide view (issue 17): two instrument daemons and a hub, all real processes on loopback.

The instruments watch a folder each and compute the native metrics of real RAW files (no RawTools,
no MaxQuant: the cheap stage); the hub pulls them by ``/api/changes``.  Each run must appear in the
hub exactly once, with its origin, also after the hub is SIGKILLed mid-pull and after an
instrument daemon is SIGKILLed and restarted.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from daemonproc import Daemon, copy_raw, wait_for

RAW = "small2.RAW"


def _instrument(root: Path) -> tuple[Daemon, Path]:
    folder = root / "instrument"
    folder.mkdir(parents=True)
    watch = [{"path": str(folder), "pipeline": "lab-qc/exploris", "owner": "op@lab.org",
              "settle_seconds": 0.5, "poll_interval": 0.5}]
    d = Daemon(root, watch=watch)
    d.setup_lab(mq=False)
    return d, folder


def _hub(root: Path, a: Daemon, b: Daemon) -> Daemon:
    root.mkdir(parents=True)
    hub = Daemon(root)
    hub.cli("user", "add", "op@lab.org", "--admin", "--password-stdin", input="operator-pass\n")
    token_file = root / "a.token"
    token_file.write_text(f"{a.token}\n")
    with open(hub.config, "a") as f:  # batch = 1: a pull of several runs takes several pages
        f.write(f'[hub]\ninterval_seconds = 1\nbatch = 1\ntimeout_seconds = 5\n'
                f'[[hub.source]]\nname = "orbi-a"\nurl = "{a.base}"\ntoken_file = "{token_file}"\n'
                f'[[hub.source]]\nname = "orbi-b"\nurl = "{b.base}"\ntoken = "{b.token}"\n'
                'pipelines = {"lab-qc/exploris" = "lab-qc/exploris-b"}\n')
    return hub


def _done(d: Daemon, n: int) -> list[dict[str, Any]] | None:
    runs = d.runs()
    return runs if len(runs) == n and all(r["state"] == "done" for r in runs) else None


def _pulled(hub: Daemon, want: dict[str, int]) -> list[dict[str, Any]] | None:
    """The hub's runs once it holds ``want`` (origin -> number of runs), all done."""
    runs = hub.runs()
    counts = {o: sum(r["origin"] == o for r in runs) for o in want}
    return runs if counts == want and all(r["state"] == "done" for r in runs) else None


def _exactly_once(runs: list[dict[str, Any]], a: Daemon, b: Daemon) -> None:
    origins = [(r["origin"], r["origin_key"]) for r in runs]
    assert len(origins) == len(set(origins)), origins
    assert {k for o, k in origins if o == "orbi-a"} == {r["run_key"] for r in a.runs()}
    assert {k for o, k in origins if o == "orbi-b"} == {r["run_key"] for r in b.runs()}


def test_hub_pulls_both_instruments_exactly_once_across_kills(tmp_path: Path) -> None:
    a, fa = _instrument(tmp_path / "a")
    b, fb = _instrument(tmp_path / "b")
    hub = None
    try:
        a.start()
        b.start()
        for i in range(2):
            copy_raw(RAW, fa / f"a{i}.raw")
            copy_raw(RAW, fb / f"b{i}.raw")
        wait_for(lambda: _done(a, 2) and _done(b, 2), 90, "both instruments to process their files")
        hub = _hub(tmp_path / "hub", a, b)
        hub.start()
        runs = wait_for(lambda: _pulled(hub, {"orbi-a": 2, "orbi-b": 2}), 60, "the hub to pull four runs")
        _exactly_once(runs, a, b)
        # each source's pipeline: by name for orbi-a, as configured for orbi-b
        assert {r["pipeline"] for r in runs if r["origin"] == "orbi-a"} == {"exploris"}
        assert {r["pipeline"] for r in runs if r["origin"] == "orbi-b"} == {"exploris-b"}
        # the values came along, and the hub judged the runs itself
        qc = hub.api("/api/qc-data", {"project": "lab-qc", "pipeline": "exploris"})
        src = a.qc_data()
        assert sorted(qc["RawFile"]) == sorted(src["RawFile"]) == ["a0", "a1"]
        metrics = [c for c, v in src.items() if v and all(isinstance(x, float) for x in v)]
        assert metrics
        for c in metrics:  # the same numbers, in the hub as on the instrument
            assert sorted(qc[c]) == sorted(src[c]), c
        assert all(v is not None for v in qc["Verdict"])

        # more runs on A; the hub is SIGKILLed as soon as it has pulled a part of them
        for i in range(2, 6):
            copy_raw(RAW, fa / f"a{i}.raw")
        wait_for(lambda: _done(a, 6), 90, "A to process four more files")
        wait_for(lambda: sum(r["origin"] == "orbi-a" for r in hub.runs()) > 2, 60, "the hub to start pulling them")
        assert hub.stop(signal.SIGKILL) == -signal.SIGKILL
        hub.start()
        runs = wait_for(lambda: _pulled(hub, {"orbi-a": 6, "orbi-b": 2}), 60, "the restarted hub to finish the pull")
        _exactly_once(runs, a, b)

        # B is SIGKILLed; a file arrives while it is down; the hub goes on and takes it once B is back
        assert b.stop(signal.SIGKILL) == -signal.SIGKILL
        copy_raw(RAW, fb / "b-while-down.raw")
        a.api("/api/flag/create", {"project": "lab-qc", "pipeline": "exploris", "run_keys": [a.runs()[-1]["run_key"]]})
        wait_for(lambda: any(r["flagged"] for r in hub.runs()), 30, "the hub to pull A's flag while B is down")
        b.start()
        wait_for(lambda: _done(b, 3), 90, "B to process the file that arrived while it was down")
        runs = wait_for(lambda: _pulled(hub, {"orbi-a": 6, "orbi-b": 3}), 60, "the hub to pull B's new run")
        _exactly_once(runs, a, b)
        assert len(runs) == 9 and sum(r["flagged"] for r in runs) == 1
        status = hub.api("/api/status", method="GET")
        assert status["hub_sources"]["orbi-b"]["ok"] is True
    finally:
        for d in (hub, a, b):
            if d is not None:
                d.close()
