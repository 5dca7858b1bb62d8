"""TMT reporter ions on real MS2 spectra with synthetic reporter peaks at the published TMT11 masses.

No TMT-labelled RAW file is available here (none in /work/shared/data, and the small public test
files of the RAW readers are unlabelled), so the test takes the real MS2 spectra of the yeast run
(whose reporter region, 125.5-135.5 m/z, holds real fragment and noise peaks), adds one synthetic
peak per TMT11 channel at a known intensity, leaves channels out on purpose, and checks the
per-channel values and the missing-channel counts the search stage reports against the design.

Reporter masses are computed here, not copied: each TMT reporter is the C8H16N+ ion (126) or one of
its 13C/15N isotopologues (127N = 15N, 127C = 13C, 128N = 13C 15N, 128C = 13C2, ..., 131C = 13C5;
McAlister et al., Anal. Chem. 2012, 84, 7469; Werner et al., Anal. Chem. 2014, 86, 3594), from the
atomic masses of AME2020 (Wang et al., Chinese Phys. C 2021, 45, 030003) and the CODATA 2018
electron mass.  Thermo's TMT10plex/TMT11plex instructions list the same values to 6 decimals.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qcdaemon.search.metrics import passing, search_values
from qcdaemon.search.sage import SearchResult
from qcdaemon.search.tmt import CHANNELS, WINDOW_DA, reporter_intensities

H1, C12, C13, N14, N15, ELECTRON = 1.00782503223, 12.0, 13.00335483507, 14.00307400443, 15.00010889888, 0.000548579909
# channel -> (13C atoms, 15N atoms) of the C8H16N+ reporter
TMT11_LABELS = {
    "126": (0, 0), "127N": (0, 1), "127C": (1, 0), "128N": (1, 1), "128C": (2, 0), "129N": (2, 1),
    "129C": (3, 0), "130N": (3, 1), "130C": (4, 0), "131N": (4, 1), "131C": (5, 0),
}


def reporter_mz(c13: int, n15: int) -> float:
    carbon = (8 - c13) * C12 + c13 * C13
    nitrogen = N15 if n15 else N14
    return carbon + 16 * H1 + nitrogen - ELECTRON


def test_reporter_masses_are_the_published_isotopologue_masses() -> None:
    computed = {name: reporter_mz(*label) for name, label in TMT11_LABELS.items()}
    assert computed["126"] == pytest.approx(126.127726, abs=1e-6)  # Thermo's figure for 126
    for name, mz in CHANNELS["tmt11"].items():
        assert mz == pytest.approx(computed[name], abs=2e-6), name
    # TMT6plex: 127 is the 15N form, 128 13C2, 129 13C2 15N, 130 13C4, 131 13C4 15N
    six = {"126": (0, 0), "127": (0, 1), "128": (2, 0), "129": (2, 1), "130": (4, 0), "131": (4, 1)}
    for name, label in six.items():
        assert CHANNELS["tmt6"][name] == pytest.approx(reporter_mz(*label), abs=2e-6), name
    # the window never reaches the neighbouring N/C isotopologue (15N - 14N vs 13C - 12C: 6.32 mDa)
    assert 2 * WINDOW_DA < (C13 - C12) - (N15 - N14)


def with_reporters(result: SearchResult) -> tuple[SearchResult, np.ndarray]:
    """Every PSM's real reporter-region peaks plus synthetic reporters; the designed intensity matrix.

    PSM j, channel c: intensity (c + 1) x 1 % of the spectrum's reporter-region maximum x (1 + j / 10),
    at the channel's m/z shifted by +5 ppm; 131C left out everywhere (a missing channel), 128N left
    out of every third PSM (missing values).  A decoy peak 4 mDa above 129C must not be taken.
    """
    names = list(TMT11_LABELS)
    psms = passing(result)
    design = np.zeros((len(psms), len(names)))
    replaced = []
    for j, p in enumerate(psms):
        real_mz, real_int = np.asarray(p.reporter_mz), np.asarray(p.reporter_intensity)
        scale = (float(real_int.max()) if real_int.size else 1e4) * 0.01 * (1 + j / 10)
        add_mz, add_int = [reporter_mz(*TMT11_LABELS["129C"]) + 0.004], [50 * scale]
        for c, name in enumerate(names):
            if name == "131C" or (name == "128N" and j % 3 == 0):
                continue
            design[j, c] = (c + 1) * scale
            add_mz.append(reporter_mz(*TMT11_LABELS[name]) * (1 + 5e-6))
            add_int.append(design[j, c])
        mz = np.concatenate([real_mz, add_mz])
        order = np.argsort(mz, kind="stable")
        replaced.append(dataclasses.replace(p, reporter_mz=mz[order],
                                            reporter_intensity=np.concatenate([real_int, add_int])[order]))
    tmt = dataclasses.replace(result, psms=replaced, params=result.params.replace(tmt="tmt11"))
    return tmt, design


def test_reporter_values_on_real_spectra_with_synthetic_reporters(yeast_5pct: SearchResult) -> None:
    tmt, design = with_reporters(yeast_5pct)
    n = design.shape[0]
    assert n >= 40
    assert sum(np.asarray(p.reporter_mz).size for p in passing(yeast_5pct)) > 0  # real peaks in the region
    for j, p in enumerate(passing(tmt)):
        got = reporter_intensities("tmt11", p.reporter_mz, p.reporter_intensity)
        assert got == pytest.approx(design[j], rel=1e-6)
    values = search_values(tmt)
    for c, name in enumerate(TMT11_LABELS):
        present = design[:, c][design[:, c] > 0]
        expected = float(np.median(present)) if present.size else 0.0
        assert values[f"SearchTmt{name}Intensity"] == pytest.approx(expected, rel=1e-4), name
    assert values["SearchTmtMissingChannels"] == 1  # 131C
    missing = n + len(range(0, n, 3))  # 131C in every PSM, 128N in every third
    assert values["SearchTmtMissingValuesPct"] == pytest.approx(100 * missing / (11 * n), abs=1e-3)


def test_tmt10_on_the_same_spectra_ignores_the_11th_channel(yeast_5pct: SearchResult) -> None:
    tmt, design = with_reporters(yeast_5pct)
    values = search_values(dataclasses.replace(tmt, params=tmt.params.replace(tmt="tmt10")))
    assert "SearchTmt131CIntensity" not in values
    assert values["SearchTmtMissingChannels"] == 0
    n = design.shape[0]
    assert values["SearchTmtMissingValuesPct"] == pytest.approx(100 * len(range(0, n, 3)) / (10 * n), abs=1e-3)
