#!/bin/bash
# lhco_fullphase: merge the scan shards (training any missing) and evaluate on independent events (single process).
#
#   sbatch [-A ACCOUNT] [-q QOS] [-t TIME] [-N NODES] scripts/slurm/lhco_evaluate.sh CONFIG OUT [args...]
#   e.g. sbatch -A m1234 scripts/slurm/lhco_evaluate.sh lhco_fullphase/configs/paper.yaml $SCRATCH/lhco
# runs: python -m lhco_fullphase.pipeline --config CONFIG --out OUT --stages classify,evaluate [args...]
# Defaults are the #SBATCH lines below; override them with sbatch options or
# SBATCH_ACCOUNT/SBATCH_QOS/SBATCH_TIMELIMIT. The whole chain: scripts/slurm/submit.sh PACKAGE ...
# Software: ENV_SETUP='module load ...; source venv/bin/activate' (see common.sh). Submit from
# the repository root (or set REPO).
#SBATCH --job-name=lhco-evaluate
#SBATCH -C gpu
#SBATCH --qos=regular
#SBATCH --time=04:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=128
#SBATCH --output=slurm-%x-%j.out

REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}}"
source "${REPO}/scripts/slurm/common.sh"
stage_job lhco_evaluate.sh "${TASKS_PER_NODE:-1}" lhco_fullphase.pipeline --stages classify,evaluate -- "$@"
