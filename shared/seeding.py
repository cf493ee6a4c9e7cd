"""Seeding of Python, NumPy and TensorFlow for reproducible runs."""
from __future__ import annotations

import os
import random

import numpy as np


def set_seeds(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy's global RNG and TensorFlow's global seed.

    ``deterministic=True`` also enables TF op determinism (slower; some GPU ops then raise
    instead of running non-deterministically).
    """
    import tensorflow as tf

    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # affects subprocesses only
    random.seed(seed)
    np.random.seed(seed % 2**32)
    tf.random.set_seed(seed)
    try:
        import keras

        keras.utils.set_random_seed(seed)
    except ImportError:  # pragma: no cover - keras ships with TF here
        pass
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """Independent NumPy generator for one (seed, epoch[, stream]); used for shuffling so that
    a resumed run draws the same permutation as an uninterrupted one."""
    return np.random.default_rng([int(seed), int(epoch), int(stream)])
