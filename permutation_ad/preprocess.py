"""Masked standardisation of particle and jet features (the networks' inputs); constants are
JSON-able and saved with each model (``artifacts.preprocessor_path``)."""
from __future__ import annotations

import numpy as np

from shared.io import atomic_write_json, read_json


class Preprocessor:
    """``x' = (x − mean) / std`` per feature with masked particle statistics; padding stays 0.

    The log|Jacobian| of the map ``x → x'`` for one jet is ``−Σ_real Σ_f log std_f −
    Σ_j log std_j``; add it to a log density in standardised units to get physical units.
    """

    def __init__(self, p_mean, p_std, j_mean, j_std):
        self.p_mean, self.p_std = np.asarray(p_mean, np.float64), np.asarray(p_std, np.float64)
        self.j_mean, self.j_std = np.asarray(j_mean, np.float64), np.asarray(j_std, np.float64)

    @classmethod
    def fit(cls, constituents, mask, jets, dequantized_columns=(), min_std=1e-6):
        """Masked statistics; a dequantised column's variance includes the U(0,1) noise (+1/12)."""
        m = np.asarray(mask, bool)
        real = np.asarray(constituents, np.float64)[m]
        j = np.asarray(jets, np.float64)
        j_var = j.var(0)
        for c in dequantized_columns:
            j_var[c] += 1.0 / 12.0
        return cls(real.mean(0), np.maximum(real.std(0), min_std), j.mean(0),
                   np.maximum(np.sqrt(j_var), min_std))

    def transform(self, constituents, mask, jets):
        m = np.asarray(mask, bool)[..., None]
        c = (np.asarray(constituents, np.float64) - self.p_mean) / self.p_std
        c = np.where(m, c, 0.0).astype(np.float32)
        j = ((np.asarray(jets, np.float64) - self.j_mean) / self.j_std).astype(np.float32)
        return c, j

    def transform_split(self, split) -> dict:
        """A processed split (constituents, mask, jets[, label]) → network batch arrays."""
        c, j = self.transform(split["constituents"], split["mask"], split["jets"])
        out = {"constituents": c, "mask": np.asarray(split["mask"], np.float32), "jets": j}
        if "label" in split:
            out["label"] = np.asarray(split["label"], np.float32)
        return out

    def inverse(self, constituents, mask, jets):
        m = np.asarray(mask, bool)[..., None]
        c = np.where(m, np.asarray(constituents, np.float64) * self.p_std + self.p_mean, 0.0)
        return c, np.asarray(jets, np.float64) * self.j_std + self.j_mean

    def log_jacobian_particles(self, mask):
        """(B,) log|det d x'/d x| of the particle part of each jet."""
        return -np.asarray(mask, bool).sum(axis=1) * np.log(self.p_std).sum()

    def log_jacobian_jets(self):
        """Scalar log|det d x'/d x| of the jet-feature part."""
        return float(-np.log(self.j_std).sum())

    def to_dict(self):
        return {k: getattr(self, k).tolist() for k in ("p_mean", "p_std", "j_mean", "j_std")}

    @classmethod
    def from_dict(cls, d):
        return cls(d["p_mean"], d["p_std"], d["j_mean"], d["j_std"])

    def save_json(self, path):
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load_json(cls, path):
        return cls.from_dict(read_json(path, "preprocessor"))
