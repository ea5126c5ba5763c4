// The host filter's BPF program (src/sandbox/host_layer.h), built with
// libseccomp, which only the command line links.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dunk::cli {

// A program that lets `calls` (x86-64 numbers) run and kills the process
// (SIGSYS) at any other call, or any call of another ABI; with `log`, it
// logs those to the kernel's audit log instead and lets them run (the test
// build's measurement). struct sock_filter's 8 bytes each; empty, with
// `why`, when libseccomp refuses.
std::vector<std::uint64_t> host_filter_program(const std::vector<int>& calls, bool log, std::string& why);

}  // namespace dunk::cli
