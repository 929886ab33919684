/*
 * fl_template.h -- float and double (and, for hot loops, several instruction
 * sets) from one source.
 *
 * A templated source file is written once in terms of FL_REAL and FL_NAME()
 * and instantiated for both element types by including itself through this
 * header:
 *
 *     #ifndef FL_REAL
 *     #define FL_TEMPLATE_FILE "lstm.c"
 *     #define FL_TEMPLATE_ISA          (optional: also one copy per ISA)
 *     #include "fl_template.h"
 *     #else
 *     ... body using FL_REAL, FL_NAME(fn), FL_INAME(fn) ...
 *     #endif
 *
 * FL_NAME(fn) expands to fn_f32 or fn_f64, so both instantiations live side
 * by side in one translation unit.
 *
 * With FL_TEMPLATE_ISA, on x86-64 with GCC or Clang, each element type is
 * compiled three times: for the baseline ISA the build targets (_generic),
 * for AVX2+FMA (_avx2) and for AVX-512 (_avx512), and FL_INAME(fn) names the
 * copy (fn_f32_avx2, ...) and FL_VEC_BYTES is its vector width. The kernels pick a copy at run time from the CPU's
 * features (fl_isa() in seq.c), so one portable build runs at full width
 * wherever it lands. Elsewhere only _generic exists.
 */
#ifndef FL_TEMPLATE_FILE
#error "define FL_TEMPLATE_FILE before including fl_template.h"
#endif

#ifndef FL_TEMPLATE_H_MACROS
#define FL_TEMPLATE_H_MACROS
#define FL_CAT_(a, b) a##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FL_NAME(n) FL_CAT(n, FL_SUFFIX)
#define FL_INAME(n) FL_CAT(FL_NAME(n), FL_ISA)
#define FL_NAME_ISA(n, isa) FL_CAT(FL_NAME(n), isa)
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FL_NO_DISPATCH)
#define FL_X86_DISPATCH 1
#else
#define FL_X86_DISPATCH 0
#endif
#endif

#ifdef FL_TEMPLATE_ISA
#  define FL_TEMPLATE_PASSES 2
#else
#  define FL_TEMPLATE_PASSES 1
#endif

/* ---- float ---- */
#define FL_REAL float
#define FL_SUFFIX _f32
#define FL_IS_FLOAT 1
#include "fl_template_isa.h"
#undef FL_REAL
#undef FL_SUFFIX
#undef FL_IS_FLOAT

/* ---- double ---- */
#define FL_REAL double
#define FL_SUFFIX _f64
#define FL_IS_FLOAT 0
#include "fl_template_isa.h"
#undef FL_REAL
#undef FL_SUFFIX
#undef FL_IS_FLOAT

#undef FL_TEMPLATE_PASSES
#undef FL_TEMPLATE_ISA
#undef FL_TEMPLATE_FILE
