"""A report of one table or figure: our runs, diffed against the paper's values."""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pandas as pd

from resbench.probes.complexity import Complexity
from resbench.probes.responses import READINGS
from resbench.paper.tiers import is_exact
from resbench.report.counts import counted, counted_models
from resbench.report.runs import DEVICES_SEP, load_curves, load_responses, load_runs
from resbench.paper.declarations import Experiment, load_experiment
from resbench.report import diff as diffs
from resbench.report import gap as gaps
from resbench.report import calibration as calibrations
from resbench.report import sections as report_sections
from resbench.report.arithmetic import ARITHMETIC_COLUMNS, arithmetic_control
from resbench.report import stats
from resbench.report.budgets import BUDGET_COLUMNS, across_budgets, budgets_figure
from resbench.report.claims import check_claims, count_claims
from resbench.report.curve_section import CurveSection
from resbench.report.folder import write_report
from resbench.report.figures import curves_figure, responses_figure, save_figure, table_figure
from resbench.report.markdown import counts_line, ours as _ours, schedule_name
from resbench.report.sections import Section
from resbench.report.statement import statement

__all__ = ["Report", "counts_line", "schedule_name", "one_run_each"]  # the CLI and the index import the helpers here
PRESET_ORDER = ("paper", "demo", "smoke")  # which runs a report reads when not told


