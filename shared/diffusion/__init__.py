"""The diffusion core: schedules (``sde``), the noise-prediction contract and its conversions
(``score``), denoising score matching (``losses``), the probability-flow-ODE likelihood
(``likelihood``), its in-graph batched Runge–Kutta solver (``ode``) and samplers (``sampler``).

Layering: ``sde`` and ``ode`` import only TensorFlow/NumPy/SciPy; ``score`` the ``sde``;
``losses``, ``likelihood`` and ``sampler`` build on both. Nothing here imports ``shared.layers`` or a package.
This ``__init__`` imports nothing, so ``shared.layers`` can import ``shared.diffusion.sde``.
"""
