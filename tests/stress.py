"""Repeat the tests that start processes, send signals or race, beside a CPU hog.

``python -m tests.stress --rounds 5`` (or ``make stress``) runs every test marked
``stress`` (torchrun, preemption, kill -9 and resume, the folder lock, the demo in a
browser, the methods' exact resume) ``--rounds`` times while another process spins on
one core, as happens on a shared machine, and prints each test's failures. It exits
non-zero if any round failed. Each round's JUnit report stays in ``--report-dir``.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: A whole round may take this long beside the hog before it counts as hung.
ROUND_TIMEOUT_S = 1800


@contextmanager
def cpu_hog(processes: int) -> Iterator[None]:
    """``processes`` busy loops in other processes, for the duration of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=30)


def outcomes(report: Path) -> dict[str, str]:
    """``{test id: "passed" | "failed" | "skipped"}`` from a JUnit XML report."""
    results: dict[str, str] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        tags = {child.tag for child in case}
        failed = bool(tags & {"failure", "error"})
        results[name] = "failed" if failed else "skipped" if "skipped" in tags else "passed"
    return results


def run_round(index: int, report_dir: Path, pytest_args: Sequence[str]) -> dict[str, str]:
    """One pytest run of the ``stress`` tests; its outcomes by test."""
    report = report_dir / f"round{index}.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "stress",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        *pytest_args,
    ]
    subprocess.run(command, cwd=ROOT, timeout=ROUND_TIMEOUT_S, check=False)
    if not report.exists():
        raise RuntimeError(f"round {index}: pytest wrote no report ({' '.join(command)})")
    return outcomes(report)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="repetitions (default: 5)")
    parser.add_argument(
        "--hogs", type=int, default=1, help="busy processes beside the tests (default: 1)"
    )
    parser.add_argument(
        "--report-dir", type=Path, default=ROOT / "stress-reports", help="JUnit reports"
    )
    args, pytest_args = parser.parse_known_args(argv)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    failures: collections.Counter[str] = collections.Counter()
    runs: collections.Counter[str] = collections.Counter()
    for index in range(1, args.rounds + 1):
        tic = time.monotonic()
        with cpu_hog(args.hogs):
            results = run_round(index, args.report_dir, pytest_args)
        for name, outcome in results.items():
            runs[name] += outcome != "skipped"
            failures[name] += outcome == "failed"
        failed = sum(outcome == "failed" for outcome in results.values())
        print(
            f"round {index}/{args.rounds}: {len(results)} tests, {failed} failed, "
            f"{time.monotonic() - tic:.0f} s beside {args.hogs} busy process(es)",
            flush=True,
        )
    width = max((len(name) for name in runs), default=10)
    print(f"\n{'test':<{width}}  failed/runs")
    for name in sorted(runs):
        print(f"{name:<{width}}  {failures[name]}/{runs[name]}")
    total = sum(failures.values())
    print(f"\n{total} failure(s) in {args.rounds} round(s) of {len(runs)} test(s)")
    return 1 if total else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
