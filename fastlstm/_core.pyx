# cython: language_level=3, boundscheck=False, wraparound=False
"""The Cython bridge to the C kernels in csrc/.

It checks that every array it is handed is a C-contiguous ndarray of the right
dtype and shape (the Python layer in _fast.py has already produced such
arrays from the user's input, so these checks guard memory safety, not
usability), allocates the outputs, passes raw pointers, releases the GIL for
the whole sequence and turns status codes into exceptions.

GEMM comes from scipy.linalg.cython_blas (the BLAS SciPy was built with),
handed to C as function pointers.
"""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm

cnp.import_array()

cdef extern from "fastlstm.h" nogil:
    enum:
        FL_OK
        FL_ERR_NOMEM
        FL_ERR_ARG
        FL_ERR_TOO_LARGE
        FL_ERR_LENGTHS
        FL_ERR_DTYPE
        FL_ERR_CELL
    enum:
        FL_FLOAT32
        FL_FLOAT64
    enum:
        FL_LSTM
        FL_GRU
        FL_RNN_TANH
        FL_RNN_RELU
    ctypedef void (*fl_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *, int *,
                                 float *, int *, float *, float *, int *) noexcept nogil
    ctypedef void (*fl_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *, int *,
                                 double *, int *, double *, double *, int *) noexcept nogil
    ctypedef struct fl_blas:
        fl_sgemm_fn sgemm
        fl_dgemm_fn dgemm
    ctypedef struct fl_forward_args:
        int dtype, cell, T, B, n_in, H, reverse
        int num_threads
        const void *x
        const void *w_ih
        const void *w_hh
        const void *b_ih
        const void *b_hh
        const void *h0
        const void *c0
        const int64_t *lengths
        void *y
        void *h_n
        void *c_n
        void *gates
        void *hprev
        void *extra
    ctypedef struct fl_backward_args:
        int dtype, cell, T, B, n_in, H, reverse
        int num_threads
        const void *x
        const void *w_ih
        const void *w_hh
        const int64_t *lengths
        const void *gates
        const void *hprev
        const void *extra
        const void *dy
        const void *dh_n
        const void *dc_n
        void *dx
        void *dh0
        void *dc0
        void *dw_ih
        void *dw_hh
        void *db_ih
        void *db_hh
    enum:
        FL_ACT_SIGMOID
        FL_ACT_TANH
    int fl_activation(int dtype, int kind, int64_t n, const void *inp, void *out)
    int fl_cell_gates(int cell)
    int fl_cell_extra(int cell)
    int fl_forward(const fl_forward_args *a, const fl_blas *blas)
    int fl_backward(const fl_backward_args *a, const fl_blas *blas)

# read-only after import: safe to share between threads
cdef fl_blas _blas
_blas.sgemm = <fl_sgemm_fn>sgemm
_blas.dgemm = <fl_dgemm_fn>dgemm

CELLS = {"lstm": FL_LSTM, "gru": FL_GRU, "rnn_tanh": FL_RNN_TANH, "rnn_relu": FL_RNN_RELU}

_MESSAGES = {
    FL_ERR_ARG: "inconsistent sizes or a missing array",
    FL_ERR_TOO_LARGE: "an array is too large for the 32-bit BLAS interface "
                      "(T*B and G*H must stay below 2**31)",
    FL_ERR_LENGTHS: "lengths: every length must lie in [0, T]",
    FL_ERR_DTYPE: "unsupported dtype",
    FL_ERR_CELL: "unknown cell",
}


cdef int _check(int status) except -1:
    if status == FL_OK:
        return 0
    if status == FL_ERR_NOMEM:
        raise MemoryError("fastlstm: out of memory for the kernel's workspace")
    raise ValueError("fastlstm: " + _MESSAGES.get(status, f"kernel error {status}"))


cdef const void *_ptr(str name, object arr, object dtype, tuple shape,
                      bint optional=False) except? NULL:
    """Data pointer of a C-contiguous `dtype` array of exactly `shape`."""
    if arr is None:
        if optional:
            return NULL
        raise ValueError(f"{name}: an array is required")
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(arr).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray>arr
    if a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {a.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name}: expected a C-contiguous array")
    return cnp.PyArray_DATA(a)


cdef int _dtype_code(object dtype) except -1:
    if dtype == np.float32:
        return FL_FLOAT32
    if dtype == np.float64:
        return FL_FLOAT64
    raise TypeError(f"x: expected float32 or float64, got {dtype}")


def gates(str cell):
    """Number of gates G of a cell ('lstm', 'gru', 'rnn_tanh', 'rnn_relu')."""
    return fl_cell_gates(CELLS[cell])


