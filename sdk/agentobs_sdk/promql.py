"""Which metric names a PromQL expression selects, for checking rules and dashboards.

A lexical scan, not a full parser (see `promql_metric_names`); `series.unknown_series()` uses it
to compare what the stack queries with what the SDK emits.
"""

from __future__ import annotations

import re

_FUNCTIONS = frozenset((
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg", "delta",
    "deriv", "end", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters",
    "double_exponential_smoothing", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time",
    "min_over_time", "minute", "month", "pi", "predict_linear", "present_over_time",
    "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin", "sinh", "sort",
    "sort_desc", "sort_by_label", "sort_by_label_desc", "sqrt", "start", "stddev_over_time",
    "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year", "info",
    "limitk", "limit_ratio",
))
_AGGREGATORS = frozenset((
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile",
))
_KEYWORDS = frozenset((
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "offset", "inf", "nan", "atan2",
))
# Keywords followed by a parenthesised list of label names, not expressions.
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NAME_MATCHER = re.compile(r"""__name__\s*=~?\s*(["'`])(.*?)\1""")
# Grafana template syntax: $var, ${var}, ${var:fmt}, [[var]].
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\]")


def _skip_group(expr: str, i: int, open_ch: str, close_ch: str) -> int:
    """Index just after the bracket group starting at expr[i] == open_ch, honouring strings."""
    depth = 0
    n = len(expr)
    while i < n:
        ch = expr[i]
        if ch in "\"'`":
            i = _skip_string(expr, i)
            continue
        if ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr):
        if expr[i] == "\\" and quote != "`":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    return len(expr)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (bare names and `{__name__="..."}` matchers).

    A lexical scan, not a full parser: it skips strings, label matchers, range/subquery brackets,
    grouping label lists, numbers and durations, and function/aggregator/keyword identifiers.
    Grafana template variables are removed first so dashboard queries can be checked too.
    Regex `__name__=~` matchers are returned verbatim (a caller may treat them as patterns).
    """
    expr = _GRAFANA_VAR.sub("1", expr)
    names: set[str] = set()
    i, n = 0, len(expr)
    expect_label_list = False
    while i < n:
        ch = expr[i]
        if ch == "#":  # comment to end of line
            nl = expr.find("\n", i)
            i = n if nl < 0 else nl + 1
            continue
        if ch in "\"'`":
            i = _skip_string(expr, i)
            continue
        if ch == "{":
            end = _skip_group(expr, i, "{", "}")
            for m in _NAME_MATCHER.finditer(expr[i:end]):
                names.add(m.group(2))
            i = end
            continue
        if ch == "[":
            i = _skip_group(expr, i, "[", "]")
            continue
        if ch == "(" and expect_label_list:
            i = _skip_group(expr, i, "(", ")")
            expect_label_list = False
            continue
        if ch.isdigit() or (ch == "." and i + 1 < n and expr[i + 1].isdigit()):
            # Numbers, hex and durations (5m, 1h30m, 1e3) never name a series.
            j = i
            while j < n and (expr[j].isalnum() or expr[j] in "._"):
                j += 1
            i = j
            continue
        ident = _IDENT.match(expr, i)
        if ident is None:
            i += 1
            continue
        word = ident.group(0)
        i = ident.end()
        lower = word.lower()
        if lower in _LABEL_LIST_KEYWORDS:
            expect_label_list = True
            continue
        expect_label_list = False
        if lower in _KEYWORDS:
            continue
        rest = expr[i:].lstrip()
        if word in _FUNCTIONS and rest.startswith("("):
            continue
        if word in _AGGREGATORS and (rest.startswith("(") or re.match(r"(by|without)\b", rest)):
            continue
        names.add(word)
    return names


