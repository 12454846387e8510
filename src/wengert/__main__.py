"""The command line: ``python -m wengert demo | show FILE | bench``.

``demo`` walks through the survey example of Baydin et al. (JMLR 2018);
``show`` describes a saved tape; ``bench`` times tape replays against NumPy
and finite differences. ``python -m wengert COMMAND --help`` for the options.
Exit status: 0 success, 1 a wengert error (a one-line message), 2 a usage error.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

_SURVEY = "Baydin, Pearlmutter, Radul, Siskind, \"Automatic differentiation in " \
          "machine learning: a survey\", JMLR 18 (2018)"


class CommandError(Exception):
    """A failure to report as one line on stderr, with exit status 1."""


# ---- shared helpers -------------------------------------------------------------------

def _points(text):
    """argparse type: ``"2,5"`` -> array([2., 5.])."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 2,5; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return np.array(values)


def _sizes(text):
    try:
        sizes = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated sizes such as 10,100,1000; got {text!r}") from None
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError("sizes must be integers >= 2")
    return sizes


def _positive(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {n}")
    return n


def _count(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer; got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer; got {n}")
    return n


def _unicode_ok(stream):
    """Whether ``stream`` can print the accents and box characters of the traces."""
    try:
        "v\u0307v\u0304\u2502\u00b5\u2248\u2588".encode(getattr(stream, "encoding", None) or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def _heading(text, out):
    print(f"\n{text}\n{'-' * len(text)}", file=out)


def _indent(text, prefix="    "):
    return "\n".join(prefix + line if line else line for line in text.splitlines())


# ---- demo -----------------------------------------------------------------------------

def survey_f(x):
    """The survey's running example: f(x1, x2) = ln(x1) + x1 x2 - sin(x2)."""
    return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])


def survey_gradient(x):
    """Its closed-form gradient (1/x1 + x2, x1 - cos x2)."""
    return np.array([1.0 / x[0] + x[1], x[0] - np.cos(x[1])])


def demo(options, out=None):
    out = sys.stdout if out is None else out
    import wengert as wg
    from scipy.optimize import approx_fprime
    from wengert._traces import trace_text
    from wengert.display import _vector

    ascii = not _unicode_ok(out)
    x = options.at
    if x.shape != (2,):
        raise CommandError(f"--at needs two numbers x1,x2; got {x.size}")
    if x[0] <= 0:
        raise CommandError(f"--at: x1 must be positive (f takes ln(x1)); got {x[0]:g}")
    at = f"({x[0]:g}, {x[1]:g})"
    print("wengert demo: the running example of Baydin, Pearlmutter, Radul and Siskind,",
          file=out)
    print('"Automatic differentiation in machine learning: a survey" (JMLR 2018), '
          "tables 2 and 3", file=out)
    print(f"\n    f(x1, x2) = ln(x1) + x1*x2 - sin(x2)    at (x1, x2) = {at}", file=out)

    _heading("1. Record f once on traced values", out)
    print("    tape = wg.record(f, x)", file=out)
    tape = wg.record(survey_f, x)
    print(f"    {tape!r}", file=out)

    _heading("2. The Wengert list with values: print(tape.listing(x))", out)
    print("Inputs are v[-1], v[0]; every operation writes one new slot v[1], v[2], ...",
          file=out)
    print("in the order Python evaluates f (the survey's table lists sin(x2) before the",
          file=out)
    print("sum, as v3; here it comes after it, as v[4]).\n", file=out)
    print(_indent(tape.listing(x)), file=out)

    _heading("3. Forward mode: the tangent trace along e1 = (1, 0) gives df/dx1 (table 2)", out)
    print("Each slot carries its derivative along the seed; one sweep per input direction.",
          file=out)
    print("    print(tape.trace(x, [1.0, 0.0]))\n", file=out)
    print(_indent(trace_text(tape, x, np.array([1.0, 0.0]), (), "forward", ascii=ascii)),
          file=out)

    _heading("4. Reverse mode: the adjoint trace gives the whole gradient in one sweep "
             "(table 3)", out)
    print("Each slot's adjoint is the sum over its consumers of their adjoint times the",
          file=out)
    print("local partial; the sweep runs from the output back to the inputs.", file=out)
    print("    print(tape.trace(x, 1.0, mode=\"reverse\"))\n", file=out)
    print(_indent(trace_text(tape, x, 1.0, (), "reverse", ascii=ascii)), file=out)

    _heading("5. The gradient three ways", out)
    grad = tape.gradient(x)
    exact = survey_gradient(x)
    eps = float(np.sqrt(np.finfo(float).eps))
    fd = approx_fprime(x, survey_f, eps)
    rows = [("wengert, reverse mode", "tape.gradient(x)", grad),
            ("closed form", "(1/x1 + x2, x1 - cos x2)", exact),
            ("finite differences", f"approx_fprime, step {eps:.2g}", fd)]
    print(f"    {'':<22} {'df/dx1':>20} {'df/dx2':>20}   {'max error':>9}   how", file=out)
    for label, how, g in rows:
        err = np.max(np.abs(g - exact))
        err_text = "-" if g is exact else f"{err:.1e}"
        print(f"    {label:<22} {g[0]:>20.15g} {g[1]:>20.15g}   {err_text:>9}   {how}",
              file=out)
    print(f"\n    f(x) = {tape.forward(x):.15g}", file=out)
    print("\nThe tape's derivatives are exact to rounding; finite differences lose about",
          file=out)
    print("half the digits to the step size. Replay the same tape at any new point:",
          file=out)
    print(f"    tape.gradient([1.0, 1.0])  ->  {_vector(tape.gradient([1.0, 1.0]))}", file=out)
    return 0


# ---- show -------------------------------------------------------------------------------

def show(options, out=None):
    out = sys.stdout if out is None else out
    import wengert as wg
    from wengert import display

    try:
        tape = wg.load(options.file)
    except FileNotFoundError:
        raise CommandError(f"{options.file}: no such file") from None
    except IsADirectoryError:
        raise CommandError(f"{options.file}: is a directory, not a tape file") from None
    except PermissionError:
        raise CommandError(f"{options.file}: permission denied") from None
    except NotImplementedError as exc:
        raise CommandError(f"cannot read tape files in this version: {exc}") from None
    except (wg.WengertError, OSError) as exc:
        message = _one_line(exc)
        if options.file not in message:
            message = f"{options.file}: {message}"
        raise CommandError(message) from None
    max_nodes = None if options.max_nodes == 0 else options.max_nodes
    if options.dot:
        out.write(display.to_dot(tape, max_nodes=max_nodes))
        return 0
    if options.render is not None:
        path = display.render(tape, options.render, max_nodes=max_nodes)
        print(f"wrote {path}", file=out)
        return 0
    x = None
    if options.at is not None:
        if options.at.size != tape.n_inputs:
            raise CommandError(
                f"--at has {options.at.size} numbers, but the tape has {tape.n_inputs} "
                f"inputs (shape {tape.in_shape})")
        x = options.at.reshape(tape.in_shape)
    print(f"{options.file}: wengert tape, inputs {tape.in_shape} -> output {tape.out_shape}",
          file=out)
    print(display.stats_text(tape), file=out)
    where = "" if x is None else f" at x = {display._vector(options.at)}"
    print(f"\nWengert list{where}:", file=out)
    max_rows = None if options.max_rows == 0 else options.max_rows
    text = display.listing(tape, x, max_rows=max_rows)
    cut = f"(max_rows={max_rows})"
    if max_rows is not None and text.endswith(cut):
        text = text[:-1] + "; --max-rows 0 shows all)"
    print(text, file=out)
    return 0


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


# ---- bench ------------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on a terminal (``\\r`` redraws; nothing when off).

    Examples
    --------
    >>> import io
    >>> bar = Progress(3, stream=io.StringIO(), enabled=True)
    >>> bar.step("n=10")
    >>> bar.close()
    """

    def __init__(self, total, stream=None, enabled=None, width=24):
        self.total = max(1, total)
        self.done = 0
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.width = width
        self.fill = "#" if not _unicode_ok(self.stream) else "\u2588"
        self._last = 0

    def show(self, label=""):
        if not self.enabled:
            return
        filled = int(self.width * self.done / self.total)
        text = (f"\rbench [{self.fill * filled}{'.' * (self.width - filled)}] "
                f"{self.done}/{self.total} {label}")
        self.stream.write(text + " " * max(0, self._last - len(text)))
        self._last = len(text)
        self.stream.flush()

    def step(self, label=""):
        self.done += 1
        self.show(label)

    def close(self):
        if self.enabled:
            self.stream.write("\r" + " " * self._last + "\r")
            self.stream.flush()


def rosenbrock(x):
    """Extended Rosenbrock: sum of 100 (x[i+1] - x[i]**2)**2 + (1 - x[i])**2."""
    a, b = x[:-1], x[1:]
    return np.sum(100.0 * (b - a**2)**2 + (1.0 - a)**2)


def rosenbrock_gradient(x):
    a, b = x[:-1], x[1:]
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * (b - a**2) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a**2)
    return g


# Sizes above this skip approx_fprime: its n + 1 evaluations of f cost O(n^2).
_FD_MAX = 20_000


def _time(fn, repeat, budget=0.02):
    """Seconds per call of ``fn``: the best of ``repeat`` timings, each of
    enough calls to last ``budget`` seconds (at least one)."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    number = max(1, int(budget / max(once, 1e-9)))
    best = once
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _duration(seconds, micro):
    for unit, scale in (("ns", 1e-9), (micro + "s", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if seconds < 1000 * scale or unit == "s":
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def _rel_error(computed, expected):
    scale = np.max(np.abs(expected))
    return float(np.max(np.abs(np.asarray(computed) - expected)) / (scale or 1.0))


def _bench_row(r, micro, times):
    def t(key):
        return _duration(r[key], micro)
    cells = [f"{r['n']:>7}", f"{r['ops']:>7}", f"{t('record'):>9}", f"{t('numpy'):>9}",
             f"{t('forward'):>9}", f"{r['forward'] / r['numpy']:>7.2f}{times}",
             f"{t('gradient'):>10}", f"{r['gradient'] / r['forward']:>6.1f}{times}"]
    if "fd" in r:
        cells += [f"{t('fd'):>14}", f"{r['fd'] / r['gradient']:>8.0f}{times}",
                  f"{r['err_grad']:>9.1e}", f"{r['err_fd']:>9.1e}"]
    else:
        cells += [f"{'skipped':>14}", f"{'-':>9}", f"{r['err_grad']:>9.1e}", f"{'-':>9}"]
    return " ".join(cells)


def bench(options, out=None):
    out = sys.stdout if out is None else out
    import wengert as wg
    from scipy.optimize import approx_fprime

    micro = "\u00b5" if _unicode_ok(out) else "u"
    times = "\u00d7" if _unicode_ok(out) else "x"
    repeat = options.repeat
    phases = ("record", "NumPy f", "tape f", "tape grad", "approx_fprime")
    bar = Progress(len(options.sizes) * len(phases),
                   enabled=False if options.no_progress else None)
    eps = float(np.sqrt(np.finfo(float).eps))
    results = []
    try:
        for n in options.sizes:
            x = 1.0 + 0.5 * np.sin(np.arange(n, dtype=float))   # away from the minimum
            exact_f = float(rosenbrock(x.astype(np.longdouble)))
            exact_g = rosenbrock_gradient(x.astype(np.longdouble)).astype(float)
            r = dict(n=n)
            bar.show(f"n={n} record")
            tape = wg.record(rosenbrock, x)
            r["ops"] = tape.n_ops
            r["record"] = _time(lambda: wg.record(rosenbrock, x), min(repeat, 3), 0.0)
            bar.step(f"n={n} NumPy f")
            r["numpy"] = _time(lambda: rosenbrock(x), repeat)
            bar.step(f"n={n} tape f")
            r["forward"] = _time(lambda: tape.forward(x), repeat)
            bar.step(f"n={n} tape grad")
            r["gradient"] = _time(lambda: tape.gradient(x), repeat)
            bar.step(f"n={n} approx_fprime")
            if n <= _FD_MAX:
                # n + 1 evaluations of f: one call per timing is plenty.
                r["fd"] = _time(lambda: approx_fprime(x, rosenbrock, eps), repeat, 0.0)
                r["err_fd"] = _rel_error(approx_fprime(x, rosenbrock, eps), exact_g)
            bar.step()
            r["err_f"] = abs(tape.forward(x) - exact_f) / abs(exact_f)
            r["err_grad"] = _rel_error(tape.gradient(x), exact_g)
            results.append(r)
    finally:
        bar.close()

    print("Extended Rosenbrock f(x) = sum 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2 at "
          "x[i] = 1 + sin(i)/2", file=out)
    print(f"time per call, best of {repeat}; errors relative to the exact gradient "
          "(max norm)\n", file=out)
    head = (f"{'n':>7} {'ops':>7} {'record':>9} {'NumPy f':>9} {'tape f':>9} {'f/NumPy':>8} "
            f"{'tape grad':>10} {'grad/f':>7} {'approx_fprime':>14} {'FD/grad':>9} "
            f"{'err grad':>9} {'err FD':>9}")
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in results:
        print(_bench_row(r, micro, times), file=out)
    print("\nf/NumPy: a forward replay of the tape against one evaluation of the NumPy "
          "code.", file=out)
    print("grad/f: a gradient costs this many forward replays (reverse mode: a small "
          "constant, whatever n).", file=out)
    print("FD/grad: how many times slower scipy.optimize.approx_fprime (n + 1 "
          "evaluations of NumPy f) is", file=out)
    print(f"(skipped above n = {_FD_MAX}, where it takes seconds per call).", file=out)
    return 0


# ---- the parser -------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m wengert",
        description="wengert: record NumPy code once on a flat tape, replay values and "
                    "derivatives in compiled loops.",
        epilog="Run `python -m wengert COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "demo", help="the survey example: Wengert list, tangent and adjoint traces, gradient",
        description="Record f(x1, x2) = ln(x1) + x1*x2 - sin(x2), the running example of "
                    f"{_SURVEY}, and show its Wengert list with values, the forward "
                    "tangent trace along e1 (table 2), the reverse adjoint trace (table 3), "
                    "and the gradient beside the closed form and finite differences.")
    p.add_argument("--at", type=_points, default=np.array([2.0, 5.0]), metavar="X1,X2",
                   help="the point (default: 2,5 as in the survey; x1 > 0)")
    p.set_defaults(run=demo)

    p = sub.add_parser(
        "show", help="describe a saved tape: sizes, operations, memory, the Wengert list",
        description="Load a tape written by tape.save(FILE) and print its statistics and "
                    "its Wengert list (optionally with values at a point), or its graph.")
    p.add_argument("file", metavar="FILE", help="a tape file written by tape.save")
    p.add_argument("--at", type=_points, metavar="X1,X2,...",
                   help="show values at this point (the flattened input, comma-separated; "
                        "the recorded parameter values are used; write --at=-1,2 when the "
                        "first number is negative). Default: no values")
    p.add_argument("--max-rows", "--max-lines", dest="max_rows", type=_count, default=100,
                   metavar="N", help="show at most N rows of the list (default 100; 0: all)")
    p.add_argument("--max-nodes", type=_count, default=200, metavar="N",
                   help="with --dot or --render: draw at most N nodes of the graph "
                        "(default 200; 0: all)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--dot", action="store_true",
                       help="print the computational graph as Graphviz text instead")
    group.add_argument("--render", metavar="PATH",
                       help="draw the graph to PATH (.svg, .png, .pdf) with Graphviz's dot")
    p.set_defaults(run=show)

    p = sub.add_parser(
        "bench", help="time tape replays against NumPy and finite differences",
        description="Time recording, a forward replay and a gradient replay of extended "
                    "Rosenbrock beside one plain NumPy evaluation of f and "
                    "scipy.optimize.approx_fprime, with relative errors. A progress bar "
                    "is drawn on stderr when it is a terminal; the table goes to stdout.")
    p.add_argument("--sizes", type=_sizes, default=[10, 100, 1000, 10000], metavar="N,N,...",
                   help="problem sizes (default: 10,100,1000,10000)")
    p.add_argument("--repeat", type=_positive, default=5, metavar="R",
                   help="timings per measurement, the best is shown (default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=bench)
    return parser


def _version():
    try:
        from wengert import __version__
        return f"wengert {__version__}"
    except ImportError:      # pragma: no cover - the package failed to import
        return "wengert"


def main(argv=None):
    """Run the command line; returns the exit status.

    Examples
    --------
    >>> main(["--help"])                # doctest: +SKIP
    """
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.command is None:
        parser.print_help(sys.stderr)
        return 2
    from wengert import WengertError
    try:
        return options.run(options)
    except CommandError as exc:
        print(f"wengert {options.command}: error: {exc}", file=sys.stderr)
        return 1
    except WengertError as exc:
        print(f"wengert {options.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"wengert {options.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:           # e.g. `python -m wengert show big.wgt | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
