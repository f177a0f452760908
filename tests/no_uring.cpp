// Test helper: runs a program with io_uring_setup refused, as a seccomp or container policy
// would (Docker's default profile does this), to check that weft names the cause clearly.
//
//   no_uring ERRNO PROGRAM [ARGS...]      e.g. no_uring EPERM ./loops
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s EPERM|ENOSYS|ENOMEM PROGRAM [ARGS...]\n", argv[0]);
    return 2;
  }
  int err = 0;
  if (std::strcmp(argv[1], "EPERM") == 0) err = EPERM;
  if (std::strcmp(argv[1], "ENOSYS") == 0) err = ENOSYS;
  if (std::strcmp(argv[1], "ENOMEM") == 0) err = ENOMEM;
  if (err == 0) {
    std::fprintf(stderr, "%s: unknown errno name '%s'\n", argv[0], argv[1]);
    return 2;
  }
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | static_cast<unsigned>(err)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    std::perror("no_uring: installing the seccomp filter");
    return 1;
  }
  execv(argv[2], argv + 2);
  std::perror("no_uring: exec");
  return 127;
}
