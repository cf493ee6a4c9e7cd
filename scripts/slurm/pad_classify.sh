#!/bin/bash
# permutation_ad: supervised top-vs-QCD classifier (reference of Fig. 5) with Horovod, 16 ranks.
#
#   sbatch [-A ACCOUNT] [-q QOS] [-t TIME] [-N NODES] scripts/slurm/pad_classify.sh CONFIG OUT [args...]
#   e.g. sbatch -A m1234 scripts/slurm/pad_classify.sh permutation_ad/configs/paper.yaml $SCRATCH/pad
# runs: python -m permutation_ad.pipeline --config CONFIG --out OUT --stages classify [args...]
# Defaults are the #SBATCH lines below; override them with sbatch options or
# SBATCH_ACCOUNT/SBATCH_QOS/SBATCH_TIMELIMIT. The whole chain: scripts/slurm/submit.sh PACKAGE ...
# Software: ENV_SETUP='module load ...; source venv/bin/activate' (see common.sh). Submit from
# the repository root (or set REPO).
#SBATCH --job-name=pad-classify
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
stage_job pad_classify.sh "${TASKS_PER_NODE:-4}" permutation_ad.pipeline --stages classify -- "$@"
