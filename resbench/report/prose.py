"""What a report says to its reader, in words: what each table shows and how its verdicts are decided.

Written for someone reading a report, not for someone reading the code; `resbench.report.sections`
places each text in its section. Where a rule lives in code, the code's module is the one to change
first, and the text here after it.
"""
from __future__ import annotations

THE_TABLE = ("One line per row of the paper's table, and per tier of our runs: our model's parameters and "
             "multiply-adds, then for each metric the paper's number, ours (the best and the mean ± std over n "
             "seeds, or the one value) and its verdict.")

THE_FIGURE = {
    "table": "Each seed's error as a dot, our mean with the 95% interval its verdict reads, and the paper's number "
             "as a red tick, per row and tier (the computed multiply-adds where no error was measured).",
    "curves": "The paper's figure drawn from our finished runs, each tier apart: a run still training is left out, "
              "its missing tail would bend a mean.",
    "figure7": "The std of each 3x3 layer's response, in layer order (top) and sorted by size (bottom), per network "
               "and tier: the reading the claims are judged on (pooled over images, channels and positions, BN on "
               "its running statistics, on the test set).",
}
NO_FIGURE = "*No figure: nothing was run or computed for it.*"

RESPONSE_MEANS = ("Each network's mean response over its 3x3 layers, per tier, under every reading of \"std\": the "
                  "figure and the claims' verdicts use `std` (pooled, BN on its running statistics); the other "
                  "columns are exploratory.")

DIFF = ("One line per row, metric and tier: the paper's number, ours (`ours_mean` over `n` seeds, their std and "
        "best), `delta` = ours - paper with its 95% interval [`delta_low`, `delta_high`], and the verdict. How "
        "verdicts are decided is at the end of this page.")

CLAIMS = "One table per tier: runs of different data, budgets or arithmetic are never pooled."

BUDGETS = ("From which share of the paper's schedule does each claim hold? Each ordering a claim makes (\"plain-20 "
           "below plain-56\") gets, in every tier with runs on both sides, an effect: the higher network's mean "
           "minus the lower one's, positive where the paper's direction holds, with its 90% Welch interval (the "
           "one-sided 5% test's own: a pass is a bar wholly above 0) and its verdict. Tiers that differ only in "
           "their schedule are one family, drawn as one line against the budget on a log axis; where the paper's "
           "numbers give the effect at its full schedule (Table 6's test errors), it is drawn at budget 1. A budget "
           "run is a proxy of the paper's recipe: the figure says from which budget a claim's direction shows, "
           "never that the paper's number was reached.")
BUDGETS_FIG7 = " Fig. 7's claims enter with the reading of \"std\" they are judged on."

CURVE = ("Per network and family (tiers that differ only in their schedule), the test error of every finished run "
         "is fitted against its budget b, the share of the paper's 64,000 iterations, by e(b) = e_inf + c·b^-alpha. "
         "A network gets a curve once it has at least 3 budgets with at least 2 seeds each. The interval is a "
         "bootstrap over runs: each budget's seeds resampled, the curve fitted again, the middle 95% kept. The "
         "columns marked *extrapolation* are predictions, never verdicts.")
CURVE_TURNS = ("Where each ordering of the paper's claims is predicted to turn: the smallest budget from which the "
               "higher network's fitted error stays above the lower one's, up to b = 1.")
CURVE_VALIDATION = ("The curve's prediction at the full recipe (b = 1), from the compressed budgets alone, against "
                    "the network's full-recipe runs: the miss (measured - predicted) with its interval (the measured "
                    "mean's t interval and the prediction's bootstrap interval, in quadrature) passes inside the "
                    "verdicts' margin, fails wholly outside it, and is inconclusive otherwise.")
NO_VALIDATION = "Not possible yet: no network has both a curve and >= 2 full-recipe runs on the same data."
CURVE_READING = ("How to read the curve: its predictions are extrapolations of a form chosen before looking. The form "
                 "assumes the error keeps falling as a power of the budget, which the measured budgets cannot test "
                 "beyond themselves; only the validation above says how far to trust it.")


def arithmetic(margin: float) -> str:
    return (f"The same networks trained in fp32 and in another arithmetic (bf16, bf16+TF32), all else equal: the "
            f"difference of their mean test errors (the other minus fp32), its 95% Welch interval and two-sided p. "
            f"**no shift beyond the margin** when the interval lies inside ±{margin} pp (the verdicts' margin), "
            f"**shifted** when it lies wholly outside, **inconclusive** otherwise: a difference that is not "
            f"significant is not yet evidence of no effect. A faster arithmetic becomes a default only on no shift "
            f"beyond the margin.")


