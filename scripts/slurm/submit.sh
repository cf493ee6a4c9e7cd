#!/usr/bin/env bash
# Submit the whole paper pipeline of a package as a chain of Slurm jobs linked by afterok
# dependencies (or one job script). Run from the repository root.
#
#   scripts/slurm/submit.sh [--dry-run] PACKAGE CONFIG OUT [args for every job...]
#   scripts/slurm/submit.sh [--dry-run] JOB_SCRIPT CONFIG OUT [args...]          (one job)
#
#   PACKAGE: permutation_ad (or pad) | lhco_fullphase (or lhco). The args (e.g. --data-dir D,
#   --set key=value) are appended to every job's python command.
#   e.g. ACCOUNT=m1234 scripts/slurm/submit.sh lhco_fullphase lhco_fullphase/configs/paper.yaml \
#            $SCRATCH/lhco --data-dir $SCRATCH/lhco_data
#
# permutation_ad chain (job: after):
#   prepare; train-{qcd,top}-{standard,likelihood}: prepare; classify: prepare; baselines: prepare;
#   likelihood (array): all train-*; evaluate (merge): likelihood, classify;
#   figures (figures + report): evaluate, baselines
# lhco_fullphase chain:
#   prepare; train-jet, train-particle (every generator's part), train-lowdim: prepare;
#   sample-sr, sample-sb: train-jet, train-particle, train-lowdim;
#   classify (array): sample-sr, sample-sb; evaluate (merge + evaluate): classify; figures: evaluate
# Every dependent job is submitted with --kill-on-invalid-dep=yes: a failed job cancels the
# jobs after it instead of leaving them pending.
#
# --dry-run prints each sbatch command (dependencies as afterok:<job>) and, under it, the
# command(s) the job will run (`runs:`; array jobs: those of task 0); nothing is submitted or
# created.
#
# Variables (defaults):
#   ACCOUNT (sbatch's default account), QOS (regular)
#   <STAGE>_TIME, <STAGE>_NODES   per-stage time limit / node count instead of the job script's
#                                 #SBATCH defaults; STAGE = PREPARE, TRAIN, CLASSIFY, BASELINES,
#                                 LIKELIHOOD, EVALUATE, FIGURES, SAMPLE (e.g. TRAIN_TIME=36:00:00)
#   SHARD_TASKS                   array tasks of the likelihood / scan arrays (the script's
#                                 #SBATCH --array, 4); each runs SHARDS_PER_TASK (4) shards
#   PAD_DENSITIES                 densities to train ("qcd:standard qcd:likelihood top:standard
#                                 top:likelihood"), sample:objective pairs
#   one job script: TIME, NODES, JOB_NAME as above.
# Everything else in the environment (ENV_SETUP, LAUNCHER, SHARDS_PER_TASK, ...) reaches the
# jobs (see common.sh).
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

