"""Print the figures each benchmark put in extra_info at the end of a run
(pytest-benchmark's own table shows only times)."""
from benchmarks._support import SUMMARY

_COLUMNS = (("n_ops", "tape ops", "{:d}"), ("ns_per_op", "ns/op", "{:.2f}"),
            ("ops_per_s", "ops/s", "{:.3g}"), ("us_per_call", "us/call", "{:.2f}"),
            ("nnz", "nnz", "{:d}"), ("n_colours", "colours", "{:d}"),
            ("over_gradient", "/gradient", "{:.2f}"), ("over_vjp", "/vjp", "{:.2f}"),
            ("rel_error", "rel. error", "{:.1e}"),
            ("wengert_rel_error", "wengert rel. error", "{:.1e}"))


def _time(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds * 1e9:.4g} ns"


def _cell(info, key, fmt):
    return fmt.format(info[key]) if key in info else ""


def pytest_terminal_summary(terminalreporter):
    if not SUMMARY:
        return
    write = terminalreporter.write_line
    terminalreporter.section("wengert figures (extra_info; times are medians)")
    rows = [("group", "benchmark", "median") + tuple(c[1] for c in _COLUMNS)]
    for group, name, seconds, info in sorted(SUMMARY, key=lambda r: (r[0], r[1])):
        median = "" if seconds is None else _time(seconds)
        rows.append((group, name, median) + tuple(_cell(info, k, f) for k, _, f in _COLUMNS))
    used = [i for i in range(len(rows[0])) if any(r[i] for r in rows[1:]) or i < 2]
    widths = {i: max(len(r[i]) for r in rows) for i in used}
    for r in rows:
        write("  ".join(r[i].ljust(widths[i]) if i < 2 else r[i].rjust(widths[i]) for i in used))
