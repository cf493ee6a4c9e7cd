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
    from shared.run import run_pipeline as run_stages_of
    return run_stages_of(run, STAGES, stages)


def main(argv=None):
    from shared.run import pipeline_main
    pipeline_main(argv, __doc__, SCHEMA, STAGES, ("results.json", "table1.md"))


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
