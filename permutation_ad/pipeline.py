"""End to end: prepare → train → classify → evaluate → report → figures (``stages.py``).

    python -m permutation_ad.pipeline --config permutation_ad/configs/demo.yaml --out runs/demo
        [--data-dir DIR] [--set training.epochs=2] [--stages prepare,train,...] [--resume never]
    horovodrun -np 4 python -m permutation_ad.pipeline --config ... --out ...

Every stage reuses its outputs when they were made from the same settings and inputs (and says
in one line what changed when they were not), so an interrupted run resumes where it stopped.
Stage wall times go to ``OUT/stage_times.json`` and ``OUT/results.json``.
"""
from __future__ import annotations

from permutation_ad.schema import SCHEMA
from permutation_ad.stages import STAGE_NAMES, STAGES


def run_pipeline(run, stages=STAGE_NAMES) -> dict:
    """Run the selected stages; returns the results (rank 0, when the report stage ran)."""
    from permutation_ad.report import update_stage_times
    from shared.run import run_stages
    values = run_stages(run, STAGES, stages)
    update_stage_times(run)
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
        run.log(to_json({"acceptance": res.get("acceptance")}))
        run.log(f"results: {run.out / 'results.json'} and {run.out / 'table1.md'}")


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
