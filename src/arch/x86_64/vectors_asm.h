// The facts of vectors.h that assembly needs, as preprocessor macros: which
// vectors the CPU pushes an error code for (Intel SDM vol. 3A Table 6-1,
// "Protected-Mode Exceptions and Interrupts"; AMD APM vol. 2 Table 8-1 for
// #VC and #SX). vectors.h checks the macro against its table for all 256
// vectors, so the IDT stubs (src/guest/idt_stubs.S) and C++ cannot disagree.
#pragma once

// #DF(8), #TS(10), #NP(11), #SS(12), #GP(13), #PF(14), #AC(17), #CP(21),
// #VC(29), #SX(30).
#define ARCH_VECTOR_HAS_ERROR_CODE(v) \
  ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)
