#!/bin/bash
# permutation_ad: train one density (sample × objective) with Horovod, 4 nodes × 4 GPUs = 16 ranks (paper).
#
#   sbatch [-A ACCOUNT] [-q QOS] [-t TIME] [-N NODES] scripts/slurm/pad_train.sh CONFIG OUT [args...]
#   e.g. sbatch -A m1234 scripts/slurm/pad_train.sh permutation_ad/configs/paper.yaml $SCRATCH/pad --sample qcd --objective standard
# runs: python -m permutation_ad.train --config CONFIG --out OUT [args...]
# Account/QOS/time/nodes: the #SBATCH lines below are defaults; override with sbatch options,
# SBATCH_ACCOUNT/SBATCH_QOS/SBATCH_TIMELIMIT, or scripts/slurm/submit.sh (ACCOUNT/QOS/TIME/NODES).
# Software: ENV_SETUP='module load ...; source venv/bin/activate' (see common.sh). Submit from
# the repository root (or set REPO).
#SBATCH --job-name=pad-train
#SBATCH -C gpu
#SBATCH --qos=regular
#SBATCH --time=12:00:00
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --output=slurm-%x-%j.out

REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}}"
source "${REPO}/scripts/slurm/common.sh"
usage_check pad_train.sh permutation_ad.train "$@"
CONFIG="$1"; OUT="$2"; shift 2
mkdir -p "${OUT}"
launch "${TASKS_PER_NODE:-4}" -m permutation_ad.train --config "${CONFIG}" --out "${OUT}" "$@"
