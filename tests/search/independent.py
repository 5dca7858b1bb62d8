"""A small independent peptide search, used only as a reference for the Sage stage's results.

Nothing here calls qcdaemon or Sage.  Spectra come straight from opentfraw (the RAW reader), the
database is our own tryptic digest of the FASTA, masses come from the Unimod/NIST monoisotopic
residue table below, and the score is a different one from Sage's hyperscore:

- digest: trypsin (after K/R, not before P), up to 1 missed cleavage, 7-30 residues, 500-5000 Da,
  fixed carbamidomethyl C, up to 2 variable oxidised M, pseudo-reversed decoys (each target peptide
  reversed except its C-terminal residue, Elias & Gygi, Nat. Methods 2007, 4, 207);
- candidates: peptides within +-20 ppm of the precursor's neutral mass, isotope errors -1..3;
- score: the binomial probability score of Andromeda (Cox et al., J. Proteome Res. 2011, 10, 1794):
  with the 10 most intense peaks per 100 m/z kept, k of the n theoretical b/y ions (charge 1, and
  charge 2 for precursors of charge >= 3) matched within 20 ppm, p = the fraction of the m/z axis
  the kept peaks' windows cover, score = -10 log10 P(X >= k), X ~ Binomial(n, p);
- FDR: target-decoy competition (best target or decoy per spectrum), FDR at a score threshold
  (D + 1) / T, q-value = the lowest FDR at which the PSM is accepted (Kall et al., J. Proteome Res.
  2008, 7, 29; Levitsky et al., J. Proteome Res. 2017, 16, 393 for the +1).
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import opentfraw

# Monoisotopic residue masses (Unimod / NIST), water, proton, 13C-12C spacing.
RESIDUE = {
    "G": 57.021464, "A": 71.037114, "S": 87.032028, "P": 97.052764, "V": 99.068414, "T": 101.047679,
    "C": 103.009185, "L": 113.084064, "I": 113.084064, "N": 114.042927, "D": 115.026943, "Q": 128.058578,
    "K": 128.094963, "E": 129.042593, "M": 131.040485, "H": 137.058912, "F": 147.068414, "R": 156.101111,
    "Y": 163.063329, "W": 186.079313,
}
CARBAMIDOMETHYL, OXIDATION = 57.021464, 15.994915
WATER, PROTON, C13 = 18.010565, 1.007276, 1.0033548
PPM = 20.0
_CUT = re.compile(r"[KR](?=[^P])")  # trypsin: after K or R, not before P (and not at the protein's end)
_OTHER = re.compile(f"[^{''.join(RESIDUE)}]")


@dataclass(frozen=True)
class Hit:
    scan: int
    sequence: str  # plain residues
    oxidations: int
    decoy: bool
    score: float
    charge: int
    precursor_error_ppm: float  # (observed - isotope error - calculated) / calculated * 1e6
    q: float = 1.0


def read_fasta(path: Path) -> list[str]:
    data = path.read_bytes()
    text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode()
    return ["".join(chunk.splitlines()[1:]) for chunk in text.split(">")[1:]]


def digest(proteins: list[str]) -> list[str]:
    """Tryptic peptides, up to 1 missed cleavage, 7-30 residues (distinct, every protein)."""
    out: set[str] = set()
    for seq in proteins:
        cuts = [0] + [m.end() for m in _CUT.finditer(seq)] + [len(seq)]
        for a in range(len(cuts) - 1):
            for b in (a + 1, a + 2):
                if b < len(cuts):
                    pep = seq[cuts[a]:cuts[b]]
                    if 7 <= len(pep) <= 30 and not _OTHER.search(pep):
                        out.add(pep)
    return sorted(out)


class Database:
    """Every peptide form (target and decoy, 0-2 oxidised M) sorted by neutral mass (numpy arrays)."""

    def __init__(self, peptides: list[str]) -> None:
        targets = set(peptides)
        decoys = [d for d in (p[-2::-1] + p[-1] for p in peptides) if d not in targets]
        self.seqs = peptides + decoys
        lookup = np.zeros(256)
        for residue, mass in RESIDUE.items():
            lookup[ord(residue)] = mass + (CARBAMIDOMETHYL if residue == "C" else 0.0)
        codes = np.frombuffer("".join(self.seqs).encode(), dtype=np.uint8)
        starts = np.cumsum([0] + [len(q) for q in self.seqs[:-1]])
        base = np.add.reduceat(lookup[codes], starts) + WATER
        mets = np.add.reduceat((codes == ord("M")).astype(np.int64), starts)
        index, ox = [], []
        for n in range(3):  # 0, 1 or 2 oxidised M
            have = np.flatnonzero(mets >= n)
            index.append(have)
            ox.append(np.full(have.size, n))
        idx, oxs = np.concatenate(index), np.concatenate(ox)
        mass = base[idx] + oxs * OXIDATION
        keep = (mass >= 500) & (mass <= 5000)
        order = np.argsort(mass[keep], kind="stable")
        self.mass, self.index, self.ox = mass[keep][order], idx[keep][order], oxs[keep][order]
        self.targets = len(peptides)

    def candidates(self, neutral: float) -> list[tuple[float, str, int, bool]]:
        out = []
        for iso in range(-1, 4):
            target = neutral - iso * C13
            lo, hi = np.searchsorted(self.mass, (target * (1 - PPM * 1e-6), target * (1 + PPM * 1e-6)))
            out.extend((float(self.mass[j]), self.seqs[self.index[j]], int(self.ox[j]), bool(self.index[j] >= self.targets))
                       for j in range(lo, hi))
        return out


def fragments(seq: str, oxidations: int, max_charge: int) -> np.ndarray:
    """b and y ion m/z (oxidations placed on the first Ms: the count, not the site, is scored)."""
    masses = [RESIDUE[a] + (CARBAMIDOMETHYL if a == "C" else 0.0) for a in seq]
    left = oxidations
    for i, a in enumerate(seq):
        if a == "M" and left:
            masses[i] += OXIDATION
            left -= 1
    prefix = np.cumsum(masses)[:-1]
    total = sum(masses) + WATER
    ions = np.concatenate([prefix, total - prefix])  # b (neutral residues) and y (+ water) ions
    return np.concatenate([(ions + z * PROTON) / z for z in range(1, max_charge + 1)])


def kept_peaks(mz: np.ndarray, intensity: np.ndarray, per_100: int = 10) -> np.ndarray:
    keep = []
    for window in np.unique(np.floor(mz / 100.0)):
        idx = np.flatnonzero(np.floor(mz / 100.0) == window)
        keep.extend(idx[np.argsort(intensity[idx])[::-1][:per_100]])
    return np.sort(mz[np.array(keep, dtype=int)]) if keep else np.array([])


def binomial_score(n: int, k: int, p: float) -> float:
    tail = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))
    return -10 * math.log10(max(tail, 1e-300))


def match_probability(peaks: np.ndarray, span: float) -> float:
    """The chance that a random m/z falls in a kept peak's +-20 ppm window (Andromeda's p)."""
    return min(len(peaks) * 2 * PPM * 1e-6 * float(np.median(peaks)) / span, 0.5) if len(peaks) else 0.5


def score(peaks: np.ndarray, theo: np.ndarray, p: float) -> float:
    lo, hi = np.searchsorted(peaks, (theo * (1 - PPM * 1e-6), theo * (1 + PPM * 1e-6)))
    return binomial_score(len(theo), int(np.count_nonzero(hi > lo)), p)


def search(raw_path: Path, fasta_path: Path) -> list[Hit]:
    """The best match (target or decoy) of every MS2 spectrum, with TDC q-values."""
    db = Database(digest(read_fasta(fasta_path)))
    raw = opentfraw.RawFile(str(raw_path))
    table = raw.scan_table()
    hits = []
    for i, number in enumerate(table["scan_number"]):
        if table["ms_level"][i] != 2:
            continue
        mono = raw.scan_parameters(number).get("Monoisotopic M/Z:") or 0.0
        mz_text = re.search(r"ms2 ([\d.]+)@", table["filter_string"][i] or "")
        precursor = float(mono) if mono and mono > 0 else float(mz_text.group(1)) if mz_text else 0.0
        mz, intensity = (np.asarray(a, dtype=np.float64) for a in raw.peaks(number))
        if not precursor or mz.size == 0:
            continue
        peaks = kept_peaks(mz, intensity)
        p = match_probability(peaks, float(table["high_mz"][i] - table["low_mz"][i]) or 1000.0)
        charges = [int(table["charge"][i])] if table["charge"][i] else [2, 3, 4]
        best: Hit | None = None
        for z in charges:
            neutral = (precursor - PROTON) * z
            for mass, seq, ox, decoy in db.candidates(neutral):
                s = score(peaks, fragments(seq, ox, 2 if z >= 3 else 1), p)
                if best is None or s > best.score:
                    iso = round((neutral - mass) / C13)
                    err = (neutral - iso * C13 - mass) / mass * 1e6
                    best = Hit(int(number), seq, ox, decoy, s, z, err)
        if best is not None:
            hits.append(best)
    return with_q_values(hits)


def with_q_values(hits: list[Hit]) -> list[Hit]:
    """q-values by target-decoy competition: FDR(t) = (D(>=t) + 1) / T(>=t), made monotone from below."""
    ordered = sorted(hits, key=lambda h: -h.score)
    fdr, decoys, targets = [], 0, 0
    for h in ordered:
        decoys += h.decoy
        targets += not h.decoy
        fdr.append((decoys + 1) / max(targets, 1))
    q = list(itertools.accumulate(reversed(fdr), min))[::-1]
    return [dataclasses.replace(h, q=min(qv, 1.0)) for h, qv in zip(ordered, q)]
