"""The command line of every entry point: common flags and the one error path.

Every ``python -m <package>.<stage>`` module builds its parser with :func:`parser` (``--config``,
``--out``, ``--set``, ``--resume``, ``--data-dir``) and runs its ``main`` through
:func:`run_cli`, which turns bad input into one line on stderr and exit code 2:

* :class:`shared.errors.InputError` (config, data, checkpoint and usage errors) and ``OSError``
  (missing, unreadable or unwritable files) → ``error: <file>: <key/field>: <what>``, exit 2;
* Ctrl-C → ``interrupted; last checkpoint: <folder>`` (or "no checkpoint written"), exit 130;
* under Horovod, the ranks stopped because another rank failed → one line saying so, exit 1
  (the failed rank printed the error itself).

Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import os
import sys

from shared.errors import InputError, UsageError, one_line


def parser(description: str | None = None, *, data_dir: bool = True, out_required: bool = True
           ) -> argparse.ArgumentParser:
    """Argument parser with the flags shared by all entry points."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, metavar="FILE",
                   help="YAML/JSON config file (relative paths inside it are relative to it)")
    p.add_argument("--out", required=out_required, metavar="DIR",
                   help="output folder (created); fills {out} in the config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   nargs="+", help="override a config key, e.g. --set training.epochs=3 (repeatable)")
    p.add_argument("--resume", default="auto", metavar="auto|never|DIR",
                   help="auto: reuse finished outputs whose inputs and settings are unchanged and "
                        "continue interrupted trainings (default); never: recompute everything "
                        "under --out; DIR: continue one training from that checkpoint folder")
    if data_dir:
        p.add_argument("--data-dir", default=None, metavar="DIR",
                       help="raw + processed data folder (default: data.dir of the config, "
                            "else OUT/data)")
    return p


def add_stages_argument(p: argparse.ArgumentParser, stages) -> None:
    """``--stages a,b,...`` choosing among ``stages`` (default: all); an unknown name is a
    one-line usage error."""
    known = list(stages)

    def parse(text):
        chosen = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in chosen if s not in known]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {known}")
        return chosen

    p.add_argument("--stages", type=parse, default=known, help=f"comma list from {known}")


def add_shard_argument(p: argparse.ArgumentParser) -> None:
    """``--shard K/N``: do only the K-th (0-based) of N shares of the stage's independent work
    units (Slurm job arrays); without it the work is spread over the Horovod ranks, if any."""

    def parse(text):
        try:
            k, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected K/N, e.g. 3/16") from None
        if n < 1 or not 0 <= k < n:
            raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= K < N")
        return k, n

    p.add_argument("--shard", type=parse, default=None, metavar="K/N",
                   help="do only shard K (0-based) of N of the independent work units")


def flatten_overrides(overrides) -> list[str]:
    """argparse gives a list of lists for ``--set a=1 b=2 --set c=3``; flatten it."""
    flat: list[str] = []
    for item in overrides or []:
        flat.extend([item] if isinstance(item, str) else item)
    return flat


def _last_checkpoint() -> str:
    from shared.checkpoint import LAST_SAVED
    return LAST_SAVED[0] if LAST_SAVED else "no checkpoint written by this run"


def _close_progress_bars() -> None:
    """Close the progress bars a failure left open, so that the error is the last line (and not
    glued to a bar, or followed by one repainted at exit)."""
    tqdm = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ()) or ()):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot close must not hide the error
            pass


def run_cli(main, argv=None) -> None:
    """Run ``main(argv)``; bad input → one line and exit 2, Ctrl-C → one line and exit 130."""
    try:
        main(argv)
    except InputError as exc:
        _close_progress_bars()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        _close_progress_bars()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) and \
            str(exc.filename) not in str(exc) else ""
        print(f"error: {where}{one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _close_progress_bars()
        print(f"\ninterrupted; last checkpoint: {_last_checkpoint()}", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if PEER_FAILED not in str(exc):
            raise
        _close_progress_bars()
        # Horovod stops every rank when one fails: that rank printed the real error
        print("error: stopped because another rank failed (its error is printed above)",
              file=sys.stderr)
        sys.exit(1)


PEER_FAILED = "Horovod has been shut down"


def resolve_resume(resume: str | None) -> str:
    """Normalise ``--resume``: 'auto', 'never', or an absolute checkpoint folder that exists."""
    if resume is None or resume in ("auto", "never"):
        return resume or "auto"
    path = os.path.abspath(os.path.expanduser(str(resume)))
    if not os.path.isdir(path):
        raise UsageError(f"--resume {resume}: checkpoint folder {path} does not exist")
    return path


__all__ = ["parser", "add_stages_argument", "add_shard_argument", "flatten_overrides", "run_cli",
           "resolve_resume"]
