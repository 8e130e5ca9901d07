"""The index of a reports folder: README.md and index.html, one entry per table and figure.

Each entry: the report's runs and preset, its figure (a thumbnail in the HTML), how many
diff lines got each verdict in each tier, and its claims' outcomes; then which reports
read real runs of the paper's recipe and, given the runs folder, which rows are still owed.
Every path written is relative to the folder, so the index reads the same on every machine.
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pandas as pd

from resbench.paper.declarations import all_experiments, load_experiment
from resbench.report.calibration import calibration_table, load_calibration, sentence
from resbench.report.claims import CLAIM_STATUSES
from resbench.report.diff import row_runs
from resbench.report.folder import built_reports, read_report
from resbench.report.markdown import schedule_name
from resbench.report.runs import load_repeats, load_runs

TRAINED_ORDER = ("reproduced", "not reproduced", "inconclusive", "proxy", "demo", "smoke", "not run")
COMPUTED_ORDER = ("reproduced", "close", "not reproduced")  # params and FLOPs: the models' definition
VERDICT_ORDER = tuple(dict.fromkeys(COMPUTED_ORDER + TRAINED_ORDER))
CLAIM_ORDER = CLAIM_STATUSES  # exploratory lines (Fig. 7's other readings) counted apart, never as verdicts
INTRO = ("Each folder regenerates one table or figure of He et al. (2015) from run directories and diffs it "
         "against the paper: `README.md`, `diff.csv`, `claims.csv`, the figure, the executed notebook and its "
         "HTML. Rebuild with `resbench report --all --runs RUNS --out REPORTS` (its runs folder and this one).")


def owed_runs(runs: str | Path) -> dict[str, list[str]]:
    """Per trainable experiment, its rows with fewer finished runs of the paper's recipe in `runs`
    than the paper's number summarises (one; five for ResNet-110)."""
    table = load_runs(runs)
    owed = {}
    for exp in all_experiments():
        if exp.kind != "train":
            continue
        missing = []
        full = table[table["budget"] == "1"]  # a budget run is no run of the paper's recipe
        for row in exp.runnable_rows:
            done = int((row_runs(exp, row, full, "paper")["status"] == "done").sum())
            if done < row.seeds:
                missing.append(row.id if row.seeds == 1 else f"{row.id} ({done}/{row.seeds} seeds)")
        if missing:
            owed[exp.name] = missing
    return owed


def summaries(out: Path) -> list[dict]:
    """Each report's record (report.json), with its verdicts per tier and its claims' outcomes counted."""
    found = []
    for folder in sorted(built_reports(out), key=lambda p: (not p.name.startswith("table"), p.name)):
        s = read_report(folder)
        diff = pd.read_csv(folder / "diff.csv", keep_default_na=False)
        s["by_tier"] = {tier or "no runs": {v: int(n) for v, n in group["verdict"].value_counts().items()}
                        for tier, group in diff.groupby("tier", sort=False)}
        statuses = [c["status"] for c in s["claims"]]
        s["claim_counts"] = {c: statuses.count(c) for c in CLAIM_ORDER}
        s["figure"] = f"{s['name']}/{s['name']}.png" if (folder / f"{s['name']}.png").exists() else None
        found.append(s)
    return found


def _owed(out: Path, runs: str | Path | None) -> tuple[str | None, dict[str, list[str]]]:
    if runs is None:
        return None, {}
    return os.path.relpath(Path(runs).resolve(), out.resolve()), owed_runs(runs)


def _where(name: str) -> str:
    return "ImageNet (--data-root), 600k iterations each on 8 GPUs in the paper" \
        if load_experiment(name).dataset == "imagenet" else "CIFAR-10, 64k iterations each: a GPU's work"


def _real(reports: list[dict]) -> str:
    real = sorted(s["name"] for s in reports if s["preset"] == "paper" and "1" in s.get("budgets", ["1"]) and s["runs"])
    budget = sorted(s["name"] for s in reports if set(s.get("budgets", ["1"])) - {"1"} and s["runs"])
    text = f"Read runs of the paper's full recipe: {', '.join(real)}." if real else \
        "None yet: no run of the paper's full 64k-iteration recipe has been made."
    if budget:
        text += (f" Read runs of the paper's recipe at compressed budgets (proxies: they test its claims at a "
                 f"shorter schedule, never its numbers): {', '.join(budget)}.")
    return text + " Reports of demo or smoke runs say so at their top and give no verdict."


