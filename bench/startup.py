"""Start-up cost of `bindimg`: the interpreter, the imports and typer building the command line.

Runs each command N times as a subprocess (`python -m bindimg …`, as installed: byte code
compiled first) and prints the median wall time and the median CPU time (user + system) of
the child; on a machine shared with other work the CPU time is the steadier figure. The
machine's load average is printed with them.

    .venv/bin/python bench/startup.py [--runs 5] [--python PYTHON]
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bindimg"


def measure(argv: list[str], runs: int, env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of `runs` runs of `argv`."""
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs bindimg")
    args = parser.parse_args()
    compileall.compile_dir(str(PACKAGE), quiet=1)  # pip compiles an installed package too
    with tempfile.TemporaryDirectory(prefix="bindimg-bench-") as cwd:
        bindimg = [args.python, "-m", "bindimg"]
        completing = {
            "_BINDIMG_COMPLETE": "complete_bash",
            "COMP_WORDS": "bindimg lint --f",
            "COMP_CWORD": "2",
        }
        cases = [
            ("python -c pass", [args.python, "-c", "pass"], {}),
            ("bindimg --version", [*bindimg, "--version"], {}),
            ("bindimg lint -h", [*bindimg, "lint", "-h"], {}),
            ("TAB completion of `bindimg lint --f`", bindimg, completing),
            ("bindimg lint (empty directory)", [*bindimg, "lint", "."], {}),
        ]
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cores")
        for label, argv, extra in cases:
            wall, cpu = measure(argv, args.runs, {**os.environ, **extra}, cwd)
            print(f"{label:40} median of {args.runs}: wall {wall:.3f} s, CPU {cpu:.3f} s")
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
