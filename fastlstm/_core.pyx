# cython: language_level=3, boundscheck=False, wraparound=False
"""The Cython bridge to the C kernels in csrc/.

It checks that every array it is handed is a C-contiguous ndarray of the right
dtype and shape (the Python layer in _fast.py has already produced such
arrays from the user's input, so these checks guard memory safety, not
usability), allocates the outputs, passes raw pointers, releases the GIL for
the whole sequence and turns status codes into exceptions.

GEMM comes from scipy.linalg.cython_blas (the BLAS SciPy was built with),
handed to C as function pointers, with the choice of which products the
kernels leave to it (set_gemm, FASTLSTM_GEMM).

Large blocks (outputs, saved workspaces and the kernels' scratch) come from a
small cache of freed blocks, reused by exact size: a training loop calls the
kernels with the same shapes again and again, and memory that stays mapped
spares the page faults of fresh memory (an eighth to a third of a
forward+backward at batch 16-64 was measured to go to them).
FASTLSTM_CACHE_BYTES caps what it holds (default 256 MiB; 0 turns it off).
"""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, uintptr_t, SIZE_MAX
from libc.limits cimport INT_MAX
from libc.stdlib cimport malloc, free
from cpython.pycapsule cimport PyCapsule_New, PyCapsule_GetPointer, PyCapsule_GetContext, PyCapsule_SetContext
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock,
                               PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK)
from cpython.ref cimport Py_INCREF
import os
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
        int own
    ctypedef struct fl_allocator:
        void *(*alloc)(void *, size_t) noexcept nogil
        void (*release)(void *, void *, size_t) noexcept nogil
        void *ctx
    ctypedef struct fl_pool:
        pass
    fl_pool *fl_pool_new()
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
        fl_allocator mem
        fl_pool *pool
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
        fl_allocator mem
        fl_pool *pool
    enum:
        FL_ACT_SIGMOID
        FL_ACT_TANH
    int fl_activation(int dtype, int kind, int64_t n, const void *inp, void *out)
    int fl_cell_gates(int cell)
    int fl_cell_extra(int cell)
    int64_t fl_workspace_rows(const int64_t *lengths, int T, int B)
    int fl_forward(const fl_forward_args *a, const fl_blas *blas)
    int fl_backward(const fl_backward_args *a, const fl_blas *blas)

cdef extern from "fl_kernel_common.h" nogil:
    enum:
        FL_ISA_AVX512
    int fl_isa()
    int fl_row_threads(int requested, int T, int B, int H, int GH)
    int fl_pipe_projection(int requested, int T, int B, int n_in, int H, int GH, int ragged)
    int fl_pre_projection(int requested, int T, int B, int n_in, int H, int GH, int ragged)

cdef extern from *:
    """
    #if defined(__linux__) || defined(__APPLE__)
    #include <dlfcn.h>
    /* The core type an OpenBLAS library reports (e.g. "Haswell",
     * "SkylakeX"), asked of the library that holds fn; NULL when fn is not in
     * an OpenBLAS, or the name cannot be had. */
    static const char *fl_openblas_core(void *fn)
    {
        static const char *const getters[] = {
            "scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
            "openblas_get_corename64_", "openblas_get_corename"};
        Dl_info info;
        const char *core = NULL;
        if (!fn || !dladdr(fn, &info) || !info.dli_fname)
            return NULL;
        void *lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
        if (!lib)
            return NULL;
        for (size_t i = 0; i < sizeof getters / sizeof getters[0] && !core; i++) {
            char *(*get)(void) = (char *(*)(void))dlsym(lib, getters[i]);
            if (get)
                core = get();
        }
        dlclose(lib);  /* (NOLOAD: only drops the reference just taken) */
        return core;
    }
    #else
    static const char *fl_openblas_core(void *fn) { (void)fn; return NULL; }
    #endif
    """
    const char *fl_openblas_core(void *fn)

# The BLAS: scipy's function pointers, and whether the kernels run every
# product on their own kernel instead (fl_blas.own; see set_gemm). Each
# call passes a copy, so that set_gemm never changes a call under way.
cdef fl_blas _blas
_blas.sgemm = <fl_sgemm_fn>sgemm
_blas.dgemm = <fl_dgemm_fn>dgemm
_blas.own = 0

