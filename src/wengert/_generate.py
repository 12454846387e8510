"""Generate the C mirrors of the operation table (run by setup.py).

As NumPy generates its ufunc loops from ``generate_umath.py``, the build
writes from ``_opcodes.py`` every file that must agree with the table, so
none of them is kept in step by hand:

* ``_opcodes.pxd``: the opcode enum and, per full opcode, what each operand
  index refers to (``_opcodes.ROLES``) and the sparsity classes (which
  operands carry a derivative, which second derivatives an entry couples)
  as C arrays;
* ``_dispatch.pxd``: the switches that route a base code to its kernels
  (``name_value``, ``name_partial(s)``, ``name_second(s)`` in
  ``_kernels.pxd``), ``is_comparison`` and ``is_array_entry``;
* ``_active_methods.pxi``: the methods NumPy calls on the elements of an
  object array (``np.log1p(array_of_traced_scalars)`` calls ``.log1p()``);
* ``_map_loops.pxi``: one loop per operation for map entries (the
  kernel fixed inside the loop instead of dispatched per element);
* ``_vector_table.pxi``: the libm functions of the rows that name them
  (``vector``), which map entries evaluate four at a time.

The outputs are build products (see .gitignore). Run it by hand with
``python src/wengert/_generate.py``.
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = "# Generated from _opcodes.py by _generate.py at build time: do not edit.\n"


def load_table():
    """``_opcodes.py`` as a module, without importing the package (whose
    compiled parts are what is being built)."""
    spec = importlib.util.spec_from_file_location("_wengert_opcode_table",
                                                  os.path.join(HERE, "_opcodes.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _c_array(name, values):
    rows = [", ".join(str(v) for v in values[i:i + 16]) for i in range(0, len(values), 16)]
    body = ",\n        ".join(rows)
    return f"    static const unsigned char {name}[{len(values)}] = {{\n        {body}\n    }};"


def opcodes_pxd(ops):
    lines = [HEADER,
             "# The operation table's codes as C constants (comparisons on them compile",
             "# to C switches) and its sparsity classes per full opcode.\n",
             "cdef enum:",
             f"    KIND_SHIFT = {ops.KIND_SHIFT}",
             f"    BASE_MASK = {ops.BASE_MASK}"]
    lines += [f"    KIND_{kind.name} = {int(kind)}" for kind in ops.Kind]
    lines += ["", "cdef enum:"]
    lines += [f"    OP_{op.name.upper()} = {op.base}" for op in ops.OPERATIONS]
    lines += ["", "cdef enum:"]
    for value, name in enumerate(("NONE", "FIRST", "SECOND", "BOTH", "BRANCHES")):
        lines.append(f"    OPERANDS_{name} = {value}")
    for value, name in enumerate(ops.INTERACTION):
        lines.append(f"    NL_{name.upper()} = {value}")
    lines += [f"    ROLE_{role.name} = {int(role)}" for role in ops.Role]
    operands, interaction = [0] * 256, [0] * 256
    for code, (op, kind) in ops.BY_CODE.items():
        operands[code] = ops.operands_class(op, kind)
        interaction[code] = ops.INTERACTION.index(ops.interaction(op, kind))
    roles = [int(r) for r in ops.ROLES.reshape(-1)]
    lines += ["",
              "# Per full opcode (0 for invalid codes, which validation refuses):",
              "# WG_OPERANDS, the OPERANDS_* class; WG_INTERACTION, the NL_* class;",
              "# WG_ROLES[2 * code + k], the ROLE_* of operand k (read it through",
              "# _operands.pxd).",
              'cdef extern from *:',
              '    """',
              _c_array("WG_OPERANDS", operands),
              _c_array("WG_INTERACTION", interaction),
              _c_array("WG_ROLES", roles),
              '    """',
              "    const unsigned char WG_OPERANDS[256]",
              "    const unsigned char WG_INTERACTION[256]",
              "    const unsigned char WG_ROLES[512]", ""]
    return "\n".join(lines)


def _kernel_rows(ops, arity):
    return [op for op in ops.OPERATIONS if op.arity == arity]


def _has_second(ops, op):
    return op.differentiable and op.curvature != ops.PIECEWISE


