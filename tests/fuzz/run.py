"""A long fuzz run: malformed checkpoints parsed, and what parses scanned with every analysis.

    python tests/fuzz/run.py [--cases 20000] [--scan-every 5] [--seed 0]

Each case is a directory of one or two shards, sometimes an index and a config (``cases.checkpoint_dirs``).
An outcome is a parsed checkpoint, or streamscope's own error; a scan of what parsed must end with results or
streamscope's own error, and any per-tensor error it records is counted. Anything else is a finding: it is
printed with its traceback and the run exits 1.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.cases import checkpoint_dirs, write  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

import streamscope  # noqa: E402
from streamscope.errors import StreamscopeError  # noqa: E402
from streamscope.io.checkpoint import CheckpointIndex  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=20000)
    p.add_argument("--scan-every", type=int, default=5, help="scan every Nth case that parses")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    outcomes: collections.Counter = collections.Counter()
    findings: list[str] = []
    parsed = [0]

    @seed(args.seed)
    @settings(max_examples=args.cases, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(checkpoint_dirs())
    def case(files):
        d = Path(tempfile.mkdtemp(prefix="streamscope-fuzz-"))
        try:
            root = write(d / "ckpt", files)
            try:
                index = CheckpointIndex.from_path(root)
            except StreamscopeError as e:
                outcomes[f"error: {type(e).__name__}"] += 1
                return
            except Exception:  # noqa: BLE001 - this is what the run looks for
                findings.append(traceback.format_exc())
                outcomes["FINDING (index)"] += 1
                return
            outcomes["parsed"] += 1
            parsed[0] += 1
            if parsed[0] % args.scan_every:
                return
            try:
                r = streamscope.scan(root, out=d / "out", analyses="all", memory_budget="16MB")
                outcomes["scanned"] += 1
                outcomes["per-tensor errors recorded"] += len(r.errors)
                outcomes["tensors skipped (dtype)"] += len(r.model.get("skipped", []))
            except StreamscopeError as e:
                outcomes[f"scan error: {type(e).__name__}"] += 1
            except Exception:  # noqa: BLE001
                findings.append(traceback.format_exc())
                outcomes["FINDING (scan)"] += 1
        finally:
            shutil.rmtree(d, ignore_errors=True)

    t0 = time.time()
    case()
    print(f"{sum(v for k, v in outcomes.items() if k == 'parsed' or k.startswith(('error', 'FINDING (index)')))} cases in {time.time() - t0:.0f} s")
    for key, n in sorted(outcomes.items()):
        print(f"  {key}: {n}")
    for f in findings[:5]:
        print(f, file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
