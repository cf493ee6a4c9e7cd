"""Baselines scored beside the diffusion density (issue #16; SPEC §4; docs/baselines.md).

Modules: ``jetset`` (the input form + converters), ``images`` (jet images), ``efp`` (prime EFPs,
PCA whitening), ``kmeans`` (k-means scores, spherical GMM), ``dvae`` (Dirichlet VAE), ``inn``
(coupling-flow density on EFPs), ``deepset_vae`` (Deep Set β-VAE, FSPool), ``observables``
(single-observable references), ``methods`` (fit/score per method type), ``benchmarks``
(top-tag and dark-jet benchmarks), ``report`` (tables, figures), ``stage`` (the pipeline stage
``run_baselines``), ``config`` (the ``baselines:`` section and its DEFAULTS).
"""
