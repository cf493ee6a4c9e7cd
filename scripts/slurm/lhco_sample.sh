#!/bin/bash
# lhco_fullphase: generate SR (or SB) events with DDIM, sharded over ranks (1 node x 4 GPUs by default).
#
#   sbatch [-A ACCOUNT] [-q QOS] [-t TIME] [-N NODES] scripts/slurm/lhco_sample.sh CONFIG OUT [args...]
#   e.g. sbatch -A m1234 scripts/slurm/lhco_sample.sh lhco_fullphase/configs/paper.yaml $SCRATCH/lhco --region sr
# runs: python -m lhco_fullphase.sample --config CONFIG --out OUT [args: --region sr|sb ...]
# Defaults are the #SBATCH lines below; override them with sbatch options or
# SBATCH_ACCOUNT/SBATCH_QOS/SBATCH_TIMELIMIT. The whole chain: scripts/slurm/submit.sh PACKAGE ...
# Software: ENV_SETUP='module load ...; source venv/bin/activate' (see common.sh). Submit from
# the repository root (or set REPO).
#SBATCH --job-name=lhco-sample
#SBATCH -C gpu
#SBATCH --qos=regular
#SBATCH --time=06:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --output=slurm-%x-%j.out

REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}}"
source "${REPO}/scripts/slurm/common.sh"
stage_job lhco_sample.sh "${TASKS_PER_NODE:-4}" lhco_fullphase.sample -- "$@"
