"""Build the compiled sweeps.

Compiler directives are set once here for the whole build. Set
``WENGERT_DEBUG=1`` in the environment to turn bounds checks, wraparound
and initialisation checks back on (and optimisation off) for a debug build.
"""
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("WENGERT_DEBUG", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

if os.name == "nt":
    compile_args = ["/O2"] if not DEBUG else ["/Od"]
else:
    # -fno-math-errno: nothing reads errno, and without it GCC must keep a
    # libm call beside every sqrt and cannot pair sin and cos into sincos.
    # -falign-functions=64: the sweep loops otherwise move with unrelated
    # code before them; a 16-byte shift of identical instructions measured
    # 17% slower forward sweeps on Rosenbrock (1.21 vs 1.42 ns/op).
    compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno", "-falign-functions=64"]

# The sweeps dispatch to per-operation kernels that are `cdef inline`; GCC
# left the larger dispatchers as calls, costing ~40% of a gradient. Forcing
# inlining on GCC/Clang keeps every kernel inside its sweep loop.
inline_macro = [] if (os.name == "nt" or DEBUG) else [
    ("CYTHON_INLINE", "inline __attribute__((always_inline))")]

extensions = [
    Extension(
        f"wengert.{name}",
        [f"src/wengert/{name}.pyx"],
        include_dirs=[numpy.get_include(), os.path.join("src", "wengert")],
        # _vector_math.h looks glibc's vector functions up with dlopen
        # (in libc itself from glibc 2.34, in libdl before).
        libraries=["dl"] if sys.platform.startswith("linux") else [],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")] + inline_macro,
        extra_compile_args=compile_args,
    )
    for name in ("_sweeps", "_engine", "_recorder", "_sparsity", "_colouring", "_optimize")
]

# The C mirrors of the operation table (the opcode enum, the kernel
# dispatch, the sparsity classes) are generated from it, as NumPy generates
# its ufunc loops: see src/wengert/_generate.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src", "wengert"))
from _generate import generate  # noqa: E402

generate()

setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            include_path=["src"]))
