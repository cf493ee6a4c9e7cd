"""Training of the baselines' Keras models through ``shared.training.Trainer``."""
from __future__ import annotations

import os

import numpy as np

from shared.distributed import DistContext
from shared.seeding import set_seeds
from shared.training import Trainer


class _FileLog(DistContext):
    """Single-process context (baselines train on one process) whose log goes to a file."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def log(self, *args, **kwargs):
        with open(self.path, "a") as fh:
            print(*args, file=fh)


def split_indices(n, val_fraction, seed):
    """(train_idx, val_idx) of a random split; val empty when val_fraction is 0."""
    order = np.random.default_rng([int(seed), 7]).permutation(n)
    n_val = int(round(n * float(val_fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def build_seeded(factory, seed):
    """``factory()`` after seeding Python, NumPy and TF: the initial weights follow ``seed``."""
    set_seeds(int(seed))
    return factory()


def train(model, data, training_cfg, workdir, seed, val_fraction=0.1, on_epoch_end=None):
    """Fit ``model`` (contract ``compute_batch_loss(batch, training)``) on the dict of arrays
    ``data`` with the Trainer (config ``training_cfg``, seeded with ``seed``), holding out
    ``val_fraction`` for the validation loss; loads the best-validation weights when there is a
    validation set. The per-epoch log goes to ``workdir/train.log``. Returns the Trainer
    (history in ``trainer.history``)."""

    n = len(next(iter(data.values())))
    tr, va = split_indices(n, val_fraction, seed)
    cfg = dict(training_cfg, seed=int(seed))
    os.makedirs(workdir, exist_ok=True)
    trainer = Trainer(model, cfg, workdir, ctx=_FileLog(os.path.join(workdir, "train.log")))
    trainer.fit({k: v[tr] for k, v in data.items()},
                {k: v[va] for k, v in data.items()} if len(va) else None, on_epoch_end=on_epoch_end)
    if len(va):
        trainer.load_best()
    return trainer


def predict_batched(fn, data, batch_size=4096):
    """Concatenated NumPy output of ``fn(batch_dict)`` over batches of ``data``."""
    import tensorflow as tf

    n = len(next(iter(data.values())))
    out = []
    for a in range(0, n, batch_size):
        out.append(np.asarray(fn({k: tf.convert_to_tensor(v[a:a + batch_size]) for k, v in data.items()})))
    return np.concatenate(out)
