"""Seeded event-level train / validation / test splits keyed by event number.

Each event gets a pseudo-random number ``u = hash(event_number, seed)`` in [0, 1); it falls in the split whose
cumulative-fraction interval contains ``u``. The hash is SplitMix64 (Steele, Lea, Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) of ``event_number + seed * 0x9E3779B97F4A7C15`` (mod 2^64), its top
53 bits scaled to [0, 1). So the assignment depends only on (event number, seed, fractions): the same event lands
in the same split whatever the file, chunking or order, and the splits are disjoint by construction.
Event numbers must be unique within a data set (events sharing a number share a split).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_output

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
HASH_NAME = "splitmix64-v1"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of uint64 values (vectorised; arithmetic mod 2^64)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def event_uniform(event_number, seed: int = 0) -> np.ndarray:
    """Deterministic uniform number in [0, 1) per event number (float64)."""
    e = np.asarray(event_number)
    if e.size and not np.issubdtype(e.dtype, np.integer):
        raise TypeError(f"event_number must be integers, found dtype {e.dtype}")
    with np.errstate(over="ignore"):
        key = e.astype(np.int64).view(np.uint64) + np.uint64(int(seed) % 2**64) * _GOLDEN
    return (splitmix64(key) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


@dataclass
class Splits:
    """Named fractions (summing to 1) and a seed; see the module docstring."""

    fractions: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    seed: int = 0

    def __post_init__(self):
        if not self.fractions:
            raise ValueError("Splits: need at least one split")
        fr = {str(k): float(v) for k, v in self.fractions.items()}
        bad = {k: v for k, v in fr.items() if not (0.0 <= v <= 1.0)}
        if bad:
            raise ValueError(f"Splits: fractions must be in [0, 1], found {bad}")
        total = sum(fr.values())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"Splits: fractions must sum to 1, found {total} ({fr})")
        self.fractions = fr
        self.seed = int(self.seed)

    @property
    def names(self) -> list[str]:
        return list(self.fractions)

    @property
    def edges(self) -> np.ndarray:
        e = np.concatenate([[0.0], np.cumsum(list(self.fractions.values()))])
        e[-1] = 1.0  # guard against rounding of the sum
        return e

    def assign(self, event_number) -> np.ndarray:
        """Split code per event (index into :attr:`names`), int8."""
        u = event_uniform(event_number, self.seed)
        return (np.searchsorted(self.edges[1:-1], u, side="right")).astype(np.int8)

    def mask(self, event_number, name: str) -> np.ndarray:
        """Boolean mask of the events in split ``name``."""
        if name not in self.fractions:
            raise KeyError(f"unknown split {name!r}; splits: {self.names}")
        return self.assign(event_number) == self.names.index(name)

    def select(self, clouds, name: str):
        """The events of a cloud array that belong to split ``name``."""
        import awkward as ak

        return clouds[self.mask(ak.to_numpy(clouds.event_number), name)]

    def counts(self, event_number) -> dict[str, int]:
        c = np.bincount(self.assign(event_number), minlength=len(self.names))
        return {n: int(k) for n, k in zip(self.names, c)}

    # ------------------------------------------------------------------ persistence
    def to_dict(self, event_number=None) -> dict:
        d = {"hash": HASH_NAME, "seed": self.seed, "fractions": self.fractions}
        if event_number is not None:
            d["counts"] = self.counts(event_number)
        return d

    def save(self, path, event_number=None) -> None:
        """Write the split definition (and, given the data set's event numbers, the per-split counts) as JSON."""
        with atomic_output(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(event_number), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict, where: str = "splits") -> "Splits":
        if not isinstance(d, dict) or "fractions" not in d or "seed" not in d:
            raise ValueError(f"{where}: expected an object with 'fractions' and 'seed', found {str(d)[:80]!r}")
        if d.get("hash", HASH_NAME) != HASH_NAME:
            raise ValueError(f"{where}: hash {d.get('hash')!r} is not supported (expected {HASH_NAME!r})")
        return cls(dict(d["fractions"]), int(d["seed"]))

    @classmethod
    def load(cls, path, event_number=None) -> "Splits":
        """Read a JSON split definition; with ``event_number`` given, check saved counts still match."""
        try:
            d = json.loads(Path(path).read_text())
        except ValueError as err:
            raise ValueError(f"{path}: expected a JSON split definition ({err})") from None
        s = cls.from_dict(d, str(path))
        if event_number is not None and "counts" in d:
            now = s.counts(event_number)
            if now != d["counts"]:
                raise ValueError(f"{path}: split counts {d['counts']} were saved, these events give {now} "
                                 f"(different data set?)")
        return s
