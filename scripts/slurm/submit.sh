#!/usr/bin/env bash
# Submit one of the job scripts here with account/QOS/time/nodes taken from variables.
#
#   ACCOUNT=m1234 QOS=regular TIME=12:00:00 NODES=4 \
#       scripts/slurm/submit.sh pad_train.sh permutation_ad/configs/paper.yaml $SCRATCH/pad --sample qcd
#
# Variables (defaults): ACCOUNT (none: sbatch's default account), QOS (regular), TIME (the job
# script's own), NODES (the job script's own), JOB_NAME (the script's). Anything else in the
# environment (ENV_SETUP, LAUNCHER, ...) is passed on to the job. Run from the repository root.
set -euo pipefail
if [ "$#" -lt 3 ]; then
    echo "usage: [ACCOUNT=..] [QOS=..] [TIME=..] [NODES=..] $0 JOB_SCRIPT CONFIG OUT [args...]" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
script="$1"; shift
[ -f "${script}" ] || script="${here}/${script}"
[ -f "${script}" ] || { echo "no job script ${script}" >&2; exit 2; }
args=(--qos="${QOS:-regular}")
[ -n "${ACCOUNT:-}" ] && args+=(--account="${ACCOUNT}")
[ -n "${TIME:-}" ] && args+=(--time="${TIME}")
[ -n "${NODES:-}" ] && args+=(--nodes="${NODES}")
[ -n "${JOB_NAME:-}" ] && args+=(--job-name="${JOB_NAME}")
mkdir -p "$2"
exec sbatch "${args[@]}" --chdir="$(pwd)" --output="$2/slurm-%x-%j.out" "${script}" "$@"
