#!/usr/bin/env bash
# Install the project with its CPU TensorFlow, simulation and test extras (SPEC §8).
# tf-keras is added with --no-deps: TensorFlow-Probability needs it, and its own requirement
# would pull a second (GPU) TensorFlow next to tensorflow-cpu.
# Usage: bash scripts/install.sh [extras]   (default extras: cpu,dev,sim)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
extras="${1:-cpu,dev,sim}"
python3 -m pip install --disable-pip-version-check -q -e "${here}[${extras}]"
python3 -m pip install --disable-pip-version-check -q --no-deps "tf-keras==2.21.0"
python3 -c "import tensorflow as tf, keras, tensorflow_probability as tfp; print('tensorflow', tf.__version__, '| keras', keras.__version__, '| tfp', tfp.__version__)"
