"""The operation table (_opcodes.py), the C mirrors generated from it
(_opcodes.pxd, _dispatch.pxd, by _generate.py at build time) and the kernels
(_kernels.pxd) agree: one row, one enum constant, one set of rules; and every
row has what the rest of the package derives from it."""
import os
import re

import numpy as np
import pytest

from wengert import _opcodes as ops
from wengert._opcodes import Kind

PACKAGE_DIR = os.path.dirname(os.path.abspath(ops.__file__))


def _read(name):
    with open(os.path.join(PACKAGE_DIR, name), encoding="utf-8") as handle:
        return handle.read()


def _enum_constants(text, prefix):
    return {m.group(1): int(m.group(2))
            for m in re.finditer(rf"^\s+{prefix}(\w+)\s*=\s*(\d+)\s*$", text, re.M)}


def _generated(name):
    """A generated mirror as the current table makes it (the built one may
    be older than an edit of the table, so the tests regenerate it)."""
    from wengert import _generate
    table = _generate.load_table()
    return {"_opcodes.pxd": _generate.opcodes_pxd, "_dispatch.pxd": _generate.dispatch_pxd,
            "_active_methods.pxi": _generate.active_methods_pxi}[name](table)


PXD_OPS = _enum_constants(_generated("_opcodes.pxd"), "OP_")
PXD_KINDS = _enum_constants(_generated("_opcodes.pxd"), "KIND_")
KERNELS = _read("_kernels.pxd")
DISPATCH = _generated("_dispatch.pxd")
DEFINED = set(re.findall(r"^cdef inline \w+\*? (\w+)\(", KERNELS, re.M))


def test_pxd_enum_matches_table_row_for_row():
    assert len(PXD_OPS) == len(ops.OPERATIONS)
    for name, base in PXD_OPS.items():
        assert ops.BY_NAME[name.lower()].base == base, f"OP_{name} = {base} disagrees with the table"


def test_every_table_row_has_a_pxd_constant():
    for op in ops.OPERATIONS:
        assert PXD_OPS.get(op.name.upper()) == op.base, op.name


def test_layout_constants_agree():
    assert PXD_KINDS["SHIFT"] == ops.KIND_SHIFT == 6
    base_mask = int(re.search(r"BASE_MASK\s*=\s*(\d+)", _generated("_opcodes.pxd")).group(1))
    assert base_mask == ops.BASE_MASK == 63
    for kind in ops.Kind:
        assert PXD_KINDS[kind.name] == int(kind)


def test_table_names_and_codes_are_unique_and_fit_six_bits():
    names = [op.name for op in ops.OPERATIONS]
    codes = [op.code(kind) for op in ops.OPERATIONS for kind in op.kinds]
    assert len(set(names)) == len(names)
    assert len(set(codes)) == len(codes), "two rows share a full opcode"
    assert all(0 <= op.base <= ops.BASE_MASK for op in ops.OPERATIONS)
    assert ops.BY_NAME.keys() == set(names)


def test_codes_of_the_file_format_never_change():
    # Saved tapes store opcodes: the rows that existed in format version 1
    # keep their base codes forever.
    first = ["const", "select", "neg", "square", "sqrt", "cbrt", "reciprocal", "exp", "expm1",
             "log", "log1p", "log2", "log10", "sin", "cos", "tan", "arcsin", "arccos", "arctan",
             "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "abs", "sign", "sigmoid",
             "erf"]
    for base, name in enumerate(first):
        assert ops.BY_NAME[name].base == base, name
    for base, name in enumerate(["add", "sub", "mul", "div", "pow", "arctan2", "hypot", "minimum",
                                 "maximum", "logaddexp", "lt", "le", "gt", "ge", "eq", "ne"], 32):
        assert ops.BY_NAME[name].base == base, name


KERNEL_ROWS = [op for op in ops.OPERATIONS if op.arity in (1, 2)]   # const and select are
                                                                    # handled by the sweeps


@pytest.mark.parametrize("op", KERNEL_ROWS, ids=lambda op: op.name)
def test_every_row_has_its_kernels(op):
    assert f"{op.name}_value" in DEFINED
    has_partial = f"{op.name}_partial" in DEFINED or f"{op.name}_partials" in DEFINED
    needs_partial = op.differentiable and op.name not in ops.COMPARISONS
    assert has_partial == needs_partial, (
        f"{op.name}: partial kernel present={has_partial}, expected={needs_partial}")
    if needs_partial:
        expected = f"{op.name}_partials" if ops.is_binary(op) else f"{op.name}_partial"
        assert expected in DEFINED


@pytest.mark.parametrize("op", KERNEL_ROWS, ids=lambda op: op.name)
def test_every_row_is_dispatched(op):
    """The generated dispatchers route each opcode to its rules."""
    constant = f"OP_{op.name.upper()}"
    assert re.search(rf"base == {constant}: return {op.name}_value\(", DISPATCH)
    if op.differentiable and op.name not in ops.COMPARISONS:
        assert re.search(rf"base == {constant}: (return )?{op.name}_partials?\(", DISPATCH)