def dispatch_pxd(ops):
    unary, binary = _kernel_rows(ops, 1), _kernel_rows(ops, 2)
    out = [HEADER,
           "# Routing from a base code to the kernels of its table row.",
           "from libc.math cimport NAN",
           "from wengert._types cimport real_t",
           "from wengert._opcodes cimport *",
           "from wengert._kernels cimport *", "", ""]

    def chain(rows, call, fallback, returns=True):
        body = []
        for i, op in enumerate(rows):
            word = "if" if i == 0 else "elif"
            prefix = "return " if returns else ""
            body.append(f"    {word} base == OP_{op.name.upper()}: {prefix}{call(op)}")
        return body + fallback

    bases = sorted(ops.BY_NAME[n].base for n in ops.COMPARISONS)
    if bases and bases == list(range(bases[0], bases[-1] + 1)):
        # One range test where the codes allow it: the sweeps' inner loops
        # test this per entry, and the chain of equalities measured slower.
        first, last = (ops.BY_CODE[(int(ops.Kind.VV) << ops.KIND_SHIFT) | b][0].name.upper()
                       for b in (bases[0], bases[-1]))
        comparisons = f"OP_{first} <= base <= OP_{last}"
    else:
        comparisons = " or ".join(f"base == OP_{n.upper()}" for n in ops.COMPARISONS) or "False"
    out += ["cdef inline bint is_comparison(int base) noexcept nogil:",
            f"    return {comparisons}", "", ""]
    arrays = sorted(op.base for op in ops.OPERATIONS if op.arity == ops.ARRAY)
    assert arrays == list(range(arrays[0], arrays[-1] + 1)), "array entries need adjacent bases"
    first, last = (ops.BY_CODE[b][0].name.upper() for b in (arrays[0], arrays[-1]))
    out += ["cdef inline bint is_array_entry(int code) noexcept nogil:",
            "    # Array entries have kind 0, so their full opcode is their base.",
            f"    return OP_{first} <= code <= OP_{last}", "", ""]
    out += ["cdef inline real_t unary_value(int base, real_t a) noexcept nogil:"]
    out += chain(unary, lambda op: f"{op.name}_value(a)", ["    return NAN"]) + ["", ""]
    out += ["cdef inline real_t unary_partial(int base, real_t a, real_t r) noexcept nogil:"]
    out += chain([op for op in unary if op.differentiable], lambda op: f"{op.name}_partial(a, r)",
                 ["    return 0.0  # not differentiable: piecewise constant"]) + ["", ""]
    out += ["cdef inline real_t unary_second(int base, real_t a, real_t r) noexcept nogil:"]
    out += chain([op for op in unary if _has_second(ops, op)],
                 lambda op: f"{op.name}_second(a, r)",
                 ["    return 0.0  # piecewise linear or constant"]) + ["", ""]
    out += ["cdef inline real_t binary_value(int base, real_t a, real_t b) noexcept nogil:"]
    out += chain(binary, lambda op: f"{op.name}_value(a, b)", ["    return NAN"]) + ["", ""]
    out += ["cdef inline void binary_partials(int base, real_t a, real_t b, real_t r,",
            "                                 real_t* da, real_t* db) noexcept nogil:"]
    out += chain([op for op in binary if op.differentiable],
                 lambda op: f"{op.name}_partials(a, b, r, da, db)",
                 ["    else:", "        da[0] = 0.0", "        db[0] = 0.0"], returns=False)
    out += ["", ""]
    out += ["cdef inline void binary_seconds(int base, real_t a, real_t b, real_t r,",
            "                                real_t* aa, real_t* ab, real_t* bb) noexcept nogil:"]
    out += chain([op for op in binary if _has_second(ops, op)],
                 lambda op: f"{op.name}_seconds(a, b, r, aa, ab, bb)",
                 ["    else:  # piecewise linear or constant", "        aa[0] = 0.0",
                  "        ab[0] = 0.0", "        bb[0] = 0.0"], returns=False)
    return "\n".join(out) + "\n"


def active_methods_pxi(ops):
    """Methods of the traced scalar named after the NumPy ufuncs of unary
    rows: NumPy's object loops call ``element.<ufunc name>()``."""
    lines = [HEADER, "# Included by _recorder.pyx: the base class of the traced scalar.", "",
             "cdef class _UfuncMethods:",
             '    """What NumPy calls on the elements of an object array."""']
    for op in _kernel_rows(ops, 1):
        for name in ops.binding_names(op, "numpy"):
            lines.append(f"    def {name}(self): return _unary(OP_{op.name.upper()}, self)")
    return "\n".join(lines) + "\n"