# OpenBLAS cores whose SGEMM/DGEMM kernels use AVX-512
_AVX512_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def isa():
    """The instruction-set copy of the kernels a call made now would run:
    'generic', 'avx2' or 'avx512' (the CPU's best, capped by FASTLSTM_ISA)."""
    return ("generic", "avx2", "avx512")[fl_isa()]


def pre_projection(int requested, int T, int B, int n_in, int H, int GH):
    """Whether a dense inference of these sizes has each thread project the
    whole input for its units first and then splits its steps by units
    (a training forward and a backward take that path, the backward's
    whole-sequence products on the BLAS after its loop, from more work;
    tests use this to know which path runs; FASTLSTM_TEST_PRE=1 sends both
    there at any size)."""
    return bool(fl_pre_projection(requested, T, B, n_in, H, GH, 0))


def row_threads(int requested, int T, int B, int H, int GH):
    """Threads a dense forward of these sizes splits its batch's rows over
    (1: it does not split them; tests use this to know which path runs)."""
    return fl_row_threads(requested, T, B, H, GH)


def pipe_projection(int requested, int T, int B, int I, int H, int GH, bint ragged=False):
    """Whether a forward of these sizes runs its steps on one thread while a
    second projects the input ahead of them (tests use this to know which
    path runs)."""
    return bool(fl_pipe_projection(requested, T, B, I, H, GH, ragged))


def blas_core():
    """The core type the BLAS reports when it is an OpenBLAS, else None."""
    cdef const char *core = fl_openblas_core(<void *>sgemm)
    return None if core == NULL else core.decode("ascii", "replace")


def _auto_own():
    """Whether the kernels should do every product themselves: on a CPU
    with AVX-512 whose BLAS is an OpenBLAS running narrower kernels (its
    generic builds fall back to the Haswell kernels on CPUs they do not know,
    AMD's Zen 5 among them), where the kernels' own AVX-512 products run up
    to twice as fast as the BLAS's."""
    core = blas_core()
    return (fl_isa() == FL_ISA_AVX512 and core is not None
            and core.lower() not in _AVX512_CORES)


def _parse_gemm(value):
    """FASTLSTM_GEMM / set_gemm: 'auto', 'own' or 'blas'."""
    if value not in ("auto", "own", "blas"):
        raise ValueError(f"FASTLSTM_GEMM: expected 'auto', 'own' or 'blas', got {value!r}")
    return value


_gemm_mode = "auto"


def set_gemm(str mode):
    """Where the large products run: 'own' (fastlstm's kernel, at every
    size), 'blas' (the BLAS takes the large ones: the whole-sequence
    products, and the steps of batches above 64 except in calls on several
    threads with much work in all) or 'auto' (own when the
    BLAS is an OpenBLAS without AVX-512 kernels on a CPU with AVX-512).
    Returns the mode that was in force."""
    global _gemm_mode
    _parse_gemm(mode)
    before = _gemm_mode
    _blas.own = _auto_own() if mode == "auto" else mode == "own"
    _gemm_mode = mode
    return before


def gemm_choice():
    """(mode, whether the kernels do every product themselves)."""
    return _gemm_mode, bool(_blas.own)


set_gemm(os.environ.get("FASTLSTM_GEMM", "auto"))

# ---- the block cache (see the module docstring) ----
# Blocks of at least _CACHE_MIN bytes that are freed go into one of _NSLOTS
# slots while the total stays under the cap (the oldest are freed to make
# room); a request takes a block of exactly its size, else mallocs one (that
# starts on a cache line: _line_malloc). One lock
# guards the slots: callers may be any thread, with or without the GIL (the
# kernels' scratch is requested and released inside nogil sections).
cdef enum:
    _NSLOTS = 32
cdef size_t _CACHE_MIN = 262144
cdef size_t _cache_cap = 268435456
cdef void *_slot_ptr[_NSLOTS]
cdef size_t _slot_size[_NSLOTS]
cdef unsigned long long _slot_age[_NSLOTS]
cdef unsigned long long _cache_clock = 0
cdef size_t _cache_held = 0
cdef PyThread_type_lock _cache_lock = PyThread_allocate_lock()
if _cache_lock == NULL:
    raise MemoryError("fastlstm: cannot create the block cache's lock")