def test_comparisons_are_the_non_differentiable_binary_rows():
    binary_flat = {op.name for op in ops.OPERATIONS if ops.is_binary(op) and not op.differentiable}
    assert binary_flat == set(ops.COMPARISONS)
    assert set(ops.COMPARISON_SYMBOL) == set(ops.COMPARISONS)
    # The generated is_comparison() is a Python-compatible expression over
    # the OP_* constants: it must hold for exactly the comparison rows.
    body = DISPATCH.split("is_comparison(int base)")[1].split("return", 1)[1].split("\n")[0]
    constants = {f"OP_{name}": base for name, base in PXD_OPS.items()}
    holds = {op.name for op in ops.OPERATIONS if op.arity == 2
             and eval(body, {"__builtins__": {}}, {**constants, "base": op.base})}
    assert holds == set(ops.COMPARISONS)


def test_valid_codes_are_unary_bases_and_three_kinds_of_binary_bases():
    ok = ops.valid_codes()
    assert ok.shape == (256,) and ok.dtype == bool
    expected = set()
    for op in ops.OPERATIONS:
        if ops.is_binary(op):
            expected |= {(int(k) << ops.KIND_SHIFT) | op.base
                         for k in (ops.Kind.VV, ops.Kind.VC, ops.Kind.CV)}
        else:
            expected.add(op.base)
    assert set(np.flatnonzero(ok).tolist()) == expected
    n_binary = sum(ops.is_binary(op) for op in ops.OPERATIONS)
    assert ok.sum() == (len(ops.OPERATIONS) - n_binary) + 3 * n_binary
    # A binary base with the unary kind, or a unary base with a binary kind, is invalid.
    assert not ok[ops.BY_NAME["add"].base]
    assert not ok[(int(ops.Kind.VV) << ops.KIND_SHIFT) | ops.BY_NAME["sin"].base]


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=lambda op: op.name)
def test_code_and_split_round_trip(op):
    kinds = (ops.Kind.VV, ops.Kind.VC, ops.Kind.CV) if ops.is_binary(op) else (ops.Kind.UNARY,)
    for kind in kinds:
        code = op.code(kind)
        assert 0 <= code < 256
        assert ops.split(code) == (op, kind)
        assert ops.code_of(op.name, kind) == code



# Operations whose second derivative is identically zero (affine or
# piecewise affine): a second-order kernel is optional for them.
ZERO_SECOND = {op.name for op in ops.OPERATIONS if op.curvature in (ops.LINEAR, ops.PIECEWISE)}


@pytest.mark.parametrize("op", [op for op in KERNEL_ROWS if op.curvature != ops.PIECEWISE
                                and op.differentiable], ids=lambda op: op.name)
def test_every_smooth_row_has_a_second_order_kernel(op):
    name = f"{op.name}_seconds" if ops.is_binary(op) else f"{op.name}_second"
    assert name in DEFINED, f"{op.name} has no second-order kernel {name}"
    assert re.search(rf"base == OP_{op.name.upper()}: (return )?{name}\(", DISPATCH), (
        f"{name} is not dispatched")


def test_second_order_kernels_belong_to_table_rows():
    for name in DEFINED:
        match = re.fullmatch(r"(\w+?)_(value|partials?|seconds?)", name)
        if match and match.group(1) not in ("unary", "binary"):
            assert match.group(1) in ops.BY_NAME, f"kernel {name} has no table row"


# What the Hessian-pattern propagation (wengert._sparsity) must do for each
# operand kind, given the table's curvature column.
EXPECTED_INTERACTION = {
    (ops.LINEAR, Kind.UNARY): "none", (ops.PIECEWISE, Kind.UNARY): "none",
    (ops.CURVED, Kind.UNARY): "self",
    **{(c, k): "none" for c in (ops.LINEAR, ops.PIECEWISE) for k in (Kind.VV, Kind.VC, Kind.CV)},
    (ops.BILINEAR, Kind.VV): "cross", (ops.BILINEAR, Kind.VC): "none", (ops.BILINEAR, Kind.CV): "none",
    (ops.QUOTIENT, Kind.VV): "div", (ops.QUOTIENT, Kind.VC): "none", (ops.QUOTIENT, Kind.CV): "self",
    (ops.CURVED, Kind.VV): "all", (ops.CURVED, Kind.VC): "self", (ops.CURVED, Kind.CV): "self",
}


@pytest.mark.parametrize("op", [op for op in ops.OPERATIONS if op.arity != ops.ARRAY],
                         ids=lambda op: op.name)
def test_hessian_sparsity_follows_the_curvature_column(op):
    from wengert._sparsity import interaction
    kinds = (Kind.VV, Kind.VC, Kind.CV) if ops.is_binary(op) else (Kind.UNARY,)
    for kind in kinds:
        assert interaction(op.code(kind)) == EXPECTED_INTERACTION[op.curvature, kind], (
            op.name, kind.name)


@pytest.mark.parametrize("op", [op for op in KERNEL_ROWS if op.name not in ops.COMPARISONS],
                         ids=lambda op: op.name)
