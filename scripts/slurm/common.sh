# Shared part of the Slurm job scripts in this folder (sourced, not submitted).
#
# Variables (set them in the environment before `sbatch`, which exports them to the job):
#   REPO            repository root (default: $SLURM_SUBMIT_DIR, i.e. submit from the repo root)
#   ENV_SETUP       shell code that activates the software, e.g.
#                   'module load tensorflow/2.15.0; source $SCRATCH/venvs/pad/bin/activate'
#                   (default: nothing; the job uses whatever `python3` is on PATH)
#   PYTHON          interpreter (default python3)
#   LAUNCHER        srun (default; one task per GPU, needs Horovod built with MPI) |
#                   horovodrun (Gloo over ssh between nodes) | none (plain single process)
#   TASKS_PER_NODE  ranks per node (default: what the job script sets: 4 for GPU training)
#   GPUS_PER_NODE   GPUs per node (default 4, Perlmutter)
#   SRUN_ARGS       extra arguments for srun
set -euo pipefail

REPO="${REPO:-${SLURM_SUBMIT_DIR:-$(pwd)}}"
PYTHON="${PYTHON:-python3}"
LAUNCHER="${LAUNCHER:-srun}"
GPUS_PER_NODE="${GPUS_PER_NODE:-4}"
NODES="${SLURM_JOB_NUM_NODES:-1}"

cd "${REPO}"
if [ -n "${ENV_SETUP:-}" ]; then
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
            echo "[slurm] unknown LAUNCHER=${LAUNCHER} (srun | horovodrun | none)" >&2; exit 2 ;;
    esac
}