def _parse_cache_bytes(value):
    """FASTLSTM_CACHE_BYTES: a non-negative integer number of bytes."""
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"FASTLSTM_CACHE_BYTES: expected a non-negative integer number "
                         f"of bytes, got {value!r}")
    return n


if os.environ.get("FASTLSTM_CACHE_BYTES") is not None:
    _cache_cap = _parse_cache_bytes(os.environ["FASTLSTM_CACHE_BYTES"])


cdef void *_line_malloc(size_t n) noexcept nogil:
    """n bytes starting on a 64-byte cache line (the kernels read their
    buffers with full-width vector loads; one straddling two lines costs
    two). The block malloc gave is stored just before; free with _line_free."""
    if n > SIZE_MAX - 64 - sizeof(void *):
        return NULL
    cdef char *raw = <char *>malloc(n + 64 + sizeof(void *))
    if raw == NULL:
        return NULL
    cdef uintptr_t at = (<uintptr_t>raw + sizeof(void *) + 63) & ~(<uintptr_t>63)
    (<void **>(at - sizeof(void *)))[0] = raw
    return <void *>at


cdef void _line_free(void *p) noexcept nogil:
    if p != NULL:
        free((<void **>(<uintptr_t>p - sizeof(void *)))[0])


cdef void *_cache_alloc(void *ctx, size_t n) noexcept nogil:
    global _cache_held
    cdef void *p = NULL
    cdef int i
    if n >= _CACHE_MIN and _cache_cap:
        PyThread_acquire_lock(_cache_lock, WAIT_LOCK)
        for i in range(_NSLOTS):
            if _slot_ptr[i] != NULL and _slot_size[i] == n:
                p = _slot_ptr[i]
                _slot_ptr[i] = NULL
                _cache_held -= n
                break
        PyThread_release_lock(_cache_lock)
        if p != NULL:
            return p
    return _line_malloc(n)


cdef void _cache_release(void *ctx, void *p, size_t n) noexcept nogil:
    global _cache_held, _cache_clock
    cdef int i, free_slot, oldest
    cdef void *evict
    if p == NULL:
        return
    if n < _CACHE_MIN or n > _cache_cap:
        _line_free(p)
        return
    PyThread_acquire_lock(_cache_lock, WAIT_LOCK)
    while True:  # make room: free the oldest blocks
        free_slot = -1
        oldest = -1
        for i in range(_NSLOTS):
            if _slot_ptr[i] == NULL:
                free_slot = i
            elif oldest < 0 or _slot_age[i] < _slot_age[oldest]:
                oldest = i
        if free_slot >= 0 and _cache_held + n <= _cache_cap:
            break
        evict = _slot_ptr[oldest]
        _slot_ptr[oldest] = NULL
        _cache_held -= _slot_size[oldest]
        _line_free(evict)
    _slot_ptr[free_slot] = p
    _slot_size[free_slot] = n
    _cache_clock += 1
    _slot_age[free_slot] = _cache_clock
    _cache_held += n
    PyThread_release_lock(_cache_lock)


cdef void _release_capsule(object capsule) noexcept:
    _cache_release(NULL, PyCapsule_GetPointer(capsule, NULL),
                   <size_t>PyCapsule_GetContext(capsule))


# The worker threads calls with threads take theirs from (kept between
# calls; waking one costs a fraction of starting a thread). NULL if it could
# not be made: calls then start threads of their own.
cdef fl_pool *_pool = fl_pool_new()


cdef void _use_cache(fl_allocator *mem) noexcept:
    mem.alloc = _cache_alloc
    mem.release = _cache_release
    mem.ctx = NULL


def cache_clear():
    """Free every block the cache holds (fastlstm.empty_cache)."""
    global _cache_held
    cdef int i
    PyThread_acquire_lock(_cache_lock, WAIT_LOCK)
    for i in range(_NSLOTS):
        if _slot_ptr[i] != NULL:
            _line_free(_slot_ptr[i])
            _slot_ptr[i] = NULL
    _cache_held = 0
    PyThread_release_lock(_cache_lock)


