# Shared part of the Slurm job scripts in this folder (sourced, not submitted).
#
# Variables (set them in the environment before `sbatch`, which exports them to the job):
#   REPO            repository root (default: $SLURM_SUBMIT_DIR, i.e. submit from the repo root)
#   ENV_SETUP       shell code that activates the software, e.g.
#                   'module load tensorflow/2.15.0; source $SCRATCH/venvs/pad/bin/activate'
#                   (default: nothing; the job uses whatever `python3` is on PATH)
#   PYTHON          interpreter (default python3)
#   LAUNCHER        srun (default; one task per GPU, needs Horovod built with MPI) |
#                   horovodrun (Gloo over ssh between nodes) | none (plain single process) |
#                   print (print the command(s) the job would run, run nothing; used by
#                   `submit.sh --dry-run` and the tests)
#   TASKS_PER_NODE  ranks per node (default: what the job script sets: 4 for GPU training)
#   GPUS_PER_NODE   GPUs per node (default 4, Perlmutter)
#   SHARDS_PER_TASK array jobs: shard processes per array task, one GPU each (default GPUS_PER_NODE)
#   SRUN_ARGS       extra arguments for srun
set -euo pipefail

REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(pwd)}}"
PYTHON="${PYTHON:-python3}"
LAUNCHER="${LAUNCHER:-srun}"
GPUS_PER_NODE="${GPUS_PER_NODE:-4}"
NODES="${SLURM_JOB_NUM_NODES:-1}"

cd "${REPO}"
if [ -n "${ENV_SETUP:-}" ] && [ "${LAUNCHER}" != print ]; then
    eval "${ENV_SETUP}"
fi
export PYTHONPATH="${REPO}${PYTHONPATH:+:${PYTHONPATH}}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}" PYTHONUNBUFFERED=1
# one CPU-side thread pool per rank, sized to its share of the node
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-8}}"

usage_check() {  # usage_check NAME ENTRY_POINT "$@"
    if [ "$#" -lt 4 ] || [ "$3" = "-h" ] || [ "$3" = "--help" ]; then
        echo "usage: sbatch scripts/slurm/$1 CONFIG OUT [extra arguments for python -m $2]" >&2
        exit 2
    fi
}

launch() {  # launch TASKS_PER_NODE python-arguments...
    local per_node="$1"; shift
    local ntasks=$(( NODES * per_node ))
    if [ "${LAUNCHER}" = print ]; then
        echo "${ntasks} rank(s): ${PYTHON} $*"
        return 0
    fi
    echo "[slurm] $(date -Is) job ${SLURM_JOB_ID:-none} on ${NODES} node(s), ${ntasks} rank(s), launcher ${LAUNCHER}"
    echo "[slurm] ${PYTHON} $*"
    case "${LAUNCHER}" in
        srun)
            # all GPUs of a node visible to each rank; shared.distributed pins one by local rank
            srun --nodes="${NODES}" --ntasks="${ntasks}" --ntasks-per-node="${per_node}" \
                 --gpus-per-node="${GPUS_PER_NODE}" --gpu-bind=none ${SRUN_ARGS:-} \
                 "${PYTHON}" "$@" ;;
        horovodrun)
            local hosts
            hosts=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | sed "s/\$/:${per_node}/" | paste -sd,)
            horovodrun -np "${ntasks}" -H "${hosts}" --gloo "${PYTHON}" "$@" ;;
        none)
            PAD_DISTRIBUTED=none "${PYTHON}" "$@" ;;
        *)
            echo "[slurm] unknown LAUNCHER=${LAUNCHER} (srun | horovodrun | none | print)" >&2; exit 2 ;;
    esac
}

stage_job() {  # stage_job SCRIPT TASKS_PER_NODE MODULE [fixed args...] -- CONFIG OUT [args...]
    # runs: python -m MODULE --config CONFIG --out OUT [fixed args...] [args...]
    local script="$1" per_node="$2" module="$3"; shift 3
    local fixed=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do fixed+=("$1"); shift; done
    [ "$#" -gt 0 ] && shift
    usage_check "${script}" "${module}" "$@"
    local config="$1" out="$2"; shift 2
    [ "${LAUNCHER}" = print ] || mkdir -p "${out}"
    launch "${per_node}" -m "${module}" --config "${config}" --out "${out}" ${fixed[@]+"${fixed[@]}"} "$@"
}

