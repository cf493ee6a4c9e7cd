#!/bin/bash
# lhco_fullphase: weak-supervision scan + generation-quality trainings (job array; SHARDS_PER_TASK shards per task, one per GPU).
#
#   sbatch [-A ACCOUNT] [-q QOS] [-t TIME] [-N NODES] [--array=0-T-1] scripts/slurm/lhco_classify.sh CONFIG OUT [args...]
#   e.g. sbatch -A m1234 scripts/slurm/lhco_classify.sh lhco_fullphase/configs/paper.yaml $SCRATCH/lhco
# runs: python -m lhco_fullphase.classify --config CONFIG --out OUT [args...] --shard K/N   (K = task*S + i, N = tasks*S)
# Array: task i of T runs shards i*S..i*S+S-1 of N = T*S (S = SHARDS_PER_TASK, default 4 =
# GPUs per node), each a single process on its own GPU; change T with --array=0-(T-1).
# Defaults are the #SBATCH lines below; override them with sbatch options or
# SBATCH_ACCOUNT/SBATCH_QOS/SBATCH_TIMELIMIT. The whole chain: scripts/slurm/submit.sh PACKAGE ...
# Software: ENV_SETUP='module load ...; source venv/bin/activate' (see common.sh). Submit from
# the repository root (or set REPO).
#SBATCH --job-name=lhco-classify
#SBATCH -C gpu
#SBATCH --qos=regular
#SBATCH --time=48:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=128
#SBATCH --array=0-3
#SBATCH --output=slurm-%x-%A_%a.out

REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}}"
source "${REPO}/scripts/slurm/common.sh"
shard_job lhco_classify.sh lhco_fullphase.classify -- "$@"
