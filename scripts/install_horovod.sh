#!/usr/bin/env bash
# Build Horovod 0.28.1 against the installed TensorFlow 2.21 / Keras 3 (SPEC §8).
#
# Horovod 0.28.1 (the last release, sdist only) does not compile against TF >= 2.6 CPU wheels:
# horovod/tensorflow/xla_mpi_ops.cc includes XLA headers (farmhash.h, highwayhash/...) that the
# wheels do not ship. Those XLA ops are GPU-only, so we make the file's
# `#if TENSORFLOW_VERSION >= 2006000000` guard also require HAVE_GPU, then build with cmake<4.
#
# Defaults: CPU collectives over Gloo, no MPI (what a laptop / CI machine has).
# GPU cluster (e.g. Perlmutter, NCCL + MPI):
#   HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_WITH_MPI=1 bash scripts/install_horovod.sh
# Environment variables read here (all optional):
#   HOROVOD_VERSION          default 0.28.1
#   HOROVOD_GPU_OPERATIONS   e.g. NCCL (unset = CPU build)
#   HOROVOD_WITH_MPI         1 = build the MPI controller (needs mpicxx); default: without MPI
#   HOROVOD_NCCL_HOME        NCCL location if not in the default search path
#   HOROVOD_BUILD_DIR        where to download/unpack the sdist (default: a fresh temp dir)
#   MAKEFLAGS                default -j$(nproc)
#   PYTHON                   interpreter to install into (default python3)
#   HOROVOD_FORCE            1 = rebuild even if this version already imports
set -euo pipefail

PYTHON="${PYTHON:-python3}"
version="${HOROVOD_VERSION:-0.28.1}"
if [ "${HOROVOD_FORCE:-0}" != "1" ] && "${PYTHON}" -c "import horovod, horovod.tensorflow, sys; sys.exit(horovod.__version__ != '${version}')" 2>/dev/null; then
    echo "[install_horovod] horovod ${version} already imports with TensorFlow; HOROVOD_FORCE=1 rebuilds"
    exit 0
fi
build_dir="${HOROVOD_BUILD_DIR:-$(mktemp -d -t horovod-build.XXXXXX)}"
mkdir -p "${build_dir}"
pip() { "${PYTHON}" -m pip --disable-pip-version-check "$@"; }

start=$(date +%s)
echo "[install_horovod] building horovod ${version} in ${build_dir}"

# Build requirements: cmake < 4 (Horovod's CMakeLists use syntax removed in CMake 4).
if ! command -v cmake >/dev/null || [ "$(cmake --version | head -1 | sed -E 's/[^0-9]*([0-9]+).*/\1/')" -ge 4 ]; then
    pip install -q "cmake<4"
fi
pip install -q packaging wheel psutil pyyaml cloudpickle

# Fetch and unpack the source distribution.
pip download -q --no-deps --no-binary :all: "horovod==${version}" -d "${build_dir}"
tar -xzf "${build_dir}/horovod-${version}.tar.gz" -C "${build_dir}"
src="${build_dir}/horovod-${version}"

# Patch the XLA guard (idempotent: only rewrites a guard that lacks HAVE_GPU).
"${PYTHON}" - "${src}/horovod/tensorflow/xla_mpi_ops.cc" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
old = "#if TENSORFLOW_VERSION >= 2006000000"
if old + " && HAVE_GPU" in text:
    print("[install_horovod] xla_mpi_ops.cc already patched")
elif old not in text:
    sys.exit(f"[install_horovod] {path}: guard '{old}' not found; cannot patch")
else:
    text = text.replace(old, old + " && HAVE_GPU")
    open(path, "w").write(text)
    print(f"[install_horovod] patched {path}: {text.count(old + ' && HAVE_GPU')} guard(s)")
PY

export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1
if [ "${HOROVOD_WITH_MPI:-0}" = "1" ]; then
    export HOROVOD_WITH_MPI=1
    unset HOROVOD_WITHOUT_MPI || true
else
    unset HOROVOD_WITH_MPI || true
    export HOROVOD_WITHOUT_MPI=1
fi
export MAKEFLAGS="${MAKEFLAGS:--j$(nproc)}"

pip install --no-build-isolation --no-cache-dir "${src}"

"${PYTHON}" -c "import horovod, horovod.tensorflow as hvd; print('[install_horovod] horovod', horovod.__version__, '| gloo', hvd.gloo_built(), '| mpi', hvd.mpi_built(), '| nccl', hvd.nccl_built())"
echo "[install_horovod] done in $(( $(date +%s) - start )) s"