def where(reports: list[dict]) -> list[str]:
    """What was run where, over every report's runs: one line per budget ('full recipe' first)."""
    seen: dict[str, dict] = {}
    for s in reports:
        for w in s.get("where", []):
            entry = seen.setdefault(schedule_name(w), {"networks": {}, "devices": set()})
            for model, n in w["networks"].items():
                entry["networks"][model] = max(n, entry["networks"].get(model, 0))
            entry["devices"].update(w["devices"])
    lines = []
    for name, entry in seen.items():
        networks = ", ".join(f"{m} ×{n}" for m, n in entry["networks"].items())
        lines.append(f"{name}: {networks} runs, on {', '.join(sorted(entry['devices']))}")
    return lines


def repeated(runs: str | Path | None) -> list[str]:
    """Each run trained again, and how far the two agree (see `runs.load_repeats`)."""
    return [f"`{r.run}` trained again ({r.device or 'another machine'}, {r.repeat}): {r.train_identical} of "
            f"{r.train_points} logged training losses identical to the last bit; final test error {r.test_error} vs "
            f"{r.repeat_test_error} ({r.test_error_identical} of {r.test_points} test evaluations equal, test losses "
            f"within {r.max_test_loss_diff:.1e})" for r in load_repeats(runs).itertuples()] if runs is not None else []


def _counts(counts: dict, order: tuple[str, ...]) -> str:
    return " / ".join(str(counts.get(v, 0)) for v in order)


def calibrated(runs: str | Path | None) -> list[str]:
    """What the data costs airbench, per variant (`report.calibration`), or that it is not measured yet."""
    if runs is None:
        return []
    table = calibration_table(load_calibration(runs))
    return [f"{line['data_variant']}: {sentence(line)}" for _, line in table.iterrows()] or [
        "not measured yet: `resbench calibrate` on a CUDA GPU"]


def notes(runs: str | Path | None) -> dict[str, list[str]]:
    """The index's notes on the runs folder: runs trained twice, and the data calibration."""
    return {"The same run on two machines:": repeated(runs), "The data calibration:": calibrated(runs)}


def markdown(reports: list[dict], runs_rel: str | None, owed: dict[str, list[str]], notes: dict[str, list[str]]) -> str:
    lines = ["# resbench reports", "", INTRO, "", "The same as a page, with thumbnails: [index.html](index.html).", ""]
    if reports:
        lines += ["| report | runs | preset | tiers | trained lines: " + " / ".join(TRAINED_ORDER)
                  + " | computed lines (params, FLOPs): " + " / ".join(COMPUTED_ORDER) + " | claims: "
                  + " / ".join(CLAIM_ORDER) + " |", "|---|---|---|---|---|---|---|"]
    else:
        lines += ["No report is built here yet."]
    for s in reports:
        claims = _counts(s["claim_counts"], CLAIM_ORDER) if s["claims"] else "—"
        trained, computed = s.get("trained", s["verdicts"]), s.get("computed", {})
        lines.append(f"| [{s['name']}]({s['name']}/README.md) | {s['runs']} | {s['preset']} | "
                     f"{'<br>'.join(s.get('tiers', [])) or '—'} | {_counts(trained, TRAINED_ORDER)} | "
                     f"{_counts(computed, COMPUTED_ORDER) if any(computed.values()) else '—'} | {claims} |")
    lines += ["", "Trained lines count the (row, metric, tier) lines of each `diff.csv` that compare runs with the "
              "paper: only an `exact` tier earns reproduced or not; a `proxy` tier (other data, a compressed "
              "schedule) and demo or smoke runs show their numbers unjudged; not run: no finished run. Computed "
              "lines judge the models' parameters and multiply-adds, not a training. Claims count the lines of "
              "each `claims.csv` (one per claim and tier, and per reading of std for Fig. 7). Rules: in every "
              "report's README.", "", "## Real-run reports", "", _real(reports), ""]
    if where(reports):
        lines += ["Runs read, by budget:", ""] + [f"* {line}" for line in where(reports)] + [""]
    for heading, items in notes.items():
        lines += [heading, ""] + [f"* {line}" for line in items] + [""] if items else []
    if runs_rel is not None:
        lines += ["## Runs still owed", "", f"Rows with no finished run of the paper's recipe in `{runs_rel}/`:", ""]
        lines += [f"* {name}: {', '.join(rows)} ({_where(name)})" for name, rows in owed.items()] or ["* none"]
        lines += [""]
    return "\n".join(lines) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1.2em}
