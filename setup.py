"""Installable package for permutation-invariant anomaly detection (permutation_ad),
full-phase-space CATHODE (lhco_fullphase) and their shared diffusion core (shared).

TensorFlow comes through an extra so that CPU machines and GPU clusters each get the right
wheel: ``pip install -e .[cpu,dev,sim]`` here, ``pip install -e .[gpu,horovod]`` on a cluster.
TensorFlow-Probability needs ``tf-keras``, whose own requirement would pull a second, GPU
TensorFlow; ``scripts/install.sh`` therefore adds it with ``--no-deps`` (SPEC §8).
"""
from setuptools import find_packages, setup

TF_VERSION = "2.21.0"

setup(
    name="permutation-invariant-ad",
    version="0.1.0",
    description="Diffusion densities of particle sets for anomaly detection (PermutationInvariantAD, "
    "full-phase-space CATHODE) with TensorFlow/Keras 3",
    python_requires=">=3.11",
    packages=find_packages(include=["shared*", "permutation_ad*", "lhco_fullphase*"]),
    package_data={"permutation_ad": ["configs/*.yaml"], "lhco_fullphase": ["configs/*.yaml"]},
    # Every entry here is imported by the project; transitive requirements (ml_dtypes, vector,
    # wasserstein, ...) come with the packages that need them.
    install_requires=[
        "keras==3.15.1",
        # the masked autoregressive flow of low-dimensional CATHODE (lhco_fullphase.lowdim)
        "tensorflow-probability==0.25.0",
        # numpy < 2 because of energyflow 1.4.0: `import energyflow` imports energyflow.emd,
        # which imports `wasserstein` (required by energyflow, >= 1.0.1). wasserstein 1.1.0
        # requires numpy < 2; under numpy 2 pip falls back to 1.0.1, whose extension is built
        # against numpy 1.x and fails to import ("_ARRAY_API not found"; measured with numpy
        # 2.4.6, TF 2.21, pip 26). TF 2.21, pandas 2.3, tables, scipy, scikit-learn, fastjet,
        # awkward, mplhep and TFP themselves resolve and import under numpy 2.
        "numpy>=1.26,<2",
        "scipy>=1.11",
        "h5py>=3.10",
        "pandas>=2.1,<3",
        "tables>=3.9",
        "scikit-learn>=1.4",
        "matplotlib>=3.8",
        "mplhep>=0.3",
        "fastjet>=3.4.2",
        "awkward>=2.5",
        "energyflow==1.4.0",
        "pyyaml>=6",
        "tqdm>=4.60",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu=={TF_VERSION}"],
        "gpu": [f"tensorflow[and-cuda]=={TF_VERSION}"],
        "sim": ["pythia8mc==8.317.2"],
        # Horovod 0.28.1 needs a one-line patch to build against TF >= 2.6 CPU wheels:
        # use scripts/install_horovod.sh rather than this extra on a fresh machine.
        "horovod": ["horovod==0.28.1", "cmake<4"],
        # tensorboard: the viewer (`tensorboard --logdir OUT`) and the event-file reader of
        # tests/test_training.py; training writes its event files with TensorFlow alone.
        "dev": ["pytest>=8", "pytest-timeout>=2.2", "tensorboard>=2.20"],
    },
    entry_points={
        "console_scripts": [
            "generate-data=shared.data.generate:main",
        ]
    },
)