here="$(cd "$(dirname "$0")" && pwd)"
REPO="${REPO:-$(cd "${here}/../.." && pwd)}"
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
[ "$#" -ge 3 ] || usage
case "$1" in -h|--help) usage ;; esac
TARGET="$1"; CONFIG="$2"; OUT="$3"; shift 3
EXTRA=("$@")
case "${OUT}" in /*) ;; *) OUT="$(pwd)/${OUT}" ;; esac
if [ -e "${CONFIG}" ]; then case "${CONFIG}" in /*) ;; *) CONFIG="$(pwd)/${CONFIG}" ;; esac; fi

declare -A JOB_ID=()

sbatch_default() {  # sbatch_default SCRIPT OPTION -> the value of "#SBATCH --OPTION=value"
    sed -n "s/^#SBATCH --$2=//p" "$1" | head -n1
}

show() {  # print arguments, quoting only what needs it (placeholders <job> stay readable)
    local a out=()
    for a in "$@"; do
        if [[ "${a}" =~ ^[][A-Za-z0-9_./:=,%@+\<\>-]+$ ]]; then out+=("${a}"); else out+=("$(printf '%q' "${a}")"); fi
    done
    echo "${out[*]}"
}

job() {  # job KEY STAGE DEPS SCRIPT [job args...]; DEPS = comma-separated keys or -
    local key="$1" stage="$2" deps="$3" script="$4"; shift 4
    local path="${here}/${script}"
    [ -f "${path}" ] || { echo "submit.sh: no job script ${path}" >&2; exit 2; }
    local up t_var n_var nodes log="slurm-%x-%j.out" tasks="" opts ids=() d
    up="$(echo "${stage}" | tr 'a-z-' 'A-Z_')"
    t_var="${up}_TIME"; n_var="${up}_NODES"
    opts=(--parsable --qos="${QOS:-regular}")
    [ -n "${ACCOUNT:-}" ] && opts+=(--account="${ACCOUNT}")
    [ -n "${!t_var:-}" ] && opts+=(--time="${!t_var}")
    [ -n "${!n_var:-}" ] && opts+=(--nodes="${!n_var}")
    nodes="${!n_var:-$(sbatch_default "${path}" nodes)}"
    if grep -q '^#SBATCH --array=' "${path}"; then
        local spec; spec="$(sbatch_default "${path}" array)"
        tasks="${SHARD_TASKS:-$(( ${spec#0-} + 1 ))}"
        opts+=(--array="0-$(( tasks - 1 ))")
        log="slurm-%x-%A_%a.out"
    fi
    opts+=(--job-name="${NAME_OVERRIDE:-${PREFIX}-${key}}" --output="${OUT}/logs/${log}" --export="ALL,REPO=${REPO}")
    if [ "${deps}" != "-" ]; then
        for d in ${deps//,/ }; do
            [ -n "${JOB_ID[${d}]:-}" ] || { echo "submit.sh: job ${key} depends on unknown job ${d}" >&2; exit 2; }
            ids+=("${JOB_ID[${d}]}")
        done
        opts+=(--dependency="afterok:$(IFS=:; echo "${ids[*]}")" --kill-on-invalid-dep=yes)
    fi
    local cmd=("${path}" "${CONFIG}" "${OUT}" "$@" ${EXTRA[@]+"${EXTRA[@]}"})
    if [ "${DRY}" = 1 ]; then
        JOB_ID[${key}]="<${key}>"
        echo "${key}: $(show sbatch "${opts[@]}" "${cmd[@]}")"
        local env=(LAUNCHER=print REPO="${REPO}" SLURM_JOB_NUM_NODES="${nodes:-1}")
        [ -n "${tasks}" ] && env+=(SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_MIN=0
                                   SLURM_ARRAY_TASK_MAX="$(( tasks - 1 ))" SLURM_ARRAY_TASK_COUNT="${tasks}")
        env "${env[@]}" bash "${cmd[@]}" | sed 's/^/    runs: /'
    else
        local answer
        answer="$(sbatch "${opts[@]}" "${cmd[@]}")"
        JOB_ID[${key}]="${answer%%;*}"
        echo "${key}: job ${JOB_ID[${key}]}${deps:+ (after ${deps})}"
    fi
}

chain_permutation_ad() {
    PREFIX=pad
    job prepare prepare - pad_prepare.sh
    local trains=() pair
    for pair in ${PAD_DENSITIES:-qcd:standard qcd:likelihood top:standard top:likelihood}; do
        job "train-${pair%%:*}-${pair#*:}" train prepare pad_train.sh --sample "${pair%%:*}" --objective "${pair#*:}"
        trains+=("train-${pair%%:*}-${pair#*:}")
    done
    job classify classify prepare pad_classify.sh
    job baselines baselines prepare pad_baselines.sh
    job likelihood likelihood "$(IFS=,; echo "${trains[*]}")" pad_likelihood.sh
    job evaluate evaluate likelihood,classify pad_evaluate.sh
    job figures figures evaluate,baselines pad_figures.sh
}

chain_lhco_fullphase() {
    PREFIX=lhco
    job prepare prepare - lhco_prepare.sh
    job train-jet train prepare lhco_train.sh --model jet
    job train-particle train prepare lhco_train.sh --model particle
    job train-lowdim train prepare lhco_train.sh --generator lowdim
    job sample-sr sample train-jet,train-particle,train-lowdim lhco_sample.sh --region sr
    job sample-sb sample train-jet,train-particle,train-lowdim lhco_sample.sh --region sb
    job classify classify sample-sr,sample-sb lhco_classify.sh
    job evaluate evaluate classify lhco_evaluate.sh
    job figures figures evaluate lhco_figures.sh
}

[ "${DRY}" = 1 ] || mkdir -p "${OUT}/logs"
case "${TARGET}" in
    permutation_ad|pad)
        [ "${DRY}" = 1 ] && echo "# permutation_ad chain (dry run: nothing submitted)"
        chain_permutation_ad ;;
    lhco_fullphase|lhco)
        [ "${DRY}" = 1 ] && echo "# lhco_fullphase chain (dry run: nothing submitted)"
        chain_lhco_fullphase ;;
    *.sh)
        script="$(basename "${TARGET}")"
        PREFIX=""
        NAME_OVERRIDE="${JOB_NAME:-$(sbatch_default "${here}/${script}" job-name)}"
        stage="${script%.sh}"; stage="${stage#*_}"
        # one job: TIME / NODES / JOB_NAME as documented above
        [ -n "${TIME:-}" ] && export "$(echo "${stage}" | tr 'a-z-' 'A-Z_')_TIME=${TIME}"
        [ -n "${NODES:-}" ] && export "$(echo "${stage}" | tr 'a-z-' 'A-Z_')_NODES=${NODES}"
        job "${stage}" "${stage}" - "${script}"
        ;;
    *)
        echo "submit.sh: PACKAGE must be permutation_ad|pad|lhco_fullphase|lhco or a job script, got ${TARGET}" >&2
        exit 2 ;;
esac
