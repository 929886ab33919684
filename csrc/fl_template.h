/*
 * fl_template.h -- float and double from one source.
 *
 * A templated source file is written once in terms of FL_REAL and FL_NAME()
 * and instantiated for both element types by including itself through this
 * header:
 *
 *     #ifndef FL_REAL
 *     #define FL_TEMPLATE_FILE "lstm.c"
 *     #include "fl_template.h"
 *     #else
 *     ... body using FL_REAL, FL_NAME(fn) ...
 *     #endif
 *
 * FL_NAME(fn) expands to fn_f32 or fn_f64, so both instantiations live side
 * by side in one translation unit.
 */
#ifndef FL_TEMPLATE_FILE
#error "define FL_TEMPLATE_FILE before including fl_template.h"
#endif

#define FL_CAT_(a, b) a##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FL_NAME(n) FL_CAT(n, FL_SUFFIX)

#define FL_REAL float
#define FL_SUFFIX _f32
#define FL_IS_FLOAT 1
#include FL_TEMPLATE_FILE
#undef FL_REAL
#undef FL_SUFFIX
#undef FL_IS_FLOAT

#define FL_REAL double
#define FL_SUFFIX _f64
#define FL_IS_FLOAT 0
#include FL_TEMPLATE_FILE
#undef FL_REAL
#undef FL_SUFFIX
#undef FL_IS_FLOAT

#undef FL_TEMPLATE_FILE
