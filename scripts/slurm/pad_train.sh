#!/bin/bash
# permutation_ad: train one density (sample x objective) with Horovod, 4 nodes x 4 GPUs = 16 ranks (paper).
#
#   sbatch [-A ACCOUNT] [-q QOS] [-t TIME] [-N NODES] scripts/slurm/pad_train.sh CONFIG OUT [args...]
#   e.g. sbatch -A m1234 scripts/slurm/pad_train.sh permutation_ad/configs/paper.yaml $SCRATCH/pad --sample qcd --objective standard
# runs: python -m permutation_ad.train --config CONFIG --out OUT [args: --sample qcd|top --objective standard|likelihood ...]
# Defaults are the #SBATCH lines below; override them with sbatch options or
# SBATCH_ACCOUNT/SBATCH_QOS/SBATCH_TIMELIMIT. The whole chain: scripts/slurm/submit.sh PACKAGE ...
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
stage_job pad_train.sh "${TASKS_PER_NODE:-4}" permutation_ad.train -- "$@"
