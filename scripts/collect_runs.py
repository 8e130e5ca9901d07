"""Copy the finished runs of a results folder into reports/runs/ (their small files: never checkpoints).

    python scripts/collect_runs.py /work/evidence-runs [reports/runs]
"""
import argparse
import shutil
from pathlib import Path

from resbench.store import FINISHED, read_status, run_dirs

SMALL = ("config.json", "env.json", "metrics.jsonl", "responses.json", "summary.json")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("source", type=Path, help="a results folder (resbench run --out)")
parser.add_argument("dest", type=Path, nargs="?", default=Path("reports/runs"))
args = parser.parse_args()
if not args.source.is_dir():
    parser.error(f"{args.source} is not a folder: pass the --out of resbench run")
copied = 0
for run in run_dirs(args.source):
    if read_status(run) in FINISHED:
        (args.dest / run.name).mkdir(parents=True, exist_ok=True)
        for name in SMALL:
            if (run / name).exists():
                shutil.copy2(run / name, args.dest / run.name / name)
        copied += 1
print(f"{copied} finished runs copied to {args.dest}/")
