// tests/escape.rs (check_endless_command_line): the program binds /dev/zero over its own
// /proc/self/cmdline as soon as it runs, then ends cleanly. Init waits for the program's command line
// to read non-empty before it reports the start (spawn::child::await_command_line) and reads the
// file to its end: from then on it reads zeros without end, into its memory.
#include <stdio.h>
#include <sys/mount.h>
#include <time.h>
int main(void) {
    int bound = mount("/dev/zero", "/proc/self/cmdline", NULL, MS_BIND, NULL);
    printf("bound: %d\n", bound);
    fflush(stdout);
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    return 0;
}