CALIBRATION = ("A calibration run trains airbench's own recipe, unchanged, on the data these runs read: its test "
               "error minus airbench's published error on the original CIFAR-10 is what the data costs a trainer "
               "nobody here tuned. Beside each of our full-recipe gaps to the paper, that penalty with its 95% t "
               "interval over seeds (the published mean taken as exact; one seed has no interval). It is shown, never "
               "applied: every verdict stays against the paper's own number.")

GAP = ("One offset at every depth, within seed noise, is what a cost of the data (its JPEG q75 re-encoding, say) "
       "would give; a gap that differs between depths is something else. How the gap is read is at the end of this "
       "page.")

RUNS = ("Every run read, one line each; `runs.csv` beside this page holds every column (versions, machine, "
        "timings).")


def verdicts(margin: float) -> str:
    """How a diff line's verdict is decided (resbench/report/diff.py and stats.py decide it)."""
    return "\n".join([
        "* **Tiers.** A tier says how our runs stand to the paper's setting. `exact` runs have the paper's data, BN "
        "statistics and recipe (their arithmetic named in brackets); every other run is a `proxy`, its departures "
        "named (JPEG q75 data, a compressed schedule ...). Runs of different tiers are never averaged. Only exact "
        "lines are judged against the paper: a proxy line shows its numbers and its verdict is `proxy`.",
        f"* **Errors**, in percentage points. The row is **reproduced** when the 95% interval of our mean minus the "
        f"paper's number lies inside ±{margin} pp, **not reproduced** when it lies wholly outside, and "
        "**inconclusive** otherwise (two one-sided tests at 2.5% each); an inconclusive line says about how many "
        "seeds at the same mean and spread would decide, or that none can.",
        "* **One seed** cannot show its own spread: its interval takes the seed-to-seed std pooled over every group "
        "of runs that differ only in seed (named at the top of this page). One seed can be not reproduced, never "
        "reproduced; with no group to pool from it has no interval and is inconclusive.",
        "* **More seeds** narrow the interval: they can move a verdict out of inconclusive, never back into it and "
        "never across.",
        "* **ResNet-110**: the paper's number is the best of 5 runs (6.43), their mean 6.61 ± 0.16. Our mean is "
        "compared with that mean, and its own uncertainty (±0.20 pp) widens our interval: a mean within 0.20 pp of "
        "the margin stays inconclusive at any number of seeds. `ours_best` is the best of our seeds 0-4.",
        "* A **lower bound** (\"more than 60%\") is reproduced when our mean's interval lies wholly above it, not "
        "reproduced when wholly below.",
        "* **Parameters and FLOPs** are computed from our models: parameters are reproduced when they round to the "
        "paper's figure, FLOPs when within 2%; `close` within 5%.",
        "* **not run**: no finished run of the paper's recipe for the row. Demo and smoke runs never earn a verdict: "
        "their numbers are shown and the verdict names the preset.",
        "* Runs of several code versions, or with uncommitted changes, are averaged; the note names the versions.",
    ])


def claims_rule(fig7: bool) -> str:
    """How a claim is judged (resbench/report/claims.py); `fig7`: with the reading of "std" Fig. 7's are judged on."""
    text = ("A claim of the paper is a set of orderings between networks (\"plain-56 trains worse than plain-20\"). "
            "Each ordering is judged over seeds by a one-sided Welch t-test: it passes when it holds at p < 0.05, "
            "fails when the opposite holds at p < 0.05, and is inconclusive otherwise, or with fewer than 3 finished "
            "runs on a side (an ordering of single runs is not evidence). A claim passes when every ordering passes, "
            "fails when one fails, and is inconclusive otherwise. It is judged in every tier with runs on both sides "
            "of one of its orderings, one line per tier.")
    if fig7:
        text += ("\n\nFig. 7's claims are judged on one reading of \"std\", named before looking at any result: the "
                 "std of each 3x3 layer's output pooled over images, channels and positions, BN on its running "
                 "statistics, on the test set (the paper's \"std of layer responses ... the outputs of each 3x3 "
                 "layer, after BN and before other nonlinearity\"). The other readings (per-channel std, RMS, BN on "
                 "batch statistics, block outputs only) are **exploratory**: each shows its own uncorrected test, its "
                 "status is `exploratory`, and it is counted apart, never as a verdict.")
    return text


GAP_RULE = ("A cost the data puts on every network (CIFAR-10 re-encoded as JPEG q75, say) shows as one offset: the "
            "same gap to the paper at every depth, up to seed noise. Each depth's gap is our mean minus the paper's "
            "(its single run where it gives one); its noise is the seed-to-seed std σ, pooled over our rows with 2 "
            "or more seeds, over both sides' run counts: σ·√(1/n_ours + 1/n_paper). A depth is off when its gap lies "
            "more than 2 noise-std from the median gap (the median, so that one outlying depth does not drag the "
            "others with it). One offset is evidence for a shared cost, not proof of where it comes from.")
