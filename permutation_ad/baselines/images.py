"""Jet images (SPEC §4; ``whats_anomalous_in_lhc_jets.txt`` Sec. 2.3).

Steps, each optional through the ``image`` config block: centre on the pT-weighted centroid;
rotate the principal axis of the pT-weighted (Δη, Δφ) covariance onto the η axis; flip so that
the half-planes η > 0 and φ > 0 carry at least as much pT as their mirror images; pixelate
into ``size`` x ``size`` bins over [-extent, extent]^2 (pixel = sum of constituent pT);
pixel intensity -> intensity^pt_power; Gaussian filter of ``sigma`` pixels; normalise to sum 1.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def _align(x, y, w, center, rotate, flip):
    """Centre / rotate / flip per-jet coordinates (N, P) with weights w (0 on padding)."""
    tot = w.sum(1, keepdims=True)
    if center:
        x = x - (w * x).sum(1, keepdims=True) / tot
        y = y - (w * y).sum(1, keepdims=True) / tot
    if rotate:
        cxx = (w * x * x).sum(1) / tot[:, 0]
        cyy = (w * y * y).sum(1) / tot[:, 0]
        cxy = (w * x * y).sum(1) / tot[:, 0]
        theta = 0.5 * np.arctan2(2.0 * cxy, cxx - cyy)  # major axis angle from the x axis
        c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
        x, y = c * x + s * y, -s * x + c * y
    if flip:
        x = np.where(((w * (x > 0)).sum(1) < (w * (x < 0)).sum(1))[:, None], -x, x)
        y = np.where(((w * (y > 0)).sum(1) < (w * (y < 0)).sum(1))[:, None], -y, y)
    return x, y


def jet_images(js, size=40, extent=0.8, pt_power=1.0, sigma=0.0, center=True, rotate=True,
               flip=True):
    """(N, size, size) float32 images of a jet set (see the module docstring); axis 1 is η,
    axis 2 is φ. Constituents outside the window are dropped; jets with no pT inside stay 0."""
    parts, mask = js["particles"], js["mask"]
    w = np.where(mask, parts[..., 2], 0.0)
    x, y = _align(parts[..., 0], parts[..., 1], w, center, rotate, flip)
    n = len(parts)
    step = 2.0 * extent / size
    ix = np.floor((x + extent) / step).astype(np.int64)
    iy = np.floor((y + extent) / step).astype(np.int64)
    inside = mask & (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size)
    flat = np.zeros(n * size * size, np.float64)
    jet_idx = np.broadcast_to(np.arange(n)[:, None], ix.shape)
    np.add.at(flat, (jet_idx * size * size + ix * size + iy)[inside], w[inside])
    img = flat.reshape(n, size, size)
    if pt_power != 1.0:
        img = np.power(img, pt_power, where=img > 0, out=np.zeros_like(img))
    if sigma > 0:
        img = gaussian_filter(img, sigma=(0, sigma, sigma), mode="constant", truncate=4.0)
    tot = img.sum((1, 2), keepdims=True)
    img = np.divide(img, tot, out=np.zeros_like(img), where=tot > 0)
    return img.astype(np.float32)


def image_features(js, cfg):
    """Flattened images (N, size^2) for an ``image`` config block."""
    img = jet_images(js, **{k: cfg[k] for k in ("size", "extent", "pt_power", "sigma", "center",
                                                  "rotate", "flip")})
    return img.reshape(len(img), -1)