def forward(str cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, bint reverse,
            bint training, int num_threads=1):
    """Run fl_forward. Returns (y, h_n, c_n or None, (gates, hprev, extra) or None)."""
    cdef fl_forward_args a
    a.num_threads = num_threads
    cdef int code = CELLS[cell]
    cdef int G = fl_cell_gates(code), E = fl_cell_extra(code)
    if not isinstance(x, np.ndarray) or (<cnp.ndarray>x).ndim != 3:
        raise ValueError("x: expected a 3-D numpy.ndarray")
    T, B, I = x.shape
    dtype = x.dtype
    if not isinstance(w_ih, np.ndarray) or (<cnp.ndarray>w_ih).ndim != 2:
        raise ValueError("w_ih: expected a 2-D numpy.ndarray")
    H = w_ih.shape[0] // G
    a.dtype = _dtype_code(dtype)
    a.cell = code
    a.T, a.B, a.n_in, a.H = T, B, I, H
    a.reverse = reverse
    a.x = _ptr("x", x, dtype, (T, B, I))
    a.w_ih = _ptr("w_ih", w_ih, dtype, (G * H, I))
    a.w_hh = _ptr("w_hh", w_hh, dtype, (G * H, H))
    a.b_ih = _ptr("b_ih", b_ih, dtype, (G * H,), True)
    a.b_hh = _ptr("b_hh", b_hh, dtype, (G * H,), True)
    a.h0 = _ptr("h0", h0, dtype, (B, H), True)
    a.c0 = _ptr("c0", c0, dtype, (B, H), True)
    a.lengths = <const int64_t *>_ptr("lengths", lengths, np.int64, (B,), True)
    y = np.empty((T, B, H), dtype)
    h_n = np.empty((B, H), dtype)
    c_n = np.empty((B, H), dtype) if code == FL_LSTM else None
    a.y = <void *>_ptr("y", y, dtype, (T, B, H))
    a.h_n = <void *>_ptr("h_n", h_n, dtype, (B, H))
    a.c_n = <void *>_ptr("c_n", c_n, dtype, (B, H), True)
    saved = None
    a.gates = a.hprev = a.extra = NULL
    if training:
        g = np.empty((T, B, G * H), dtype)
        hp = np.empty((T, B, H), dtype)
        ex = np.empty((T, B, E * H), dtype)
        a.gates = <void *>_ptr("gates", g, dtype, (T, B, G * H))
        a.hprev = <void *>_ptr("hprev", hp, dtype, (T, B, H))
        a.extra = <void *>_ptr("extra", ex, dtype, (T, B, E * H)) if E else NULL
        saved = (g, hp, ex)
    cdef int status
    with nogil:
        status = fl_forward(&a, &_blas)
    _check(status)
    return y, h_n, c_n, saved


def backward(str cell, x, w_ih, w_hh, lengths, bint reverse, saved, dy, dh_n, dc_n,
             bint has_bias, int num_threads=1):
    """Run fl_backward. Returns (dx, dh0, dc0 or None, dw_ih, dw_hh, db_ih, db_hh)."""
    cdef fl_backward_args a
    a.num_threads = num_threads
    cdef int code = CELLS[cell]
    cdef int G = fl_cell_gates(code), E = fl_cell_extra(code)
    if not isinstance(x, np.ndarray) or (<cnp.ndarray>x).ndim != 3:
        raise ValueError("x: expected a 3-D numpy.ndarray")
    T, B, I = x.shape
    dtype = x.dtype
    if not isinstance(w_ih, np.ndarray) or (<cnp.ndarray>w_ih).ndim != 2:
        raise ValueError("w_ih: expected a 2-D numpy.ndarray")
    H = w_ih.shape[0] // G
    g, hp, ex = saved
    a.dtype = _dtype_code(dtype)
    a.cell = code
    a.T, a.B, a.n_in, a.H = T, B, I, H
    a.reverse = reverse
    a.x = _ptr("x", x, dtype, (T, B, I))
    a.w_ih = _ptr("w_ih", w_ih, dtype, (G * H, I))
    a.w_hh = _ptr("w_hh", w_hh, dtype, (G * H, H))
    a.lengths = <const int64_t *>_ptr("lengths", lengths, np.int64, (B,), True)
    a.gates = _ptr("gates", g, dtype, (T, B, G * H))
    a.hprev = _ptr("hprev", hp, dtype, (T, B, H))
    a.extra = _ptr("extra", ex, dtype, (T, B, E * H)) if E else NULL
    a.dy = _ptr("dy", dy, dtype, (T, B, H), True)
    a.dh_n = _ptr("dh_n", dh_n, dtype, (B, H), True)
    a.dc_n = _ptr("dc_n", dc_n, dtype, (B, H), True)
    dx = np.empty((T, B, I), dtype)
    dh0 = np.empty((B, H), dtype)
    dc0 = np.empty((B, H), dtype) if code == FL_LSTM else None
    dw_ih = np.empty((G * H, I), dtype)
    dw_hh = np.empty((G * H, H), dtype)
    db_ih = np.empty(G * H, dtype) if has_bias else None
    db_hh = np.empty(G * H, dtype) if has_bias else None
    a.dx = <void *>_ptr("dx", dx, dtype, (T, B, I))
    a.dh0 = <void *>_ptr("dh0", dh0, dtype, (B, H))
    a.dc0 = <void *>_ptr("dc0", dc0, dtype, (B, H), True)
    a.dw_ih = <void *>_ptr("dw_ih", dw_ih, dtype, (G * H, I))
    a.dw_hh = <void *>_ptr("dw_hh", dw_hh, dtype, (G * H, H))
    a.db_ih = <void *>_ptr("db_ih", db_ih, dtype, (G * H,), True)
    a.db_hh = <void *>_ptr("db_hh", db_hh, dtype, (G * H,), True)
    cdef int status
    with nogil:
        status = fl_backward(&a, &_blas)
    _check(status)
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


def activation(str kind, x):
    """The kernels' own sigmoid or tanh applied to a float32/float64 array (for tests)."""
    cdef int code = {"sigmoid": FL_ACT_SIGMOID, "tanh": FL_ACT_TANH}[kind]
    src = np.ascontiguousarray(x)
    out = np.empty_like(src)
    cdef const void *p_in = _ptr("x", src, src.dtype, src.shape)
    cdef void *p_out = <void *>_ptr("out", out, src.dtype, src.shape)
    cdef int dt = _dtype_code(src.dtype)
    cdef int64_t n = src.size
    cdef int status
    with nogil:
        status = fl_activation(dt, code, n, p_in, p_out)
    _check(status)
    return out
