#!/bin/bash
# lhco_fullphase: train the jet or particle diffusion generator with Horovod, 4 nodes x 4 GPUs = 16 ranks.
#
#   sbatch [-A ACCOUNT] [-q QOS] [-t TIME] [-N NODES] scripts/slurm/lhco_train.sh CONFIG OUT [args...]
#   e.g. sbatch -A m1234 scripts/slurm/lhco_train.sh lhco_fullphase/configs/paper.yaml $SCRATCH/lhco --model jet
# runs: python -m lhco_fullphase.train --config CONFIG --out OUT [args: --model jet|particle ...]
# Defaults are the #SBATCH lines below; override them with sbatch options or
# SBATCH_ACCOUNT/SBATCH_QOS/SBATCH_TIMELIMIT. The whole chain: scripts/slurm/submit.sh PACKAGE ...
# Software: ENV_SETUP='module load ...; source venv/bin/activate' (see common.sh). Submit from
# the repository root (or set REPO).
#SBATCH --job-name=lhco-train
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
stage_job lhco_train.sh "${TASKS_PER_NODE:-4}" lhco_fullphase.train -- "$@"
