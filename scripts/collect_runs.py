"""Copy the finished runs of a results folder into reports/runs/ (their small files: never checkpoints).

    python scripts/collect_runs.py /work/evidence-runs [reports/runs]
"""
import shutil
import sys
from pathlib import Path

from resbench.store import FINISHED, read_status, run_dirs

SMALL = ("config.json", "env.json", "metrics.jsonl", "responses.json", "summary.json")
source, dest = Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else "reports/runs")
copied = 0
for run in run_dirs(source):
    if read_status(run) in FINISHED:
        (dest / run.name).mkdir(parents=True, exist_ok=True)
        for name in SMALL:
            if (run / name).exists():
                shutil.copy2(run / name, dest / run.name / name)
        copied += 1
print(f"{copied} finished runs copied to {dest}/")
