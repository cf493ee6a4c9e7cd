"""The conditioning and layout both dijet generators share (``DijetDiffusion``,
``DijetFlowMatching``): fixed Fourier features of the scaled mjj per net, and the particles of
both jets folded into one batch of single jets with their conditioning vectors.

:class:`DijetConditioning` is a mixin of the two ``keras.Model`` classes; each model calls
:meth:`~DijetConditioning.init_conditioning` in its ``__init__`` with the merged Fourier settings
of its selected parts.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.layers import FourierFeatures


class DijetConditioning:
    """mjj conditioning per part (``<part>_mjj_fourier`` layers) and the per-jet particle layout."""

    def init_conditioning(self, fourier_cfgs, num_jet_features) -> dict:
        """Create one ``FourierFeatures`` layer per part from ``fourier_cfgs`` {part: {num_frequencies,
        scale, seed, include_input}}; returns {part: width of its mjj conditioning vector}."""
        self.num_jet_features = int(num_jet_features)
        self.mjj_include_input, dims = {}, {}
        for part, ff in fourier_cfgs.items():
            nf = int(ff["num_frequencies"])
            setattr(self, f"{part}_mjj_fourier", FourierFeatures(
                nf, kind="gaussian", scale=float(ff["scale"]), seed=int(ff["seed"]),
                name=f"{part}_mjj_fourier"))
            self.mjj_include_input[part] = bool(ff["include_input"])
            dims[part] = 2 * nf + int(self.mjj_include_input[part])
        return dims

    def mjj_cond(self, mjj, part):
        """Conditioning vector (B, D) of the scaled mjj (B,) for ``part``'s net: Fourier
        features (+ mjj itself with ``include_input``)."""
        x = tf.reshape(tf.cast(mjj, tf.float32), (-1, 1))
        f = getattr(self, f"{part}_mjj_fourier")(x)
        return tf.concat([f, x], -1) if self.mjj_include_input[part] else f

    def build_conditioning(self) -> None:
        """Build the (fixed) Fourier frequencies of every part (before loading weights)."""
        for part in self.mjj_include_input:
            self.mjj_cond(np.zeros(1, np.float32), part)

    def particle_inputs(self, jets, parts, mask, mjj_cond):
        """Both jets as one batch of single jets: particles (2B, P, 3), mask (2B, P) and the
        conditioning (2B, F + D) = that jet's network features and ``mjj_cond`` (B, D)."""
        b = tf.shape(parts)[0]
        p = tf.shape(parts)[2]
        flat_parts = tf.reshape(parts, (b * 2, p, 3))
        flat_mask = tf.reshape(mask, (b * 2, p))
        cond = tf.concat([tf.reshape(jets, (b * 2, self.num_jet_features)),
                          tf.reshape(tf.repeat(mjj_cond[:, None, :], 2, axis=1), (b * 2, -1))], -1)
        return flat_parts, flat_mask, cond

    @classmethod
    def from_preprocessor(cls, model_cfg, num_particles, pre, parts=("jet", "particle")):
        """The model for a fitted ``Preprocessor`` ``pre``: multiplicity dequantised by
        1/std(N), jet features as ``pre`` makes them, Fourier frequencies built."""
        n = pre.n_index
        model = cls(model_cfg, num_particles, n_dequant=1.0 / float(pre.jet_std[n]), n_feature=n,
                    parts=parts, num_jet_features=pre.n_jet_features)
        model.build_conditioning()
        return model


__all__ = ["DijetConditioning"]
