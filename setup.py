"""Build the C kernels (csrc/) and the Cython bridge into fastlstm._core.

Portable by default (-O3, no CPU-specific code). Set FASTLSTM_NATIVE=1 to opt
in to -march=native for a build that only has to run on this machine.
"""

import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

SOURCES = ["fastlstm/_core.pyx"] + [
    os.path.join("csrc", f) for f in ("seq.c", "lstm.c", "gru.c", "rnn.c", "act.c", "fl_blas.c", "fl_small.c", "fl_threads.c")
]

if sys.platform == "win32":
    cflags = ["/O2"]
    ldflags = []
else:
    # The pointwise loops must vectorise: -fno-trapping-math lets GCC turn the
    # selects in the activations into blends, and -fno-wrapv undoes Python's
    # -fwrapv, under which GCC cannot treat gate offsets like 2*H + j as affine.
    # -fopenmp-simd honours `#pragma omp simd` (vectorised reductions) without
    # linking any OpenMP runtime.
    cflags = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fno-wrapv", "-fopenmp-simd"]
    if os.environ.get("FASTLSTM_NATIVE") == "1":  # opt-in, never the default
        cflags.append("-march=native")
    ldflags = ["-pthread"]

ext = Extension(
    "fastlstm._core",
    sources=SOURCES,
    include_dirs=["csrc", numpy.get_include()],
    depends=[os.path.join("csrc", f) for f in os.listdir("csrc") if f.endswith(".h")],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
)

setup(ext_modules=cythonize([ext], language_level=3))
