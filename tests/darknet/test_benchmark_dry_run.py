"""benchmarks/darknet_cpu.py --dry-run: the same code path in seconds, its table and its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "darknet_cpu.py"


def test_dry_run_prints_the_table_and_writes_json(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "darknet_cpu.json").read_text())
    assert record["dry_run"] and record["batch"] == 1 and record["input"] == [3, 32, 32]
    for key in ("cnnlab_version", "git_commit", "torch_version"):
        assert key in record["context"]
    for name in ("cnnlab", "pytorch eager"):
        row = record["results"][name]
        assert row["runs"] == 2 and row["wall_ms"] > 0 and name in result.stdout
    assert record["cnnlab_speedup"]["cnnlab"] == 1.0
    assert set(record["by_threads"]) == {str(t) for t in record["threads"]}
    assert record["best"]["cnnlab"]["threads"] in record["threads"]
    assert len(record["load"]["loadavg_before"]) == 3
    # the script sets PASSIVE (OpenMP threads that sleep while waiting) unless told otherwise
    assert record["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