.card{border:1px solid #ddd;border-radius:8px;padding:0.8em 1em}
.card img{width:100%;border:1px solid #eee}.card h2{font-size:1.05em;margin:0.2em 0 0.5em}
ul{padding-left:1.2em}.card li{font-size:0.88em}
.none{color:#888;font-style:italic}.pass{color:#1a7f37}.fail{color:#cf222e}.inconclusive{color:#9a6700}"""


def _card(s: dict) -> str:
    e = html.escape
    name = s["name"]
    figure = (f'<a href="{e(s["figure"])}"><img src="{e(s["figure"])}" alt="{e(name)} figure"></a>'
              if s["figure"] else '<p class="none">No figure: nothing was run or computed for it.</p>')
    verdicts = "".join(f"<li><b>{e(tier)}</b>: " + ", ".join(f"{counts[v]} {v}" for v in VERDICT_ORDER if v in counts)
                       + "</li>" for tier, counts in s["by_tier"].items())
    verdicts = f"<p>Diff lines by tier and verdict:</p><ul>{verdicts}</ul>" if verdicts else ""
    claims = ", ".join(f'<span class="{c.replace(" ", "-")}">{n} {c}</span>'
                       for c, n in s["claim_counts"].items() if n) or '<span class="none">none declared</span>'
    return (f'<div class="card"><h2><a href="{e(name)}/{e(name)}.html">{e(s["title"])}</a></h2>{figure}'
            f'<p>{s["runs"]} runs ({e(s["preset"])} preset) · <a href="{e(name)}/README.md">README</a> · '
            f'<a href="{e(name)}/diff.csv">diff.csv</a> · <a href="{e(name)}/claims.csv">claims.csv</a></p>'
            f'{verdicts}<p>Claims: {claims}</p></div>')


def _code(text: str) -> str:
    """Escaped, with `backticks` as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def page(reports: list[dict], runs_rel: str | None, owed: dict[str, list[str]], notes: dict[str, list[str]]) -> str:
    e = html.escape
    owed_html = ""
    if runs_rel is not None:
        items = "".join(f"<li>{e(name)}: {e(', '.join(rows))} ({e(_where(name))})</li>" for name, rows in owed.items())
        owed_html = (f"<h2>Runs still owed</h2><p>Rows with no finished run of the paper's recipe in "
                     f"<code>{e(runs_rel)}/</code>:</p><ul>{items or '<li>none</li>'}</ul>")
    where_html = "".join(f"<li>{e(line)}</li>" for line in where(reports))
    where_html = f"<p>Runs read, by budget:</p><ul>{where_html}</ul>" if where_html else ""
    for heading, items in notes.items():
        where_html += f"<p>{e(heading)}</p><ul>{''.join(f'<li>{_code(r)}</li>' for r in items)}</ul>" if items else ""
    cards = "".join(_card(s) for s in reports) or '<p class="none">No report is built here yet.</p>'
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>resbench reports</title>"
            f"<style>{CSS}</style></head><body><h1>resbench reports</h1><p>{_code(INTRO)}</p>"
            f"<h2>Real-run reports</h2><p>{e(_real(reports))}</p>{where_html}<div class='cards'>{cards}</div>{owed_html}"
            f"<p>Verdicts count the (row, metric, tier) lines of each diff.csv; claims count the lines of each "
            f"claims.csv. Each report states its rules.</p></body></html>\n")


def build_index(out: str | Path = "reports", runs: str | Path | None = None) -> Path:
    """OUT/README.md and OUT/index.html; returns the README's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reports = summaries(out)
    runs_rel, owed = _owed(out, runs)
    found = notes(runs)
    (out / "index.html").write_text(page(reports, runs_rel, owed, found))
    path = out / "README.md"
    path.write_text(markdown(reports, runs_rel, owed, found))
    return path
