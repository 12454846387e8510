"""Build the compiled sweeps.

Compiler directives are set once here for the whole build. Set
``WENGERT_DEBUG=1`` in the environment to turn bounds checks, wraparound
and initialisation checks back on (and optimisation off) for a debug build.
"""
import os

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
    compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno"]

# The sweeps dispatch to per-operation kernels that are `cdef inline`; GCC
# left the larger dispatchers as calls, costing ~40% of a gradient. Forcing
# inlining on GCC/Clang keeps every kernel inside its sweep loop.
inline_macro = [] if (os.name == "nt" or DEBUG) else [
    ("CYTHON_INLINE", "inline __attribute__((always_inline))")]

extensions = [
    Extension(
        f"wengert.{name}",
        [f"src/wengert/{name}.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")] + inline_macro,
        extra_compile_args=compile_args,
    )
    for name in ("_sweeps", "_recorder", "_sparsity", "_optimize")
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            include_path=["src"]))