array_shards() {  # array_shards: prints "FIRST TOTAL" of this array task's shards, or fails
    # Array tasks must be numbered 0..T-1 with step 1 (sbatch --array=0-T-1[%limit]); task i
    # runs shards i*S .. i*S+S-1 of T*S, S = SHARDS_PER_TASK.
    local per="${SHARDS_PER_TASK:-${GPUS_PER_NODE}}"
    local task="${SLURM_ARRAY_TASK_ID:-}" lo="${SLURM_ARRAY_TASK_MIN:-}" hi="${SLURM_ARRAY_TASK_MAX:-}"
    local count="${SLURM_ARRAY_TASK_COUNT:-}"
    if [ -z "${task}" ]; then
        echo "[slurm] not an array task: submit with sbatch --array=0-N (see scripts/slurm/submit.sh)" >&2
        return 2
    fi
    if [ "${lo}" != 0 ] || [ -z "${hi}" ] || { [ -n "${count}" ] && [ "${count}" != "$(( hi + 1 ))" ]; }; then
        echo "[slurm] array must be 0-N with step 1 (got min=${lo} max=${hi} count=${count})" >&2
        return 2
    fi
    echo "$(( task * per )) $(( (hi + 1) * per ))"
}

shard_job() {  # shard_job SCRIPT MODULE [fixed args...] -- CONFIG OUT [args...]
    # One array task: SHARDS_PER_TASK single-process shards side by side on this node, the i-th
    # on GPU i mod GPUS_PER_NODE (more shards than GPUs share them), each running
    # python -m MODULE --config CONFIG --out OUT [...] --shard K/N.
    # The task fails (non-zero) if any shard fails; every shard runs to its end first.
    local script="$1" module="$2"; shift 2
    local fixed=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do fixed+=("$1"); shift; done
    [ "$#" -gt 0 ] && shift
    usage_check "${script}" "${module}" "$@"
    local config="$1" out="$2"; shift 2
    local range first total per i k gpu pids=() failed=0
    range=$(array_shards) || exit 2
    first="${range% *}"; total="${range#* }"
    per="${SHARDS_PER_TASK:-${GPUS_PER_NODE}}"
    local threads=$(( ${SLURM_CPUS_PER_TASK:-$(( 8 * per ))} / per ))
    [ "${LAUNCHER}" = print ] || mkdir -p "${out}"
    [ "${LAUNCHER}" = print ] || echo "[slurm] $(date -Is) array task ${SLURM_ARRAY_TASK_ID}: shards ${first}..$(( first + per - 1 )) of ${total}"
    for (( i = 0; i < per; i++ )); do
        k=$(( first + i )); gpu=$(( i % GPUS_PER_NODE ))
        local cmd=("${PYTHON}" -m "${module}" --config "${config}" --out "${out}" ${fixed[@]+"${fixed[@]}"} "$@" --shard "${k}/${total}")
        if [ "${LAUNCHER}" = print ]; then
            echo "shard ${k}/${total} on GPU ${gpu}: ${cmd[*]}"
            continue
        fi
        ( export CUDA_VISIBLE_DEVICES="${gpu}" PAD_DISTRIBUTED=none OMP_NUM_THREADS="${threads}"
          "${cmd[@]}" 2>&1 | sed -u "s|^|[shard ${k}/${total}] |" ) &
        pids+=("$!")
    done
    for k in ${pids[@]+"${pids[@]}"}; do
        wait "${k}" || failed=1
    done
    if [ "${failed}" != 0 ]; then
        echo "[slurm] array task ${SLURM_ARRAY_TASK_ID}: at least one shard failed (see its [shard K/N] lines)" >&2
        return 1
    fi
}
