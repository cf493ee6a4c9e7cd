"""End to end: prepare → train → sample → classify → evaluate → report → figures (``stages.py``).

    python -m lhco_fullphase.pipeline --config lhco_fullphase/configs/demo.yaml --out runs/lhco
        [--data-dir DIR] [--set training.epochs=2] [--stages prepare,train,...] [--resume never]
    horovodrun -np 16 python -m lhco_fullphase.pipeline --config lhco_fullphase/configs/paper.yaml ...

Every stage reuses its outputs when they were made from the same settings and inputs (and says
in one line what changed when they were not), so an interrupted run resumes where it stopped
(trainings from their last checkpoint). Under Horovod, training is data-parallel and the
generation chunks and classifier units are spread over the ranks; rank 0 writes the shared
files. Stage wall times go to ``OUT/stage_times.json`` and ``OUT/results.json``.
"""
from __future__ import annotations

from lhco_fullphase.schema import SCHEMA
from lhco_fullphase.stages import STAGE_NAMES, STAGES


def run_pipeline(run, stages=STAGE_NAMES) -> dict:
    """Run the selected stages; returns the results (rank 0, when the report stage ran)."""
    from lhco_fullphase.report import refresh_stage_times
    from shared.run import run_stages
    values = run_stages(run, STAGES, stages)
    refresh_stage_times(run)
    return values.get("report") or {}


def main(argv=None):
    from shared.cli import add_stages_argument, parser
    from shared.io import to_json
    from shared.run import Run
    p = parser(__doc__.split("\n")[0])
    add_stages_argument(p, STAGE_NAMES)
    args = p.parse_args(argv)
    run = Run.from_args(args, SCHEMA)
    res = run_pipeline(run, args.stages)
    if res:
        run.log(to_json({"stage_seconds": res.get("stage_seconds"), "acceptance": res.get("acceptance")}))
        run.log(f"results: {run.out / 'results.json'} and {run.out / 'results.md'}")


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
