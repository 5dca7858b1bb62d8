"""TMT reporter ions: per channel, the most intense peak within 0.003 Da of the reporter's m/z.

Reporter m/z values are the monoisotopic singly charged reporter ions as Thermo lists them for
TMT 6/10/11-plex and TMTpro 16/18-plex (Thermo Fisher Scientific, TMT and TMTpro product
instructions, reporter ion masses).  The 0.003 Da window is half the 6.32 mDa spacing of the
N/C pairs (e.g. 127N 127.124761 / 127C 127.131081), so neighbouring channels never share a peak.
"""

from __future__ import annotations

import numpy as np

WINDOW_DA = 0.003

_TMT11 = {
    "126": 126.127726, "127N": 127.124761, "127C": 127.131081, "128N": 128.128116, "128C": 128.134436,
    "129N": 129.131471, "129C": 129.137790, "130N": 130.134825, "130C": 130.141145, "131N": 131.138180,
    "131C": 131.144499,
}
_TMTPRO_EXTRA = {
    "132N": 132.141535, "132C": 132.147855, "133N": 133.144890, "133C": 133.151210, "134N": 134.148245,
    "134C": 134.154565, "135N": 135.151600,
}

CHANNELS: dict[str, dict[str, float]] = {
    "tmt6": {"126": _TMT11["126"], "127": _TMT11["127N"], "128": _TMT11["128C"], "129": _TMT11["129N"],
             "130": _TMT11["130C"], "131": _TMT11["131N"]},
    "tmt10": {k: v for k, v in _TMT11.items() if k != "131C"},
    "tmt11": dict(_TMT11),
    "tmt16": _TMT11 | {k: _TMTPRO_EXTRA[k] for k in ("132N", "132C", "133N", "133C", "134N")},
    "tmt18": _TMT11 | _TMTPRO_EXTRA,
}


def reporter_intensities(kind: str, mz: np.ndarray | None, intensity: np.ndarray | None) -> np.ndarray:
    """One intensity per channel of ``kind`` (0 where no peak lies within the window)."""
    targets = np.fromiter(CHANNELS[kind].values(), dtype=np.float64)
    out = np.zeros(targets.size)
    if mz is None or intensity is None or mz.size == 0:
        return out
    for i, target in enumerate(targets):
        lo, hi = np.searchsorted(mz, (target - WINDOW_DA, target + WINDOW_DA))
        if hi > lo:
            out[i] = float(intensity[lo:hi].max())
    return out
