"""A report's content, declared once: its sections in order, each a title, a text for the reader and what to
show (a table, a figure written beside it). README.md renders them (`markdown`); analysis/report.ipynb
displays the same list, in the same order.

Which sections a report has depends on its kind (`kind_of`: a table, a figure of error curves, Fig. 7) and
on what its runs allow: a section with nothing to show is left out of both.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from resbench.report import prose
from resbench.report.calibration import gap_beside_penalty
from resbench.report.claims import FIG7_CLAIMS
from resbench.report.markdown import markdown_table
from resbench.report.runs import DEVICES_SEP

RUN_COLUMNS = ["run", "model", "tier", "seed", "status", "iterations", "test_error", "train_error", "device",
               "commit"]  # what the runs section shows of each run; runs.csv has every column


@dataclass(frozen=True, eq=False)
class Section:
    title: str
    text: str = ""  # markdown, written for the report's reader
    table: pd.DataFrame | None = None
    figure: str = ""  # an image file beside README.md (Report.save writes it)
    level: int = 2  # of the heading: 1 the report's title, 3 a part of the section before

    def markdown(self) -> str:
        parts = [f"{'#' * self.level} {self.title}", self.text.strip(),
                 f"![{self.title}]({self.figure})" if self.figure else "",
                 markdown_table(self.table) if self.table is not None else ""]
        return "\n\n".join(p for p in parts if p) + "\n"


def kind_of(name: str) -> str:
    """table, figure7, or curves (Figures 1, 4, 6): what a report opens with after its header."""
    return "table" if name.startswith("table") else ("figure7" if name == "figure7" else "curves")


def markdown(sections: list[Section]) -> str:
    return "\n".join(s.markdown() for s in sections)


def report_sections(report) -> list[Section]:
    """The sections of `report` (a resbench.report.core.Report, not imported here: core imports this module),
    showing the figures in `report.figures` (those Report.save wrote)."""
    exp, kind = report.exp, kind_of(report.exp.name)
    figure = f"{exp.name}.png" if f"{exp.name}.png" in report.figures else ""
    sections = [Section(exp.title, report.header(), level=1)]
    if kind == "table":
        sections.append(Section("The table", prose.THE_TABLE + ("" if figure else "\n\n" + prose.NO_FIGURE),
                                report.table(), figure))
    else:
        sections.append(Section("The figure", prose.THE_FIGURE[kind] if figure else prose.NO_FIGURE, figure=figure))
    means = report.response_means()
    if kind == "figure7" and not means.empty:
        sections.append(Section("Mean response per network, under every reading of \"std\"", prose.RESPONSE_MEANS,
                                means.reset_index()))
    sections.append(Section("Diff against the paper", prose.DIFF, report.diff))
    sections += claims(report.claims)
    if not report.budgets.empty:
        fig7 = any(c in FIG7_CLAIMS for c in report.budgets["claim"])
        sections.append(Section("Claims across budgets", prose.BUDGETS + (prose.BUDGETS_FIG7 if fig7 else ""),
                                report.budgets, _drawn(report, f"{exp.name}-budgets.png")))
    if report.budget_curve.shown:
        sections += budget_curve(report.budget_curve, _drawn(report, f"{exp.name}-curve.png"))
    margin = exp.tolerance.get("reproduced", 0.5)
    if not report.arithmetic.empty:
        sections.append(Section("Does the arithmetic move the result?", prose.arithmetic(margin), report.arithmetic))
    beside = gap_beside_penalty(report.diff, report.runs, report.calibration)
    if not beside.empty:
        sections.append(Section("How much of the gap is the data?", prose.CALIBRATION, beside))
    if report.gap_verdict:
        sections.append(Section("Is the gap the same at every depth?", f"**{report.gap_verdict}.**\n\n{prose.GAP}",
                                None if report.gap.empty else report.gap))
    if len(report.runs):
        sections.append(Section("Runs read", prose.RUNS, runs_table(report.runs)))
    sections.append(Section("How verdicts are decided", prose.verdicts(margin)))
    if not report.claims.empty:
        sections.append(Section("How claims are judged", prose.claims_rule(any(c in FIG7_CLAIMS for c in exp.claims))))
    if report.gap_verdict:
        sections.append(Section("How the gap by depth is read", prose.GAP_RULE))
    return sections


def claims(table: pd.DataFrame) -> list[Section]:
    if table.empty:
        return []
    return [Section("The paper's claims", prose.CLAIMS),
            *(Section(f"`{tier}`" if tier else "No tier has runs for these claims", table=part.drop(columns="tier"),
                      level=3) for tier, part in table.groupby("tier", sort=False))]


def budget_curve(curve, figure: str) -> list[Section]:
    """The budget curve (a resbench.report.curve_section.CurveSection): its fits, where each ordering turns,
    and its validation against full-recipe runs."""
    missing = "\n".join(f"* No curve for {model} in `{family}`: {why}."
                        for (model, family), why in curve.missing.items())
    sections = [Section("A budget curve that predicts", "\n\n".join(filter(None, [prose.CURVE, missing])),
                        curve.table() if curve.curves else None, figure if curve.curves else "")]
    if not curve.turns.empty:
        sections.append(Section("Where each ordering turns", prose.CURVE_TURNS, curve.turns, level=3))
    validation = prose.CURVE_VALIDATION if not curve.validation.empty else prose.NO_VALIDATION
    sections.append(Section("Validation: the prediction at the full recipe against full-recipe runs",
                            f"{validation}\n\n{prose.CURVE_READING}",
                            None if curve.validation.empty else curve.validation, level=3))
    return sections


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per run read: what it is, where it stands, what it measured, where and from which commit."""
    table = runs.assign(device=runs["devices"].str.replace(DEVICES_SEP, ", then "),
                        commit=runs["git_commit"].fillna("").astype(str).str[:8])
    return table[RUN_COLUMNS]


def _drawn(report, file: str) -> str:
    return file if file in report.figures else ""
