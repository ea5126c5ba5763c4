/*
 * libdune/elf.h - the ELF format's types and constants. Dune shipped a copy
 * of the C library's <elf.h>; this is the C library's own.
 */
#include_next <elf.h>
