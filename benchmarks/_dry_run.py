"""What every benchmark script shares: a dry run never writes into the recorded results."""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def refuse_recorded_results(
    parser: argparse.ArgumentParser, dry_run: bool, out: Path | None
) -> None:
    """argparse's usage error when a ``--dry-run`` would write under benchmarks/results."""
    if dry_run and out is not None and Path(out).resolve().is_relative_to(RESULTS.resolve()):
        parser.error(
            "--dry-run never writes into the recorded results: give --out a folder outside "
            f"benchmarks/results. Received: --out {out}"
        )