def test_curvature_column_matches_the_second_derivative_kernels(op):
    """Rows marked linear or piecewise have zero second derivatives at a
    generic point; curved ones do not."""
    import wengert as wg
    from wengert import tracing
    x = np.array([1.7, 1.3]) if op.name == "arccosh" else np.array([0.7, 0.3])
    if ops.is_binary(op):
        tape = wg.record(lambda z: tracing.apply_binary(op.name, z[0], z[1]), x)
    else:
        tape = wg.record(lambda z: tracing.apply_unary(op.name, z[0]), x)
    H = tape.hessian(x)
    assert np.isfinite(H).all(), op.name
    if op.curvature in (ops.LINEAR, ops.PIECEWISE):
        assert not H.any(), op.name
    else:
        assert H.any(), op.name


# ---- completeness: every row has what the package derives from it --------------------

def _spec_rows():
    from test_operations import BINARY, COMPARISONS, UNARY
    return ({spec.records for spec in UNARY} | {spec.records for spec in BINARY}
            | {name for name, _, _ in COMPARISONS})


@pytest.mark.parametrize("op", KERNEL_ROWS, ids=lambda op: op.name)
def test_every_row_is_complete(op):
    """A spec row in the operation tests, a binding (or an explicit reason
    for none), a printed rule per operand, a sparsity class per kind."""
    import wengert as wg
    from wengert import _numpy_api
    assert op.name in _spec_rows(), f"{op.name} has no spec row in tests/test_operations.py"
    unbound = {"pow": "numpy.power binds through tracing.power (cheaper rows for constant "
                      "exponents)"}
    assert op.bindings or op.name in unbound, f"{op.name} binds to no NumPy/SciPy function"
    assert len(op.partials) == op.arity, f"{op.name} needs one printed rule per operand"
    for kind in op.kinds:
        assert ops.interaction(op, kind) in ops.INTERACTION
    for name in ops.binding_names(op, "numpy"):
        table = _numpy_api._UFUNC_UNARY if op.arity == 1 else {
            **_numpy_api._UFUNC_BINARY, **_numpy_api._UFUNC_COMPARE}
        assert table[getattr(np, name)] == op.name
    for name in ops.binding_names(op, "scipy.special"):
        assert _numpy_api._UFUNC_BY_NAME[name] == op.name
    if op.doc is not None:
        assert getattr(wg, op.name).__doc__.startswith(op.doc)
        assert op.name in wg.__all__


def test_object_arrays_of_traced_scalars_take_every_unary_numpy_binding():
    import wengert as wg
    for op in KERNEL_ROWS:
        for name in ops.binding_names(op, "numpy"):
            if op.arity != 1 or name in ("negative", "absolute", "fabs"):
                continue   # NumPy's object loops use -x and abs(x) for these
            x = np.array([1.5, 1.25]) if name == "arccosh" else np.array([0.5, 0.25])
            tape = wg.record(lambda z: getattr(np, name)(np.array([z[0], z[1]], dtype=object))
                             .tolist(), x)
            assert tape.forward(x) == pytest.approx(getattr(np, name)(x), rel=1e-15), name


def test_the_generated_mirrors_are_what_the_build_compiled():
    from wengert import _generate
    for name in ("_opcodes.pxd", "_dispatch.pxd", "_active_methods.pxi"):
        path = os.path.join(PACKAGE_DIR, name)
        if not os.path.exists(path):
            pytest.skip("an installed package ships no generated sources")
        assert _read(name) == _generated(name), f"{name} is stale: rebuild (python setup.py build_ext)"
    assert _generate.HEADER.startswith("# Generated")


def test_sparsity_classes_follow_the_table():
    from wengert._sparsity import interaction
    for code, (op, kind) in ops.BY_CODE.items():
        assert interaction(code) == ops.interaction(op, kind)


def test_the_compiled_operand_decoder_is_the_tables():
    from wengert._engine import Engine
    for code in range(256):
        assert Engine.operand_roles(code) == tuple(ops.ROLES[code]), code


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=lambda op: op.name)
def test_operand_roles_follow_the_layout_of_each_row(op):
    for kind in op.kinds:
        roles = tuple(ops.ROLES[op.code(kind)])
        if op.arity == 2:
            # Binary rows: the kind names the constant operand, if any.
            expected = {ops.Kind.VV: (ops.Role.SLOT, ops.Role.SLOT),
                        ops.Kind.VC: (ops.Role.SLOT, ops.Role.CONST),
                        ops.Kind.CV: (ops.Role.CONST, ops.Role.SLOT)}[kind]
        elif op.arity == ops.ARRAY:
            expected = (ops.Role.ARRAY, ops.Role.COUNT)
        else:
            expected = {"const": (ops.Role.CONST, ops.Role.NONE),
                        "select": (ops.Role.SLOT, ops.Role.AUX)}.get(
                            op.name, (ops.Role.SLOT, ops.Role.NONE))
        assert roles == expected
    assert not ops.ROLES.flags.writeable
    invalid = ~ops.valid_codes()
    assert (ops.ROLES[invalid] == ops.Role.NONE).all()