def cache_info():
    """(blocks held, bytes held, cap in bytes) of the block cache."""
    cdef int i, blocks = 0
    cdef size_t held
    PyThread_acquire_lock(_cache_lock, WAIT_LOCK)
    for i in range(_NSLOTS):
        if _slot_ptr[i] != NULL:
            blocks += 1
    held = _cache_held
    PyThread_release_lock(_cache_lock)
    return blocks, held, _cache_cap


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


cdef int _typenum(object dtype) except -1:
    if dtype == np.float32:
        return cnp.NPY_FLOAT
    if dtype == np.float64:
        return cnp.NPY_DOUBLE
    raise TypeError(f"x: expected float32 or float64, got {dtype}")


cdef const void *_ptr(str name, object arr, int typenum, tuple shape,
                      bint optional=False) except? NULL:
    """Data pointer of a C-contiguous, aligned, native-order array of type
    `typenum` and exactly `shape` (checked at C level: this runs on every
    call, including single cell steps)."""
    if arr is None:
        if optional:
            return NULL
        raise ValueError(f"{name}: an array is required")
    if not cnp.PyArray_Check(arr):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(arr).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray>arr
    if cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_ISBEHAVED_RO(a):
        raise TypeError(f"{name}: expected native {np.dtype(cnp.PyArray_DescrFromType(typenum))}"
                        f" data, got {a.dtype}")
    cdef int nd = len(shape), k
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(a)
    if cnp.PyArray_NDIM(a) != nd:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    for k in range(nd):
        if dims[k] != <cnp.npy_intp>shape[k]:
            raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name}: expected a C-contiguous array")
    return cnp.PyArray_DATA(a)


cdef object _empty(tuple shape, int typenum):
    """An uninitialised C-contiguous array (at most 3-D); a large one lives in
    a block of the cache, which gets the block back when the array (and every
    view of it) is gone."""
    cdef cnp.npy_intp dims[3]
    cdef int k, nd = len(shape)
    cdef size_t nbytes = 8 if typenum == cnp.NPY_DOUBLE else 4
    for k in range(nd):
        dims[k] = shape[k]
        nbytes *= <size_t>dims[k]
    if (nbytes < _CACHE_MIN or not _cache_cap or
            (typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE)):
        return cnp.PyArray_EMPTY(nd, dims, typenum, 0)
    cdef void *p = _cache_alloc(NULL, nbytes)
    if p == NULL:
        raise MemoryError()
    try:
        capsule = PyCapsule_New(p, NULL, <void (*)(object) noexcept>_release_capsule)
    except BaseException:
        _cache_release(NULL, p, nbytes)
        raise
    PyCapsule_SetContext(capsule, <void *>nbytes)
    arr = cnp.PyArray_SimpleNewFromData(nd, dims, typenum, p)
    Py_INCREF(capsule)  # PyArray_SetBaseObject steals a reference
    cnp.PyArray_SetBaseObject(<cnp.ndarray>arr, capsule)
    return arr


cdef int _dtype_code(int typenum) except -1:
    if typenum == cnp.NPY_FLOAT:
        return FL_FLOAT32
    if typenum == cnp.NPY_DOUBLE:
        return FL_FLOAT64
    raise TypeError("x: expected float32 or float64")