@dataclass
class Report:
    exp: Experiment
    preset: str  # which runs the report reads: paper (the full recipe), demo or smoke
    runs: pd.DataFrame  # every run of the experiment's rows with that preset
    curves: pd.DataFrame
    responses: pd.DataFrame
    complexity: dict[str, Complexity]
    diff: pd.DataFrame
    claims: pd.DataFrame
    gap: pd.DataFrame  # our gap to the paper by depth (CIFAR error tables), see report/gap.py
    gap_verdict: str
    budgets: pd.DataFrame  # each claim's effect per tier and budget, see report/budgets.py
    arithmetic: pd.DataFrame  # the same runs in fp32 and bf16 compared, see report/arithmetic.py
    duplicates: list[str]  # run directories not read: another one has the same network, seed and tier
    calibration: pd.DataFrame  # what the data costs airbench (report/calibration.py), per peer and data variant
    noise: stats.Noise  # the spread one seed is judged at, pooled over every run of the preset read
    budget_curve: CurveSection  # the budget curve (report/curve_section.py): extrapolations, never verdicts
    figures: list[str] = field(default_factory=list)  # the image files `save` wrote, which the sections show

    @classmethod
    def build(cls, name: str, runs_dir: str | Path = "runs", preset: str | None = None,
              data_variant: str | None = None) -> "Report":
        exp = load_experiment(name)
        runs = load_runs(runs_dir)
        if data_variant:
            runs = runs[runs["data_variant"] == data_variant]
        if preset is None:  # the paper's recipe where it was run, else the longest short runs there are
            preset = next((p for p in PRESET_ORDER if (runs["preset"] == p).any()), "paper")
        mine = pd.concat([runs.iloc[0:0], *(diffs.row_runs(exp, r, runs, preset) for r in exp.runnable_rows)])
        mine, duplicates = one_run_each(mine.drop_duplicates("run"))
        curves = load_curves(runs_dir) if len(mine) else pd.DataFrame()
        responses = load_responses(runs_dir) if len(mine) else pd.DataFrame()
        cx = {model: counted(model) for model in counted_models(exp)}
        pool, _ = one_run_each(runs[runs["preset"] == preset].drop_duplicates("run"))  # every network, not only ours
        noise = stats.seed_noise(pool)
        diff = diffs.diff_table(exp, mine, preset, cx, noise_runs=pool)
        gap, gap_verdict = (pd.DataFrame(columns=gaps.GAP_COLUMNS), "")
        if preset == "paper" and gaps.applies(exp):  # full-schedule tiers only: a budget's gap says nothing
            full = set(mine.loc[mine["budget"].fillna("1") == "1", "tier"])
            gap, gap_verdict = gaps.gap_by_depth(exp, diff[diff["tier"].isin(full) | (diff["tier"] == "")])
        claims = check_claims(exp, mine, responses, preset)
        budgets = across_budgets(exp, mine, responses) if preset == "paper" and exp.claims \
            else pd.DataFrame(columns=BUDGET_COLUMNS)
        arithmetic = arithmetic_control(mine, exp.tolerance["reproduced"]) if exp.dataset == "cifar" \
            else pd.DataFrame(columns=ARITHMETIC_COLUMNS)
        calibration = calibrations.calibration_table(calibrations.load_calibration(runs_dir))
        budget_curve = CurveSection.build(exp, mine) if preset == "paper" and "error" in exp.metrics else CurveSection()
        return cls(exp, preset, mine, curves, responses, cx, diff, claims, gap, gap_verdict, budgets, arithmetic,
                   duplicates, calibration, noise, budget_curve)

    @property
    def run_names(self) -> list[str]:
        return list(self.runs["run"])

    def verdicts(self, computed: bool | None = None) -> dict[str, int]:
        """Diff lines per verdict: all of them, or only the computed (params, FLOPs) or trained ones."""
        diff = self.diff if computed is None else self.diff[(self.diff["tier"] == "computed") == computed]
        counts = diff["verdict"].value_counts().to_dict()
        return {v: int(counts.get(v, 0)) for v in diffs.VERDICTS}

    def budgets_read(self) -> list[str]:
        """The budgets of the finished runs read ("1": the full schedule), smallest first."""
        done = self.runs[self.runs["status"] == "done"]
        return sorted(set(done["budget"].fillna("1")), key=Fraction) if "budget" in done else []

    def tiers(self) -> list[str]:
        """The tiers of the runs read (see resbench.paper.tiers), exact ones first."""
        return sorted(set(self.runs["tier"].dropna()), key=lambda t: (not is_exact(t), t))

    def table(self) -> pd.DataFrame:
        """The table as a reader wants it: one line per row (and tier), paper and ours side by side."""
        lines = []
        for row in self.exp.rows:
            mine = self.diff[self.diff["row"] == row.id]
            computed, measured = mine[mine["tier"] == "computed"], mine[mine["tier"] != "computed"]
            for tier in list(dict.fromkeys(measured["tier"])) or [""]:
                line = {"row": row.id, "model": row.model or "(other paper)", "tier": tier}
                if row.model in self.complexity:
                    c = self.complexity[row.model]
                    line.update({"params (M)": round(c.params / 1e6, 3), "GMACs": round(c.macs / 1e9, 3)})
                for _, d in pd.concat([computed, measured[measured["tier"] == tier]]).iterrows():
                    line[f"{d.metric} paper"] = d.paper
                    line[f"{d.metric} ours"] = _ours(d)
                    line[f"{d.metric} verdict"] = d.verdict
                lines.append(line)
        return pd.DataFrame(lines)

    def figure(self):
        if self.exp.name == "figure7":
            return responses_figure(self.exp, self.responses, self.runs_by_tier())
        if self.exp.name.startswith("figure"):
            return curves_figure(self.exp, self.curves, self.runs_by_tier())
        return table_figure(self.exp, self.diff, self.complexity, self.runs, self.preset)

    def runs_by_tier(self) -> dict[str, list[str]]:
        """The finished runs read, per tier (exact tiers first): figures draw each tier apart, and never
        a run still training (its missing tail would bend a mean)."""
        done = self.runs[self.runs["status"] == "done"]
        return {t: list(done.loc[done["tier"] == t, "run"]) for t in self.tiers()}

    def budgets_figure(self):
        return budgets_figure(self.budgets)

    def response_means(self) -> pd.DataFrame:
        """Fig. 7: each network's mean response per tier, under every reading of "std"."""
        if self.responses.empty:
            return pd.DataFrame()
        tiers = self.runs.set_index("run")["tier"]
        mine = self.responses[self.responses["run"].isin(self.run_names)]
        mine = mine.assign(tier=mine["run"].map(tiers))
        return mine.groupby(["tier", "model"])[[r for r in READINGS if r in mine]].mean()

    def save(self, out_dir: str | Path) -> Path:
        """diff.csv, claims.csv, runs.csv, the figures and README.md (the report's sections) into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.diff.to_csv(out / "diff.csv", index=False)  # full precision: it is the record
        self.claims.to_csv(out / "claims.csv", index=False)
        if not self.budgets.empty:
            self.budgets.to_csv(out / "budgets.csv", index=False)
        if not self.arithmetic.empty:
            self.arithmetic.to_csv(out / "arithmetic.csv", index=False)
        if self.gap_verdict:
            self.gap.to_csv(out / "gap.csv", index=False)
        if not self.calibration.empty:
            self.calibration.to_csv(out / "calibration.csv", index=False)
        self.budget_curve.save(out)
        self.runs.drop(columns=["dir"]).to_csv(out / "runs.csv", index=False)
        figures = {self.exp.name: self.figure(), f"{self.exp.name}-budgets": self.budgets_figure(),
                   f"{self.exp.name}-curve": self.budget_curve.figure()}
        self.figures = [save_figure(fig, out, stem) for stem, fig in figures.items() if fig is not None]
        (out / "README.md").write_text(self.markdown())
        write_report(out, {"name": self.exp.name, "title": self.exp.title, "preset": self.preset,
                                          "verdicts": self.verdicts(), "runs": len(self.run_names),
                                          "trained": self.verdicts(computed=False),
                                          "computed": self.verdicts(computed=True),
                                          "tiers": self.tiers(), "budgets": self.budgets_read(),
                                          "where": self.where(),
                                          "claims": self.claims[["claim", "definition", "status", "outcome"]]
                                          .to_dict("records"), "claim_counts": count_claims(self.claims["status"]),
                                          "gap": self.gap_verdict})
        return out

    def where(self) -> list[dict]:
        """Per budget (the full schedule first), what finished and where: runs per network and devices."""
        done = self.runs[self.runs["status"] == "done"]
        found = []
        for budget, group in sorted(done.groupby(done["budget"].fillna("1")), key=lambda bg: -Fraction(bg[0])):
            devices = {device for legs in group["devices"] for device in legs.split(DEVICES_SEP)}
            found.append({"budget": budget, "preset": self.preset, "runs": len(group),
                          "networks": {m: int(n) for m, n in group["model"].value_counts(sort=False).items()},
                          "devices": sorted(set(devices))})
        return found

    def header(self) -> str:
        """What was run: runs and seeds per network, tier, data, code versions, devices; and warnings."""
        counts = counts_line(self.verdicts(computed=False), self.verdicts(computed=True))
        lines = [f"Runs read: {len(self.run_names)} ({self.preset} preset). {counts[0].upper() + counts[1:]}.", "",
                 statement(self.exp, self.noise, bool(self.budget_curve.curves)), ""]
        if self.run_names:
            done = self.runs[self.runs["status"] == "done"]
            per_tier = [f"{', '.join(f'{m} ×{n}' for m, n in group['model'].value_counts(sort=False).items())} "
                        f"(`{tier}`)" for tier, group in done.groupby("tier", sort=False)]
            commits = diffs.code_versions(done)
            where = [f"{schedule_name(w)} on {', '.join(w['devices'])}" for w in self.where()]
            lines += [f"* Finished runs (seeds) per network: {'; '.join(per_tier) or 'none'}",
                      f"* Data: {', '.join(sorted(set(done['data_variant'])) or ['—'])}",
                      f"* Code: {', '.join(commits) or '—'}; trained: {'; '.join(where) or '—'}",
                      *calibrations.header_lines(self.calibration, set(done["data_variant"])), ""]
        if self.tiers():
            lines += ["Tier: " + "; ".join(f"`{t}`" for t in self.tiers()) + ". Only `exact` runs (the paper's "
                      "data, BN statistics and recipe) are compared with the paper's numbers; a `proxy` line shows "
                      "its numbers and says nothing about whether the paper's were reproduced.", ""]
        budgets = [b for b in self.budgets_read() if b != "1"]
        if self.preset == "paper" and budgets:
            iterations = ", ".join(f"{i:,}" for i in sorted(set(self.runs.loc[self.runs["budget"] != "1", "iterations"])))
            lines += [f"**Budget runs** (the paper's recipe compressed to {', '.join(budgets)} of its schedule: "
                      f"{iterations} iterations, not 64,000) are proxies: they test the paper's claims at a shorter "
                      "schedule and never reproduce its numbers; each budget is its own tier.", ""]
        if self.preset != "paper" and self.run_names:
            iterations = ", ".join(str(i) for i in sorted(set(self.runs["iterations"])))
            lines += [f"**These are {self.preset} runs** ({iterations} iterations, not the paper's 64,000): they "
                      "show that the pipeline works and learns; none is a reproduction of the paper's number.", ""]
        if self.duplicates:
            lines += [f"{len(self.duplicates)} run directories were not read: each has the same network, seed and "
                      f"tier as one that was (`{'`, `'.join(self.duplicates)}`).", ""]
        if self.exp.dataset == "imagenet" and not (self.runs["status"] == "done").any():
            lines += [f"**{diffs.NO_IMAGENET_RUN[0].upper() + diffs.NO_IMAGENET_RUN[1:]}**: complexity is computed "
                      "from the models; every error is `not run`.", ""]
        return "\n".join(lines)

    def sections(self) -> list[Section]:
        """What the report shows, in order (resbench/report/sections.py): README.md and the notebook show these."""
        return report_sections.report_sections(self)

    def markdown(self) -> str:
        """README.md: the sections as markdown, linking the figures `save` wrote."""
        return report_sections.markdown(self.sections())


def one_run_each(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One run directory per (network, options, seed, tier): a finished one, else the furthest; and the
    names of those left out (a key changed by an edit, or runs written by two versions of resbench)."""
    if runs.empty:
        return runs, []
    rank = runs.assign(_done=runs["status"] != "done", _behind=-runs["iteration"].fillna(0).astype(float))
    rank = rank.sort_values(["_done", "_behind", "run"])
    keep = ~rank.duplicated(["model", "options", "seed", "tier"])
    return runs.loc[rank.index[keep]].sort_index(), sorted(rank.loc[~keep, "run"])

