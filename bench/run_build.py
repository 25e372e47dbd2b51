"""`catdog-report` as its console script runs it (cli.run), plus a line saying what it imported.

bench.py runs builds as `python bench/run_build.py build ...`: the same `cli.run` the
`catdog-report` entry point calls, after which one stderr line `BENCH-MODULES {...}` tells
whether the build process itself imported TensorFlow, Keras, matplotlib or MkDocs (page
kernels are separate processes; bench.py counts those from the build log and the process tree).
"""

from __future__ import annotations

import json
import sys

from catdog_report.cli import run

WATCHED = ("tensorflow", "keras", "matplotlib", "mkdocs", "nbclient")

if __name__ == "__main__":
    try:
        run(sys.argv[1:])
    finally:
        seen = {name: name in sys.modules for name in WATCHED}
        sys.stderr.write("BENCH-MODULES " + json.dumps(seen) + "\n")
