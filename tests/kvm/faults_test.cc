// Section 5: an exception the program does not handle ends it as it would
// natively, and the parent sees the signal in the exit status.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "dunk/dunk.h"
#include "support.h"

namespace dunk {
namespace {

// Runs `body` in a child that entered VM mode first; returns its wait status.
int status_of_child_in_vm(void (*body)()) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!enter() || !in_vm()) _exit(100);
    body();
    _exit(101);  // the fault did not end the program
  }
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

void expect_killed_by(int status, int signal) {
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status << " (exit code " << WEXITSTATUS(status) << ")";
  EXPECT_EQ(WTERMSIG(status), signal) << strsignal(WTERMSIG(status));
}

TEST(Faults, Ud2IsSigill) {
  expect_killed_by(status_of_child_in_vm([] { asm volatile("ud2"); }), SIGILL);
}

TEST(Faults, Int3IsSigtrap) {
  expect_killed_by(status_of_child_in_vm([] { asm volatile("int3"); }), SIGTRAP);
}

TEST(Faults, IntegerDivideByZeroIsSigfpe) {
  expect_killed_by(status_of_child_in_vm([] {
                     volatile int zero = 0;
                     volatile int x = 7 / zero;
                     (void)x;
                   }),
                   SIGFPE);
}

TEST(Faults, NullDereferenceIsSigsegv) {
  expect_killed_by(status_of_child_in_vm([] { *static_cast<volatile int*>(nullptr) = 1; }), SIGSEGV);
}

TEST(Faults, AbortIsSigabrt) {
  expect_killed_by(status_of_child_in_vm([] { std::abort(); }), SIGABRT);
}

TEST(Faults, PrivilegedInstructionHltIsSigsegv) {
  // Natively HLT raises #GP in user mode; in VM mode it would halt the vCPU.
  expect_killed_by(status_of_child_in_vm([] { asm volatile("hlt"); }), SIGSEGV);
}

TEST(Faults, NonCanonicalAddressIsSigsegv) {
  expect_killed_by(status_of_child_in_vm([] { *reinterpret_cast<volatile int*>(0x8000'0000'0000'1000) = 1; }),
                   SIGSEGV);
}

TEST(Faults, ExitStatusPassesThrough) {
  int status = status_of_child_in_vm([] { std::exit(42); });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 42);
}

}  // namespace
}  // namespace dunk
