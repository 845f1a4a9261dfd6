"""`bindimg add` of N units, start-up included: linear in N (issue 11, kind 6).

Builds roots of 2,000 and 10,000 units that need no registry (half pinned non-canonically,
half tags in a lock, `--lock --frozen`), runs `python -m bindimg add` over all of them once
per size, and prints each wall time and the ratio of the two per-unit costs. Linear means a
ratio near 1; bindimg 0.1.0 took 5 s and 108 s (ratio 4.3): each file's write listed its
whole directory again for leftovers.

    .venv/bin/python bench/add_scale.py [--sizes 2000 10000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.faultkit import add_args, locked_units


def timed_add(top: Path, units: int) -> float:
    root, lock = top / f"root-{units}", top / f"{units}.lock"
    names = sorted(locked_units(root, units, lock))
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bindimg", *add_args(root, lock, names), "-q"],
        capture_output=True,
        check=False,
    )
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"add of {units} units failed: {done.stderr.decode()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[2000, 10000])
    small, large = parser.parse_args().sizes
    with tempfile.TemporaryDirectory(prefix="bindimg-bench-") as top:
        times = {n: timed_add(Path(top), n) for n in (small, large)}
    for n, seconds in times.items():
        print(f"add {n:>6} units: {seconds:7.2f} s  ({1000 * seconds / n:.2f} ms/unit)")
    ratio = (times[large] / large) / (times[small] / small)
    print(f"per-unit cost {large} vs {small}: {ratio:.2f} (1.00 = linear)")


if __name__ == "__main__":
    main()
