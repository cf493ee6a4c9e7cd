#!/bin/bash
# permutation_ad: likelihood shards (job array; each task runs SHARDS_PER_TASK shards, one per GPU).
#
#   sbatch [-A ACCOUNT] [-q QOS] [-t TIME] [-N NODES] [--array=0-T-1] scripts/slurm/pad_likelihood.sh CONFIG OUT [args...]
#   e.g. sbatch -A m1234 scripts/slurm/pad_likelihood.sh permutation_ad/configs/paper.yaml $SCRATCH/pad
# runs: python -m permutation_ad.evaluate --config CONFIG --out OUT [args...] --shard K/N   (K = task*S + i, N = tasks*S)
# Array: task i of T runs shards i*S..i*S+S-1 of N = T*S (S = SHARDS_PER_TASK, default 4 =
# GPUs per node), each a single process on its own GPU; change T with --array=0-(T-1).
# Defaults are the #SBATCH lines below; override them with sbatch options or
# SBATCH_ACCOUNT/SBATCH_QOS/SBATCH_TIMELIMIT. The whole chain: scripts/slurm/submit.sh PACKAGE ...
# Software: ENV_SETUP='module load ...; source venv/bin/activate' (see common.sh). Submit from
# the repository root (or set REPO).
#SBATCH --job-name=pad-likelihood
#SBATCH -C gpu
#SBATCH --qos=regular
#SBATCH --time=12:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=128
#SBATCH --array=0-3
#SBATCH --output=slurm-%x-%A_%a.out

REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}}"
source "${REPO}/scripts/slurm/common.sh"
shard_job pad_likelihood.sh permutation_ad.evaluate -- "$@"
