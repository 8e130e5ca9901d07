"""Reports: our runs diffed against the paper, as tables, figures and verdicts.

`Report` is imported on first use: reading run directories (`report.runs`, which `resbench status`
needs) must work where fvcore and papermill are not installed, as on the GPU machine.
"""
__all__ = ["Report"]


def __getattr__(name: str):
    if name == "Report":
        from resbench.report.core import Report

        return Report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
