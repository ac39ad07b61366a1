"""The mutation check: with any training option switched off inside torch, tests fail.

Runs tests/mutations/run.py, which runs tests/train/test_options.py once as it is and once per
mutation (a pytest process each, two at a time, stopped at the first failure): about a minute
on 2 cores (101 s one at a time).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).parent / "mutations" / "run.py"
# Listed here rather than read from the plugin, so that a mutation dropped there fails here.
MUTATIONS = (
    "lr-schedule",
    "grad-clip",
    "label-smoothing",
    "weight-decay",
    "channels-last",
    "autocast",
    "nesterov",
    "momentum",
)


@pytest.mark.slow
def test_every_mutation_is_killed(tmp_path):
    outcomes_file = tmp_path / "mutations.json"
    completed = subprocess.run(
        [sys.executable, str(RUN), "--json", str(outcomes_file)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    outcomes = {o["mutation"]: o for o in json.loads(outcomes_file.read_text())}
    assert outcomes.pop("none")["result"] == "passed"
    assert {name: o["result"] for name, o in outcomes.items()} == dict.fromkeys(MUTATIONS, "killed")
    assert all(o["changed_calls"] > 0 and o["failed"] for o in outcomes.values())
