"""Search parameters: one frozen dataclass, validated once, with the part that shapes the database.

Modifications are named by Unimod accession (``"[UNIMOD:35]"``, ``"UNIMOD:35"``, ``35``) or by one of
the common Unimod titles in :data:`UNIMOD_TITLES`.  ``tmt`` adds the label as a fixed modification on
K and on the peptide N-terminus (Unimod 737 TMT6plex for TMT 6/10/11-plex, 2016 TMTpro for 16/18-plex)
and switches on the reporter-ion values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

# Unimod record ids (https://www.unimod.org) of the modifications labs name most often.
UNIMOD_TITLES: dict[str, int] = {
    "acetyl": 1,
    "carbamidomethyl": 4,
    "deamidated": 7,
    "gln->pyro-glu": 28,
    "oxidation": 35,
    "phospho": 21,
    "tmt6plex": 737,
    "tmtpro": 2016,
}

# enzyme name -> (cleave at, not before, cleaves C-terminal of the site)
ENZYMES: dict[str, tuple[str, str, bool]] = {
    "trypsin": ("KR", "P", True),
    "trypsin/p": ("KR", "", True),
    "lys-c": ("K", "P", True),
    "arg-c": ("R", "P", True),
    "chymotrypsin": ("FWYL", "P", True),
    "glu-c": ("E", "P", True),
    "asp-n": ("D", "", False),
}

# TMT kind -> (Unimod id of the label, number of channels)
TMT_KINDS: dict[str, tuple[int, int]] = {
    "tmt6": (737, 6), "tmt10": (737, 10), "tmt11": (737, 11), "tmt16": (2016, 16), "tmt18": (2016, 18),
}

_RESIDUES = set("ACDEFGHIKLMNPQRSTVWY")
_TERMINI = {"^", "$", "[", "]"}  # peptide N/C-terminus, protein N/C-terminus (Sage's notation)


def unimod(name: Any) -> str:
    """``"[UNIMOD:n]"`` for an accession or a known title; ValueError otherwise."""
    if isinstance(name, int) and not isinstance(name, bool):
        return f"[UNIMOD:{name}]"
    text = str(name).strip()
    key = text.strip("[]").lower()
    if key.startswith("unimod:") and key[7:].isdigit():
        return f"[UNIMOD:{int(key[7:])}]"
    if key in UNIMOD_TITLES:
        return f"[UNIMOD:{UNIMOD_TITLES[key]}]"
    raise ValueError(f"unknown modification {text!r} (use a Unimod accession such as [UNIMOD:35] or one of "
                     f"{', '.join(sorted(UNIMOD_TITLES))})")


def mods_from_strings(items: Any, *, many: bool) -> dict[str, Any]:
    """``["C:Carbamidomethyl", "M:Oxidation"]`` (the config file's form) as ``{site: mod}`` (``{site: [mods]}``)."""
    out: dict[str, Any] = {}
    for item in items:
        site, sep, mod = str(item).partition(":")
        if not sep or not site or not mod:
            raise ConfigError(f"search: modification {item!r} is not 'site:modification' (e.g. 'M:Oxidation')")
        if many:
            out.setdefault(site, []).append(mod)
        else:
            out[site] = mod
    return out


def _site(site: str) -> str:
    site = str(site)
    if not site or any(c not in _RESIDUES and c not in _TERMINI for c in site) or len(site) > 2:
        raise ValueError(f"bad modification site {site!r} (a residue letter, ^/$ peptide N/C-term, [/] protein N/C-term, "
                         "or a terminus followed by a residue such as ^Q)")
    return site


_CONFIG_KEYS = ("threads", "memory_mb", "fdr", "enzyme", "missed_cleavages", "tmt", "precursor_tolerance_ppm",
                "fragment_tolerance", "fragment_unit")


@dataclass(frozen=True)
class SearchParams:
    enzyme: str = "trypsin"
    missed_cleavages: int = 1
    min_length: int = 7
    max_length: int = 30
    min_peptide_mass: float = 500.0
    max_peptide_mass: float = 5000.0
    fixed_mods: Mapping[str, str] = field(default_factory=lambda: {"C": "[UNIMOD:4]"})
    variable_mods: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {"M": ("[UNIMOD:35]",)})
    max_variable_mods: int = 2
    tmt: str = ""  # "", tmt6, tmt10, tmt11, tmt16, tmt18
    precursor_tolerance_ppm: float = 20.0
    fragment_tolerance: float = 0.0  # 0 = auto: 20 ppm for Orbitrap (FTMS) MS2, 0.5 Da for ion-trap MS2
    fragment_unit: str = "auto"  # auto | ppm | da
    min_isotope_error: int = -1
    max_isotope_error: int = 3
    min_charge: int = 2
    max_charge: int = 4
    min_matched_peaks: int = 4
    fdr: float = 0.01
    decoy_tag: str = "rev_"
    threads: int = 2
    memory_mb: int = 0  # 0 = no cap

    def __post_init__(self) -> None:
        try:
            self._validate()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"search: {exc}") from None

    def _validate(self) -> None:
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), f.type
            if kind == "str" and not isinstance(value, str):
                raise ValueError(f"{f.name} must be a string, not {value!r}")
            if kind in ("int", "float") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                             or (kind == "int" and not float(value).is_integer())):
                raise ValueError(f"{f.name} must be a {'whole ' if kind == 'int' else ''}number, not {value!r}")
        if self.enzyme.lower() not in ENZYMES:
            raise ValueError(f"enzyme {self.enzyme!r} is not one of {', '.join(ENZYMES)}")
        object.__setattr__(self, "enzyme", self.enzyme.lower())
        if not 0 <= int(self.missed_cleavages) <= 5:
            raise ValueError("missed_cleavages must be 0..5")
        if not 1 <= self.min_length <= self.max_length <= 100:
            raise ValueError("need 1 <= min_length <= max_length <= 100")
        if not 0 < self.min_peptide_mass < self.max_peptide_mass:
            raise ValueError("need 0 < min_peptide_mass < max_peptide_mass")
        fixed_in, variable_in = self.fixed_mods, self.variable_mods
        if isinstance(fixed_in, (list, tuple)):  # the config file's "site:modification" strings
            fixed_in = mods_from_strings(fixed_in, many=False)
        if isinstance(variable_in, (list, tuple)):
            variable_in = mods_from_strings(variable_in, many=True)
        if not isinstance(fixed_in, Mapping) or not isinstance(variable_in, Mapping):
            raise ValueError("fixed_mods and variable_mods are {site: modification} or ['site:modification', ...]")
        fixed = {_site(k): unimod(v) for k, v in dict(fixed_in).items()}
        variable = {_site(k): tuple(unimod(m) for m in ((v,) if isinstance(v, (str, int)) else v))
                    for k, v in dict(variable_in).items()}
        tmt = self.tmt.lower().replace("-", "").replace("plex", "")
        if tmt and tmt not in TMT_KINDS:
            raise ValueError(f"tmt {self.tmt!r} is not one of {', '.join(TMT_KINDS)} (or empty)")
        if tmt:
            label = f"[UNIMOD:{TMT_KINDS[tmt][0]}]"
            fixed.setdefault("K", label)
            fixed.setdefault("^", label)
        object.__setattr__(self, "fixed_mods", dict(sorted(fixed.items())))
        object.__setattr__(self, "variable_mods", dict(sorted(variable.items())))
        object.__setattr__(self, "tmt", tmt)
        if not 0 <= self.max_variable_mods <= 5:
            raise ValueError("max_variable_mods must be 0..5")
        if not 0 < self.precursor_tolerance_ppm <= 1000:
            raise ValueError("precursor_tolerance_ppm must be in (0, 1000]")
        unit = self.fragment_unit.lower()
        if unit not in ("auto", "ppm", "da"):
            raise ValueError("fragment_unit must be auto, ppm or da")
        object.__setattr__(self, "fragment_unit", unit)
        if unit != "auto" and not self.fragment_tolerance > 0:
            raise ValueError("fragment_tolerance must be > 0 when fragment_unit is ppm or da")
        if not self.min_isotope_error <= 0 <= self.max_isotope_error <= 5:
            raise ValueError("need min_isotope_error <= 0 <= max_isotope_error <= 5")
        if not 1 <= self.min_charge <= self.max_charge <= 8:
            raise ValueError("need 1 <= min_charge <= max_charge <= 8")
        if not 0 < self.fdr < 1:
            raise ValueError("fdr must be a fraction in (0, 1), e.g. 0.01 for 1 %")
        if not self.decoy_tag:
            raise ValueError("decoy_tag must not be empty")
        if self.threads < 1 or self.memory_mb < 0:
            raise ValueError("threads must be >= 1 and memory_mb >= 0")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> SearchParams:
        """Parameters from a config table or a pipeline's JSON; unknown keys are a ConfigError."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"search: unknown parameter(s) {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_config(cls, search: Any, overrides: Mapping[str, Any] | None = None) -> SearchParams:
        """From the ``[engine.search]`` table (``SearchConfig``), then a pipeline's own ``overrides``."""
        data = {name: getattr(search, name) for name in _CONFIG_KEYS}
        data["fixed_mods"] = mods_from_strings(search.fixed_mods, many=False)
        data["variable_mods"] = mods_from_strings(search.variable_mods, many=True)
        if overrides is not None and not isinstance(overrides, Mapping):
            raise ConfigError("search: the parameters must be a JSON object")
        data.update(overrides or {})
        return cls.from_mapping(data)

    def replace(self, **changes: Any) -> SearchParams:
        return dataclasses.replace(self, **changes)

    def database_part(self) -> dict[str, Any]:
        """The parameters that shape the digest (and so the database's cache key)."""
        return {
            "enzyme": self.enzyme, "missed_cleavages": self.missed_cleavages,
            "min_length": self.min_length, "max_length": self.max_length,
            "min_peptide_mass": self.min_peptide_mass, "max_peptide_mass": self.max_peptide_mass,
            "fixed_mods": dict(self.fixed_mods), "variable_mods": {k: list(v) for k, v in self.variable_mods.items()},
            "max_variable_mods": self.max_variable_mods, "decoy_tag": self.decoy_tag,
        }

    def database_key(self, fasta_bytes: bytes) -> str:
        """sha256 over the FASTA's bytes and the digest parameters (canonical JSON)."""
        h = hashlib.sha256()
        h.update(hashlib.sha256(fasta_bytes).digest())
        h.update(json.dumps(self.database_part(), sort_keys=True, separators=(",", ":")).encode())
        return h.hexdigest()

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["fixed_mods"] = dict(self.fixed_mods)
        out["variable_mods"] = {k: list(v) for k, v in self.variable_mods.items()}
        return out