def map_loops_pxi(ops):
    """The loops of map entries at one point along one direction, one per
    operation: the kernel is fixed inside each loop, so the per-element
    dispatch of the generic loop disappears."""
    unary = [op for op in _kernel_rows(ops, 1)]
    binary = [op for op in _kernel_rows(ops, 2)]
    lines = [HEADER, "# Included by _sweeps.pyx (after _arrays.pxi's map).", "",
             "cdef inline bint _map_one(sweep_t* sweep, Work* w, int code, Py_ssize_t s,",
             "                          Py_ssize_t a, Py_ssize_t a_inner, Py_ssize_t b,",
             "                          Py_ssize_t b_inner, Py_ssize_t n) noexcept nogil:",
             '    """n elements of the map of full opcode ``code`` from result slot s;',
             '    False if ``code`` has no loop here (the caller loops generically)."""',
             "    cdef Py_ssize_t j"]
    word = "if"
    for op in unary:
        lines += [f"    {word} code == OP_{op.name.upper()}:",
                  "        for j in range(n):",
                  f"            _unary(sweep, <_one*>NULL, w, OP_{op.name.upper()}, s + j, a + j * a_inner)",
                  "            _cleared(sweep, w, s + j)"]
        word = "elif"
    for op in binary:
        for kind in op.kinds:
            full = f"(KIND_{kind.name} << KIND_SHIFT) | OP_{op.name.upper()}"
            lines += [f"    elif code == {full}:",
                      "        for j in range(n):",
                      f"            _binary(sweep, <_one*>NULL, w, {full}, s + j,",
                      "                    a + j * a_inner, b + j * b_inner)",
                      "            _cleared(sweep, w, s + j)"]
    lines += ["    else:", "        return False", "    return True", ""]
    return "\n".join(lines)


def vector_table_pxi(ops):
    """The functions map entries evaluate with glibc's vector variants:
    a C table of their names and scalar versions, and per base code the
    table index of its value and partial function (-1: none)."""
    names = []
    for op in _kernel_rows(ops, 1):
        for name in op.vector:
            if name.lstrip("-") not in names:
                names.append(name.lstrip("-"))
    lines = [HEADER, "# Included by _sweeps.pyx (before _arrays.pxi).", "",
             "cdef extern from *:",
             '    """',
             '    #include "_vector_math.h"',
             f"    #define WG_N_VECTOR_FNS {len(names)}",
             "    static wg_vector_fn WG_VECTOR_FNS[WG_N_VECTOR_FNS];",
             "    static const char *const WG_VECTOR_NAMES[WG_N_VECTOR_FNS] = {",
             "        " + ", ".join(f'"{n}"' for n in names) + "};",
             "    static wg_scalar_fn const WG_VECTOR_SCALARS[WG_N_VECTOR_FNS] = {",
             "        " + ", ".join(names) + "};",
             '    """',
             "    ctypedef struct wg_vector_fn:",
             "        pass",
             "    ctypedef double (*wg_scalar_fn)(double) noexcept nogil",
             "    const int WG_N_VECTOR_FNS",
             "    wg_vector_fn* WG_VECTOR_FNS",
             "    const char* const* WG_VECTOR_NAMES",
             "    const wg_scalar_fn* WG_VECTOR_SCALARS",
             "    void wg_vector_apply(const wg_vector_fn* f, const double* x, double* r,",
             "                         Py_ssize_t n) noexcept nogil",
             "    int wg_vector_setup(wg_vector_fn* fns, const char* const* names,",
             "                        const wg_scalar_fn* scalars, int n, int enable)",
             "",
             "",
             "cdef inline int vector_value_fn(int base) noexcept nogil:",
             '    """The table index of the function giving base\'s value, or -1."""']
    word = "if"
    for op in _kernel_rows(ops, 1):
        if op.vector:
            lines.append(f"    {word} base == OP_{op.name.upper()}: return {names.index(op.vector[0])}")
            word = "elif"
    lines += ["    return -1", "", "",
              "cdef inline int vector_partial_fn(int base) noexcept nogil:",
              '    """The table index of the function giving base\'s partial, negated',
              '    when -2 - index is returned; -1: the partial is the scalar kernel\'s."""']
    word = "if"
    for op in _kernel_rows(ops, 1):
        if len(op.vector) > 1:
            index = names.index(op.vector[1].lstrip("-"))
            value = -2 - index if op.vector[1].startswith("-") else index
            lines.append(f"    {word} base == OP_{op.name.upper()}: return {value}")
            word = "elif"
    lines += ["    return -1", ""]
    return "\n".join(lines)


def write_if_changed(path, text):
    """Rewrite ``path`` only when its text changes, so that an unchanged
    table does not make every extension recompile."""
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except FileNotFoundError:
        pass
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return True


def generate(directory=HERE):
    ops = load_table()
    outputs = {"_opcodes.pxd": opcodes_pxd(ops), "_dispatch.pxd": dispatch_pxd(ops),
               "_active_methods.pxi": active_methods_pxi(ops),
               "_map_loops.pxi": map_loops_pxi(ops),
               "_vector_table.pxi": vector_table_pxi(ops)}
    for name, text in outputs.items():
        write_if_changed(os.path.join(directory, name), text)
    return sorted(outputs)


if __name__ == "__main__":
    print("generated", ", ".join(generate()))
