"""Reports: our runs diffed against the paper, as tables, figures and verdicts.

`Report` is imported on first use: `resbench status` reads run directories through `report.runs`
alone, which imports seconds faster than `report.core` with its figures (matplotlib, seaborn) and
statistics (scipy). fvcore and papermill are imported only where they are used (probes/complexity.py,
report/build.py): importing either module needs neither.
"""
__all__ = ["Report"]


def __getattr__(name: str):
    if name == "Report":
        from resbench.report.core import Report

        return Report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
