/*
 * fl_template_isa.h -- one element type's instantiations of FL_TEMPLATE_FILE
 * (see fl_template.h): the baseline copy, and with FL_TEMPLATE_ISA on x86-64
 * the AVX2+FMA and AVX-512 copies. No include guard: included once per type.
 */
#define FL_ISA _generic
#define FL_VEC_BYTES 16
#include FL_TEMPLATE_FILE
#undef FL_ISA
#undef FL_VEC_BYTES
#if FL_TEMPLATE_PASSES == 2 && FL_X86_DISPATCH
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FL_ISA _avx2
#define FL_VEC_BYTES 32
#include FL_TEMPLATE_FILE
#undef FL_ISA
#undef FL_VEC_BYTES
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#define FL_ISA _avx512
#define FL_VEC_BYTES 64
#include FL_TEMPLATE_FILE
#undef FL_ISA
#undef FL_VEC_BYTES
#pragma GCC pop_options
#endif
