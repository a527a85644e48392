"""How the analysis writes a number: one format for tables, claims, the report and the generated
summaries, so that a value reads the same wherever it appears (3 significant digits, "-" for none)."""
from __future__ import annotations

import math


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def estimate(row, with_n: bool = False) -> str:
    """A summary row's mean with its 95% interval (two or more seeds), else with the IS split std
    where there is one (labelled: it is not an interval over seeds); `with_n` appends the seed count."""
    mean = row["mean"] if hasattr(row, "keys") else row.mean  # a pandas row's .mean is a method
    if row.n >= 2:
        text = f"{fmt(mean)} [{fmt(row.ci_low)}, {fmt(row.ci_high)}]"
    elif row.n == 1 and not _missing(getattr(row, "split_std", None)):
        text = f"{fmt(mean)} +- {fmt(row.split_std, 2)} (split std)"
    else:
        text = fmt(mean)
    return f"{text} (n={row.n})" if with_n else text


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
