"""Data-parallel context: Horovod when importable and launched, else a single-process no-op.

``get_context()`` decides once per process:

* ``PAD_DISTRIBUTED=none``  → single process, even under a launcher;
* ``PAD_DISTRIBUTED=horovod`` → Horovod (error if it cannot be imported);
* otherwise (``auto``) → Horovod if ``horovod.tensorflow`` imports *and* a launcher started us
  (horovodrun/Gloo sets ``HOROVOD_RANK``; mpirun/srun set ``OMPI_COMM_WORLD_SIZE``/``PMI_SIZE``/
  ``PMIX_RANK``/``SLURM_STEP_NUM_TASKS`` > 1); a launcher with several ranks but no Horovod is an
  error (rather than N unsynchronised copies).

Under Keras 3 ``hvd.DistributedOptimizer`` does not average gradients (SPEC §8): callers
allreduce explicitly with :meth:`DistContext.allreduce_grads` and then ``optimizer.apply``.
"""
from __future__ import annotations

import os

import numpy as np

ENV_SWITCH = "PAD_DISTRIBUTED"
_LAUNCH_VARS = ("HOROVOD_RANK", "HOROVOD_SIZE")
_MPI_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")

_CONTEXT = None


def _tf_variables(variables):
    import tensorflow as tf

    out = []
    for v in variables:
        if isinstance(v, tf.Variable):
            out.append(v)
        else:  # keras.Variable
            out.append(v.value)
    return out


class DistContext:
    """Single-process context; the Horovod subclass overrides the collective operations."""

    horovod = False

    def __init__(self):
        self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # -- devices -----------------------------------------------------------------------------
    def pin_gpu(self) -> None:
        """Enable memory growth; under Horovod show each rank only the GPU of its local rank."""
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised
                pass
        if gpus and self.size > 1:
            try:
                tf.config.set_visible_devices(gpus[self.local_rank % len(gpus)], "GPU")
            except RuntimeError:
                pass

    # -- collectives (identity here) -------------------------------------------------------------
    def allreduce_grads(self, grads):
        """Average a list of gradients over ranks (None entries stay None)."""
        return list(grads)

    def broadcast_variables(self, variables, root_rank: int = 0) -> None:
        """Copy variable values from ``root_rank`` to every rank."""

    def mean(self, value) -> float:
        """Mean of a Python/NumPy scalar over ranks (for metrics; call outside tf.function)."""
        return float(value)

    def sum(self, value) -> float:
        """Sum of a scalar over ranks."""
        return float(value)

    def barrier(self) -> None:
        """Wait until every rank gets here."""

    def broadcast_object(self, obj, root_rank: int = 0):
        """Send a picklable object from ``root_rank`` to all ranks."""
        return obj

    # -- data ---------------------------------------------------------------------------------
    def shard(self, n: int, drop_remainder: bool = True) -> np.ndarray:
        """Indices of ``range(n)`` owned by this rank (strided).

        ``drop_remainder=True`` gives every rank the same count ``n // size`` (needed when every
        rank must take the same number of optimizer steps); False covers all of ``range(n)``.
        """
        stop = (n // self.size) * self.size if drop_remainder else n
        return np.arange(self.rank, stop, self.size)

    def scale_lr(self, lr: float, enabled: bool) -> float:
        """Linear LR scaling by world size (Goyal et al.) when enabled."""
        return lr * self.size if enabled else lr

    # -- logging --------------------------------------------------------------------------------
    def log(self, *args, **kwargs) -> None:
        """print() on rank 0 only."""
        if self.is_root:
            kwargs.setdefault("flush", True)
            print(*args, **kwargs)

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"


class HorovodContext(DistContext):
    """Horovod (TensorFlow) data parallelism; gradients averaged with grouped_allreduce."""

    horovod = True

    def __init__(self, hvd):
        super().__init__()
        hvd.init()
        self.hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()

    def allreduce_grads(self, grads):
        grads = list(grads)
        idx = [i for i, g in enumerate(grads) if g is not None]
        if not idx or self.size == 1:
            return grads
        reduced = self.hvd.grouped_allreduce([grads[i] for i in idx], op=self.hvd.Average)
        for i, g in zip(idx, reduced):
            grads[i] = g
        return grads

    def broadcast_variables(self, variables, root_rank: int = 0) -> None:
        variables = _tf_variables(variables)
        if variables and self.size > 1:
            self.hvd.broadcast_variables(variables, root_rank=root_rank)

    def _allreduce_scalar(self, value, op):
        import tensorflow as tf

        tensor = tf.constant(float(value), dtype=tf.float64)
        return float(self.hvd.allreduce(tensor, op=op).numpy())

    def mean(self, value) -> float:
        return self._allreduce_scalar(value, self.hvd.Average)

    def sum(self, value) -> float:
        return self._allreduce_scalar(value, self.hvd.Sum)

    def barrier(self) -> None:
        self._allreduce_scalar(0.0, self.hvd.Sum)

    def broadcast_object(self, obj, root_rank: int = 0):
        return self.hvd.broadcast_object(obj, root_rank=root_rank)


def launched_by_launcher() -> bool:
    """True when an MPI/Gloo/srun launcher started several ranks (or horovodrun started us)."""
    if any(v in os.environ for v in _LAUNCH_VARS):
        return True
    for var in _MPI_SIZE_VARS:
        try:
            if int(os.environ.get(var, "1")) > 1:
                return True
        except ValueError:
            continue
    return False


def get_context(mode: str | None = None, pin_gpu: bool = True) -> DistContext:
    """The process-wide context (created on first call). ``mode``: auto | horovod | none
    (default from the ``PAD_DISTRIBUTED`` environment variable, else auto)."""
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    mode = (mode or os.environ.get(ENV_SWITCH, "auto")).lower()
    if mode not in ("auto", "horovod", "none"):
        raise ValueError(f"{ENV_SWITCH}={mode!r}: expected auto, horovod or none")
    ctx: DistContext
    if mode == "none":
        ctx = DistContext()
    else:
        launched = launched_by_launcher()
        hvd = None
        error = None
        if mode == "horovod" or launched:
            try:
                import horovod.tensorflow as hvd  # noqa: F811
            except ImportError as exc:  # pragma: no cover - depends on the install
                error = exc
        if hvd is not None:
            ctx = HorovodContext(hvd)
        elif mode == "horovod" or launched:
            raise RuntimeError(
                "started by a multi-rank launcher (or PAD_DISTRIBUTED=horovod) but "
                f"horovod.tensorflow cannot be imported ({error}); build it with "
                "scripts/install_horovod.sh, or set PAD_DISTRIBUTED=none")
        else:
            ctx = DistContext()
    if pin_gpu:
        ctx.pin_gpu()
    _CONTEXT = ctx
    return ctx


def reset_context() -> None:
    """Forget the cached context (tests)."""
    global _CONTEXT
    _CONTEXT = None


__all__ = ["DistContext", "HorovodContext", "get_context", "reset_context", "launched_by_launcher",
           "ENV_SWITCH"]
