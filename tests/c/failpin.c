/* Fault injection for tests/test_native_bench.py, preloaded (LD_PRELOAD) into
   numa-shard-bench: sched_setaffinity fails with EINVAL in every thread but the main one,
   as it does for a CPU taken offline or out of the cpuset after the tool checked its
   allowed set. No real kernel can be made to lose a CPU at that very moment on demand. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

int sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *set) {
    int (*real)(pid_t, size_t, const cpu_set_t *) = (int (*)(pid_t, size_t, const cpu_set_t *))dlsym(RTLD_NEXT, "sched_setaffinity");
    if (syscall(SYS_gettid) != getpid()) {
        errno = EINVAL;
        return -1;
    }
    return real(pid, size, set);
}
