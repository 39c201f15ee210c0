"""The benchmark suite runs at smoke size and prints its ratios (times are never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_suite_smoke():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--smoke"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "vs raw" in out and "vs naive" in out and "peak RSS" in out  # scan ratios printed
    assert "speedup vs svdvals" in out
    assert "results in" in out
