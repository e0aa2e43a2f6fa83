// ST_AVX512VNNI_BEGIN / ST_AVX512VNNI_END: enable AVX512-VNNI for the
// functions between them. Highway 1.0.3's AVX3_DL target string names
// "avxvnni" instead of "avx512vnni" (its run-time check does require
// AVX512-VNNI), so AVX3_DL kernels that use dpbusd on 512-bit registers
// wrap themselves in these.
#pragma once

#if defined(__clang__)
#define ST_AVX512VNNI_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx512vnni\"))), apply_to = function)")
#define ST_AVX512VNNI_END _Pragma("clang attribute pop")
#else
#define ST_AVX512VNNI_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512vnni\")")
#define ST_AVX512VNNI_END _Pragma("GCC pop_options")
#endif
