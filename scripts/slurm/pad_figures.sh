#!/bin/bash
# permutation_ad: figures and report (Table I beside the published values; single process).
#
#   sbatch [-A ACCOUNT] [-q QOS] [-t TIME] [-N NODES] scripts/slurm/pad_figures.sh CONFIG OUT [args...]
#   e.g. sbatch -A m1234 scripts/slurm/pad_figures.sh permutation_ad/configs/paper.yaml $SCRATCH/pad
# runs: python -m permutation_ad.pipeline --config CONFIG --out OUT --stages figures,report [args...]
# Defaults are the #SBATCH lines below; override them with sbatch options or
# SBATCH_ACCOUNT/SBATCH_QOS/SBATCH_TIMELIMIT. The whole chain: scripts/slurm/submit.sh PACKAGE ...
# Software: ENV_SETUP='module load ...; source venv/bin/activate' (see common.sh). Submit from
# the repository root (or set REPO).
#SBATCH --job-name=pad-figures
#SBATCH -C gpu
#SBATCH --qos=regular
#SBATCH --time=01:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=128
#SBATCH --output=slurm-%x-%j.out

REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}}"
source "${REPO}/scripts/slurm/common.sh"
stage_job pad_figures.sh "${TASKS_PER_NODE:-1}" permutation_ad.pipeline --stages figures,report -- "$@"
