"""The operation table (_opcodes.py), its C mirror (_opcodes.pxd) and the
kernels (_kernels.pxd) agree: one row, one enum constant, one set of rules."""
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


PXD_OPS = _enum_constants(_read("_opcodes.pxd"), "OP_")
PXD_KINDS = _enum_constants(_read("_opcodes.pxd"), "KIND_")
KERNELS = _read("_kernels.pxd")
DEFINED = set(re.findall(r"^cdef inline \w+\*? (\w+)\(", KERNELS, re.M))


def test_pxd_enum_matches_table_row_for_row():
    assert len(PXD_OPS) == len(ops.OPERATIONS)
    for name, base in PXD_OPS.items():
        op = ops.BY_BASE.get(base)
        assert op is not None, f"OP_{name} = {base} has no row in OPERATIONS"
        assert op.name.upper() == name, f"OP_{name} = {base} but the table row is {op.name!r}"


def test_every_table_row_has_a_pxd_constant():
    for op in ops.OPERATIONS:
        assert PXD_OPS.get(op.name.upper()) == op.base, op.name


def test_layout_constants_agree():
    assert PXD_KINDS["SHIFT"] == ops.KIND_SHIFT == 6
    base_mask = int(re.search(r"BASE_MASK\s*=\s*(\d+)", _read("_opcodes.pxd")).group(1))
    assert base_mask == ops.BASE_MASK == 63
    for kind in ops.Kind:
        assert PXD_KINDS[kind.name] == int(kind)


def test_table_names_and_bases_are_unique_and_fit_six_bits():
    names = [op.name for op in ops.OPERATIONS]
    bases = [op.base for op in ops.OPERATIONS]
    assert len(set(names)) == len(names)
    assert len(set(bases)) == len(bases)
    assert all(0 <= b <= ops.BASE_MASK for b in bases)
    assert ops.BY_NAME.keys() == set(names)


def test_binary_bases_have_arity_two_and_unary_bases_do_not():
    for op in ops.OPERATIONS:
        if ops.is_binary(op):
            assert op.arity == 2, op.name
        else:
            assert op.arity != 2, op.name


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=lambda op: op.name)
def test_every_row_has_its_kernels(op):
    if op.name in ("const", "select"):
        return  # handled inline by the sweeps, no rule of their own
    assert f"{op.name}_value" in DEFINED
    has_partial = f"{op.name}_partial" in DEFINED or f"{op.name}_partials" in DEFINED
    needs_partial = op.differentiable and op.name not in ops.COMPARISONS
    assert has_partial == needs_partial, (
        f"{op.name}: partial kernel present={has_partial}, expected={needs_partial}")
    if needs_partial:
        expected = f"{op.name}_partials" if ops.is_binary(op) else f"{op.name}_partial"
        assert expected in DEFINED


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=lambda op: op.name)
def test_every_row_is_dispatched(op):
    """The dispatchers at the end of _kernels.pxd route each opcode to its rules."""
    if op.name in ("const", "select"):
        return
    constant = f"OP_{op.name.upper()}"
    assert re.search(rf"base == {constant}: return {op.name}_value\(", KERNELS)
    if op.differentiable and op.name not in ops.COMPARISONS:
        assert re.search(rf"base == {constant}: (return )?{op.name}_partials?\(", KERNELS)


def test_comparisons_are_the_non_differentiable_binary_rows():
    binary_flat = {op.name for op in ops.OPERATIONS if ops.is_binary(op) and not op.differentiable}
    assert binary_flat == set(ops.COMPARISONS)
    assert set(ops.COMPARISON_SYMBOL) == set(ops.COMPARISONS)
    bases = sorted(ops.BY_NAME[n].base for n in ops.COMPARISONS)
    # is_comparison() in _kernels.pxd tests OP_LT <= base <= OP_NE.
    assert bases == list(range(ops.BY_NAME["lt"].base, ops.BY_NAME["ne"].base + 1))


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


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=lambda op: op.name)
def test_every_curved_row_has_a_second_order_kernel(op):
    name = f"{op.name}_seconds" if ops.is_binary(op) else f"{op.name}_second"
    if op.name in ZERO_SECOND and name not in DEFINED:
        return
    assert name in DEFINED, f"{op.name} has no second-order kernel {name}"
    assert re.search(rf"base == OP_{op.name.upper()}: (return )?{name}\(", KERNELS), (
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


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=lambda op: op.name)
def test_hessian_sparsity_follows_the_curvature_column(op):
    from wengert._sparsity import interaction
    kinds = (Kind.VV, Kind.VC, Kind.CV) if ops.is_binary(op) else (Kind.UNARY,)
    for kind in kinds:
        assert interaction(op.code(kind)) == EXPECTED_INTERACTION[op.curvature, kind], (
            op.name, kind.name)


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=lambda op: op.name)
def test_curvature_column_matches_the_second_derivative_kernels(op):
    """Rows marked linear or piecewise have zero second derivatives at a
    generic point; curved ones do not."""
    import wengert as wg
    from wengert import tracing
    if op.name in ("const", "select") or op.name in ops.COMPARISONS:
        return
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
