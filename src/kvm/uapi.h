// KVM ioctl numbers and layouts as C defines them; see uapi.c for why C++
// cannot compute them from <linux/kvm.h> itself.
#pragma once

extern "C" {
extern const unsigned long dunk_kvm_get_supported_cpuid;
extern const unsigned long dunk_kvm_set_cpuid2;
extern const unsigned long dunk_kvm_get_msrs;
extern const unsigned long dunk_kvm_set_msrs;
extern const unsigned long dunk_kvm_get_xsave;
extern const unsigned long dunk_kvm_set_xsave;
extern const unsigned long dunk_kvm_get_xsave2;
extern const unsigned long dunk_kvm_cpuid2_entries_offset;
extern const unsigned long dunk_kvm_msrs_entries_offset;
extern const unsigned long dunk_kvm_xsave_size;
extern const unsigned long dunk_kvm_stats_desc_size;
extern const unsigned long dunk_kvm_stats_desc_name_offset;
}