cdef tuple _sizes(str cell, x, w_ih):
    """(cell code, G, E, type number, T, B, I, H) from x (T, B, I) and w_ih (G*H, I)."""
    cdef int code = CELLS[cell]
    cdef int G = fl_cell_gates(code)
    if not cnp.PyArray_Check(x) or cnp.PyArray_NDIM(<cnp.ndarray>x) != 3:
        raise ValueError("x: expected a 3-D numpy.ndarray")
    if not cnp.PyArray_Check(w_ih) or cnp.PyArray_NDIM(<cnp.ndarray>w_ih) != 2:
        raise ValueError("w_ih: expected a 2-D numpy.ndarray")
    T, B, I = x.shape
    return (code, G, fl_cell_extra(code), cnp.PyArray_TYPE(<cnp.ndarray>x), T, B, I,
            w_ih.shape[0] // G)


def gates(str cell):
    """Number of gates G of a cell ('lstm', 'gru', 'rnn_tanh', 'rnn_relu')."""
    return fl_cell_gates(CELLS[cell])


def forward(str cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, bint reverse,
            bint training, int num_threads=1):
    """Run fl_forward. Returns (y, h_n, c_n or None, (gates, hprev, extra) or None)."""
    cdef fl_forward_args a
    code, G, E, tn, T, B, I, H = _sizes(cell, x, w_ih)
    a.num_threads = num_threads
    a.pool = _pool
    _use_cache(&a.mem)
    a.dtype = _dtype_code(tn)
    a.cell = code
    a.T, a.B, a.n_in, a.H = T, B, I, H
    a.reverse = reverse
    a.x = _ptr("x", x, tn, (T, B, I))
    a.w_ih = _ptr("w_ih", w_ih, tn, (G * H, I))
    a.w_hh = _ptr("w_hh", w_hh, tn, (G * H, H))
    a.b_ih = _ptr("b_ih", b_ih, tn, (G * H,), True)
    a.b_hh = _ptr("b_hh", b_hh, tn, (G * H,), True)
    a.h0 = _ptr("h0", h0, tn, (B, H), True)
    a.c0 = _ptr("c0", c0, tn, (B, H), True)
    a.lengths = <const int64_t *>_ptr("lengths", lengths, cnp.NPY_INT64, (B,), True)
    y = _empty((T, B, H), tn)
    h_n = _empty((B, H), tn)
    c_n = _empty((B, H), tn) if code == FL_LSTM else None
    a.y = cnp.PyArray_DATA(<cnp.ndarray>y)
    a.h_n = cnp.PyArray_DATA(<cnp.ndarray>h_n)
    a.c_n = cnp.PyArray_DATA(<cnp.ndarray>c_n) if c_n is not None else NULL
    saved = None
    a.gates = a.hprev = a.extra = NULL
    if training:  # one workspace row per valid step (all T*B without lengths)
        N = fl_workspace_rows(a.lengths, T, B)
        g = _empty((N, G * H), tn)
        hp = _empty((N, H), tn)
        ex = _empty((N, E * H), tn)
        a.gates = cnp.PyArray_DATA(<cnp.ndarray>g)
        a.hprev = cnp.PyArray_DATA(<cnp.ndarray>hp)
        a.extra = cnp.PyArray_DATA(<cnp.ndarray>ex) if E else NULL
        saved = (g, hp, ex)
    cdef int status
    cdef fl_blas blas = _blas
    with nogil:
        status = fl_forward(&a, &blas)
    _check(status)
    return y, h_n, c_n, saved


def backward(str cell, x, w_ih, w_hh, lengths, bint reverse, saved, dy, dh_n, dc_n,
             bint has_bias, int num_threads=1):
    """Run fl_backward. Returns (dx, dh0, dc0 or None, dw_ih, dw_hh, db_ih, db_hh)."""
    cdef fl_backward_args a
    code, G, E, tn, T, B, I, H = _sizes(cell, x, w_ih)
    g, hp, ex = saved
    a.num_threads = num_threads
    a.pool = _pool
    _use_cache(&a.mem)
    a.dtype = _dtype_code(tn)
    a.cell = code
    a.T, a.B, a.n_in, a.H = T, B, I, H
    a.reverse = reverse
    a.x = _ptr("x", x, tn, (T, B, I))
    a.w_ih = _ptr("w_ih", w_ih, tn, (G * H, I))
    a.w_hh = _ptr("w_hh", w_hh, tn, (G * H, H))
    a.lengths = <const int64_t *>_ptr("lengths", lengths, cnp.NPY_INT64, (B,), True)
    N = fl_workspace_rows(a.lengths, T, B)
    a.gates = _ptr("gates", g, tn, (N, G * H))
    a.hprev = _ptr("hprev", hp, tn, (N, H))
    a.extra = _ptr("extra", ex, tn, (N, E * H)) if E else NULL
    a.dy = _ptr("dy", dy, tn, (T, B, H), True)
    a.dh_n = _ptr("dh_n", dh_n, tn, (B, H), True)
    a.dc_n = _ptr("dc_n", dc_n, tn, (B, H), True)
    dx = _empty((T, B, I), tn)
    dh0 = _empty((B, H), tn)
    dc0 = _empty((B, H), tn) if code == FL_LSTM else None
    dw_ih = _empty((G * H, I), tn)
    dw_hh = _empty((G * H, H), tn)
    db_ih = _empty((G * H,), tn) if has_bias else None
    db_hh = _empty((G * H,), tn) if has_bias else None
    a.dx = cnp.PyArray_DATA(<cnp.ndarray>dx)
    a.dh0 = cnp.PyArray_DATA(<cnp.ndarray>dh0)
    a.dc0 = cnp.PyArray_DATA(<cnp.ndarray>dc0) if dc0 is not None else NULL
    a.dw_ih = cnp.PyArray_DATA(<cnp.ndarray>dw_ih)
    a.dw_hh = cnp.PyArray_DATA(<cnp.ndarray>dw_hh)
    a.db_ih = cnp.PyArray_DATA(<cnp.ndarray>db_ih) if has_bias else NULL
    a.db_hh = cnp.PyArray_DATA(<cnp.ndarray>db_hh) if has_bias else NULL
    cdef int status
    cdef fl_blas blas = _blas
    with nogil:
        status = fl_backward(&a, &blas)
    _check(status)
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


def activation(str kind, x):
    """The kernels' own sigmoid or tanh applied to a float32/float64 array (for tests)."""
    cdef int code = {"sigmoid": FL_ACT_SIGMOID, "tanh": FL_ACT_TANH}[kind]
    src = np.ascontiguousarray(x)
    out = np.empty_like(src)
    cdef int tn = _typenum(src.dtype)
    cdef const void *p_in = _ptr("x", src, tn, src.shape)
    cdef void *p_out = <void *>_ptr("out", out, tn, src.shape)
    cdef int dt = _dtype_code(tn)
    cdef int64_t n = src.size
    cdef int status
    with nogil:
        status = fl_activation(dt, code, n, p_in, p_out)
    _check(status)
    return out


# ---- one inference step of a cell (fastlstm.nn's eval-mode cells) ----

cdef bint _step_array(object v, int typenum, int nd, cnp.npy_intp d0, cnp.npy_intp d1,
                      const void **data):
    """True, with data set, if v is exactly a numpy.ndarray of `typenum`, aligned, native,
    C-contiguous and of shape (d0, d1) (nd 2) or (d1,) (nd 1)."""
    if type(v) is not cnp.ndarray:
        return False
    cdef cnp.ndarray a = <cnp.ndarray>v
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(a)
    if (cnp.PyArray_TYPE(a) != typenum or cnp.PyArray_NDIM(a) != nd
            or dims[nd - 1] != d1 or (nd == 2 and dims[0] != d0)
            or not cnp.PyArray_ISBEHAVED_RO(a) or not cnp.PyArray_IS_C_CONTIGUOUS(a)):
        return False
    data[0] = cnp.PyArray_DATA(a)
    return True


def cell_step(int code, nonlinearity, int typenum, int input_size, int hidden_size, x, hx,
              dict params not None):
    """One inference step (T = 1) of a cell of `input_size` -> `hidden_size` units, or None.

    code: CELLS["lstm"] or CELLS["gru"], or any RNN code, whose nonlinearity
    ('tanh' or 'relu') then picks the cell. x: (B, I), or (I,) unbatched; hx:
    None, an (h, c) tuple or list for the LSTM (each None or an array), else
    None or h; states (B, H), or (H,) unbatched; params: the cell's dict of
    weight_ih, weight_hh and optional bias_ih, bias_hh. Every array must be
    exactly a numpy.ndarray of type `typenum`, aligned, native and
    C-contiguous, with the above shapes: then this returns the fresh (h', c')
    for the LSTM, else h', of x's layout. For anything else it returns None,
    having done nothing, and the caller takes its checked path (which gives
    the messages for bad input). Kernel errors raise as in forward().
    """
    cdef fl_forward_args a
    if code == FL_LSTM or code == FL_GRU:
        a.cell = code
    elif nonlinearity == "tanh":
        a.cell = FL_RNN_TANH
    elif nonlinearity == "relu":
        a.cell = FL_RNN_RELU
    else:
        return None
    if typenum == cnp.NPY_FLOAT:
        a.dtype = FL_FLOAT32
    elif typenum == cnp.NPY_DOUBLE:
        a.dtype = FL_FLOAT64
    else:
        return None
    cdef int G = fl_cell_gates(a.cell), nd
    cdef cnp.npy_intp B, H = hidden_size, I = input_size
    # x fixes the layout: (B, I) or unbatched (I,)
    if type(x) is not cnp.ndarray:
        return None
    nd = cnp.PyArray_NDIM(<cnp.ndarray>x)
    if nd != 1 and nd != 2:
        return None
    B = cnp.PyArray_DIMS(<cnp.ndarray>x)[0] if nd == 2 else 1
    if B > INT_MAX:
        return None
    if not _step_array(x, typenum, nd, B, I, &a.x):
        return None
    h0 = c0 = None
    if a.cell == FL_LSTM:
        if hx is not None:
            if (type(hx) is not tuple and type(hx) is not list) or len(hx) != 2:
                return None
            h0, c0 = hx
    else:
        h0 = hx
    a.h0 = a.c0 = NULL
    if h0 is not None and not _step_array(h0, typenum, nd, B, H, &a.h0):
        return None
    if c0 is not None and not _step_array(c0, typenum, nd, B, H, &a.c0):
        return None
    # the parameters are held here (not borrowed from the dict) until the
    # kernel is done: another thread may replace them while it runs
    w_ih, w_hh = params.get("weight_ih"), params.get("weight_hh")
    b_ih, b_hh = params.get("bias_ih"), params.get("bias_hh")
    a.b_ih = a.b_hh = NULL
    if not (_step_array(w_ih, typenum, 2, G * H, I, &a.w_ih)
            and _step_array(w_hh, typenum, 2, G * H, H, &a.w_hh)
            and (b_ih is None or _step_array(b_ih, typenum, 1, 0, G * H, &a.b_ih))
            and (b_hh is None or _step_array(b_hh, typenum, 1, 0, G * H, &a.b_hh))):
        return None
    # the outputs; y (T = 1: the same values as h_n) is scratch
    cdef cnp.npy_intp dims[2]
    dims[0] = B
    dims[1] = H
    cdef cnp.npy_intp *odims = &dims[2 - nd]  # (B, H) or (H,)
    h_n = cnp.PyArray_EMPTY(nd, odims, typenum, 0)
    c_n = cnp.PyArray_EMPTY(nd, odims, typenum, 0) if a.cell == FL_LSTM else None
    a.h_n = cnp.PyArray_DATA(<cnp.ndarray>h_n)
    a.c_n = cnp.PyArray_DATA(<cnp.ndarray>c_n) if c_n is not None else NULL
    a.T, a.B, a.n_in, a.H = 1, <int>B, <int>I, <int>H
    a.reverse = 0
    a.num_threads = 1
    a.pool = NULL  # (one step: no threads)
    a.mem.alloc = NULL  # a step's scratch is small: malloc
    a.mem.release = NULL
    a.mem.ctx = NULL
    a.lengths = NULL
    a.gates = a.hprev = a.extra = NULL
    cdef double ybuf[512]  # y of a small step stays on the stack (4 KiB)
    cdef size_t ybytes = <size_t>(B * H) * cnp.PyArray_ITEMSIZE(<cnp.ndarray>h_n)
    a.y = <void *>ybuf if ybytes <= sizeof(ybuf) else malloc(ybytes)
    if a.y == NULL:
        raise MemoryError("fastlstm: out of memory for the kernel's workspace")
    cdef int status
    cdef fl_blas blas = _blas
    with nogil:
        status = fl_forward(&a, &blas)
    if a.y != <void *>ybuf:
        free(a.y)
    _check(status)
    return (h_n, c_n) if c_n is not None else h_n
