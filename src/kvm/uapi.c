/*
 * KVM ioctl numbers and layouts, taken from the kernel's uapi headers
 * compiled as C.
 *
 * Several KVM structures end in a flexible array declared with
 * __DECLARE_FLEX_ARRAY. In C++ that macro leaves an empty struct in front of
 * the array, which changes the structure's size and therefore the ioctl
 * numbers that encode it (KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2,
 * KVM_GET/SET_MSRS, KVM_GET/SET_XSAVE) and the offset of the array
 * (kvm_stats_desc's name). The values below are what the kernel expects.
 */
#include <linux/kvm.h>
#include <stddef.h>

const unsigned long dunk_kvm_get_supported_cpuid = KVM_GET_SUPPORTED_CPUID;
const unsigned long dunk_kvm_set_cpuid2 = KVM_SET_CPUID2;
const unsigned long dunk_kvm_get_msrs = KVM_GET_MSRS;
const unsigned long dunk_kvm_set_msrs = KVM_SET_MSRS;
const unsigned long dunk_kvm_get_xsave = KVM_GET_XSAVE;
const unsigned long dunk_kvm_set_xsave = KVM_SET_XSAVE;
const unsigned long dunk_kvm_get_xsave2 = KVM_GET_XSAVE2;

const unsigned long dunk_kvm_cpuid2_entries_offset = offsetof(struct kvm_cpuid2, entries);
const unsigned long dunk_kvm_msrs_entries_offset = offsetof(struct kvm_msrs, entries);
const unsigned long dunk_kvm_xsave_size = sizeof(struct kvm_xsave);
const unsigned long dunk_kvm_stats_desc_size = sizeof(struct kvm_stats_desc);
const unsigned long dunk_kvm_stats_desc_name_offset = offsetof(struct kvm_stats_desc, name);
