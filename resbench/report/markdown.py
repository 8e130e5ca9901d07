"""Text pieces of a report's README: tables in markdown, a line of verdict counts, a schedule's name."""
from __future__ import annotations

import pandas as pd


def markdown_table(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.4g}"
        return str(v).replace("|", "\\|")
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def ours(d) -> str:
    """A diff line's numbers as the table shows them: best, mean±std (n), or the one value."""
    if pd.isna(d.ours_mean):
        return "—"
    if d.n and d.n > 1:
        best = "" if pd.isna(d.ours_best) else f"{d.ours_best:.2f} (best), "
        return f"{best}{d.ours_mean:.2f}±{d.ours_std:.2f} (n={int(d.n)})"
    return f"{d.ours_mean:.3g}"


def schedule_name(where: dict) -> str:
    """'the full recipe', 'budget 1/32', or 'the demo preset' for one entry of `Report.where`."""
    if where.get("preset", "paper") != "paper":
        return f"the {where['preset']} preset"
    return "the full recipe" if where["budget"] == "1" else f"budget {where['budget']}"


def counts_line(trained: dict[str, int], computed: dict[str, int]) -> str:
    """"trained rows: proxy 3, not run 10; computed (params, FLOPs): reproduced 6": a computed verdict
    is about the model's definition, never about a training result, so the two are counted apart."""
    def listed(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {n}" for k, n in counts.items() if n)

    parts = [f"trained rows: {listed(trained)}" if any(trained.values()) else "",
             f"computed (params, FLOPs): {listed(computed)}" if any(computed.values()) else ""]
    return "; ".join(p for p in parts if p) or "no paper numbers"
