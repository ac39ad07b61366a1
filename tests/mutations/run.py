"""The mutation check: each training option, silently switched off inside torch, fails tests.

    python tests/mutations/run.py [--json FILE] [MUTATION ...]

Runs tests/train/test_options.py once as it is (it must pass), then once per mutation of
tests/mutations/plugin.py (each must fail: the mutation is "killed"), one pytest process at a
time per core (``--jobs``, 2 by default: much of each is starting Python and importing torch,
one thread's work), stopping each at its first failure. Prints a table and exits 1 if the clean
run failed or any mutation survived.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from plugin import ENV, MUTATIONS, SUMMARY_PREFIX  # this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[2]
TESTS = "tests/train/test_options.py"
PYTEST = ["-x", "-q", "-p", "no:xdist", "-p", "no:cacheprovider"]
FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) \S+?::(\S+)", re.MULTILINE)
HITS_LINE = re.compile(rf"^{SUMMARY_PREFIX} \S+: changed (\d+) calls$", re.MULTILINE)


@dataclass(frozen=True)
class Outcome:
    mutation: str  # "none" for the clean run
    result: str  # passed / failed (clean); killed / survived / not reached / error (mutations)
    failed: tuple[str, ...]  # the failing tests
    changed_calls: int | None  # the calls the mutation changed
    exit_code: int
    seconds: float


def run_tests(mutation: str | None) -> Outcome:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", ENV))}
    if mutation is not None:
        env[ENV] = mutation
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", TESTS, *PYTEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    output = completed.stdout + completed.stderr
    failed = tuple(FAILED_LINE.findall(output))
    hits = HITS_LINE.search(output)
    changed = int(hits.group(1)) if hits else None
    code = completed.returncode
    if mutation is None:
        result = "passed" if code == 0 else "failed"
    elif code == 0:
        result = "survived"
    elif code != 1:  # 2-4: interrupted, internal or usage error; 5: no tests
        result = "error"
    elif not changed:  # a failure the mutation cannot have caused
        result = "not reached"
    else:
        result = "killed"
    if result in ("failed", "error"):
        print(output[-3000:], file=sys.stderr)
    return Outcome(mutation or "none", result, failed, changed, code, seconds)


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutation", "result", "changed calls", "seconds", "first failing test")]
    for o in outcomes:
        calls = "-" if o.changed_calls is None else str(o.changed_calls)
        first = o.failed[0] if o.failed else "-"
        rows.append((o.mutation, o.result, calls, f"{o.seconds:.1f}", first))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("mutations", nargs="*", metavar="MUTATION", help="default: all")
    parser.add_argument("--json", type=Path, help="also write the outcomes to this file")
    parser.add_argument("--jobs", type=int, default=2, help="pytest processes at a time")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.mutations) - set(MUTATIONS))
    if unknown:
        parser.error(f"unknown mutation(s) {', '.join(unknown)}; expected: {', '.join(MUTATIONS)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1. Received: --jobs {args.jobs}")
    with ThreadPoolExecutor(args.jobs) as pool:  # outcomes in the table's order
        outcomes = list(pool.map(run_tests, [None, *(args.mutations or MUTATIONS)]))
    print(table(outcomes))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    ok = outcomes[0].result == "passed" and all(o.result == "killed" for o in outcomes[1:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
