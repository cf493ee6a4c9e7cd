#!/bin/bash
# lhco_fullphase: weak-supervision classifier, signal-injection scan (injections × initialisations).
#
#   sbatch [-A ACCOUNT] [-q QOS] [-t TIME] [-N NODES] scripts/slurm/lhco_classify.sh CONFIG OUT [args...]
#   e.g. sbatch -A m1234 scripts/slurm/lhco_classify.sh lhco_fullphase/configs/paper.yaml $SCRATCH/lhco
# runs: python -m lhco_fullphase.classify --config CONFIG --out OUT [args...]
# Account/QOS/time/nodes: the #SBATCH lines below are defaults; override with sbatch options,
# SBATCH_ACCOUNT/SBATCH_QOS/SBATCH_TIMELIMIT, or scripts/slurm/submit.sh (ACCOUNT/QOS/TIME/NODES).
# Software: ENV_SETUP='module load ...; source venv/bin/activate' (see common.sh). Submit from
# the repository root (or set REPO).
#SBATCH --job-name=lhco-classify
#SBATCH -C gpu
#SBATCH --qos=regular
#SBATCH --time=12:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=128
#SBATCH --output=slurm-%x-%j.out

REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}}"
source "${REPO}/scripts/slurm/common.sh"
usage_check lhco_classify.sh lhco_fullphase.classify "$@"
CONFIG="$1"; OUT="$2"; shift 2
mkdir -p "${OUT}"
launch "${TASKS_PER_NODE:-1}" -m lhco_fullphase.classify --config "${CONFIG}" --out "${OUT}" "$@"
