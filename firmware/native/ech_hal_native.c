/* Native (POSIX host process) HAL.
 * Default: opens a pseudo-terminal, prints "PTY <path>" and "READY" on stdout, and serves the
 * protocol on it, so pyserial opens it like a board. With ECH_NATIVE_STDIO=1 in the environment
 * it serves stdin/stdout instead (fuzzing, pipes) and exits at end of input.
 * Cycles: CLOCK_MONOTONIC nanoseconds. */
#define _DEFAULT_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <pty.h>
#include <sys/prctl.h>
#else
#include <util.h>
#endif

#include "ech_hal.h"
#include "ech_proto.h"

static int in_fd = 0;
static int out_fd = 1;
static unsigned char rbuf[256];
static size_t rlen, rpos;
static unsigned char wbuf[512];
static size_t wlen;

static void write_all(const unsigned char *p, size_t n)
{
    while (n > 0u) {
        ssize_t k = write(out_fd, p, n);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            exit(3);
        }
        p += k;
        n -= (size_t)k;
    }
}

void ech_hal_init(void)
{
    const char *mode = getenv("ECH_NATIVE_STDIO");
#if defined(__linux__)
    (void)prctl(PR_SET_PDEATHSIG, SIGTERM); /* no orphan when the host process dies */
#endif
    signal(SIGPIPE, SIG_IGN);
    if (mode == NULL || strcmp(mode, "1") != 0) {
        int master, slave;
        struct termios tio;
        char name[128];
        if (openpty(&master, &slave, name, NULL, NULL) != 0) {
            perror("openpty");
            exit(2);
        }
        tcgetattr(slave, &tio);
        cfmakeraw(&tio);
        tcsetattr(slave, TCSANOW, &tio);
        /* Keep the slave open ourselves: the master then never reads EIO between clients. */
        in_fd = master;
        out_fd = master;
        printf("PTY %s\nREADY\n", name);
        fflush(stdout);
    }
}

int ech_hal_getc(void)
{
    while (rpos == rlen) {
        ssize_t k = read(in_fd, rbuf, sizeof rbuf);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return -1;
        }
        rlen = (size_t)k;
        rpos = 0u;
    }
    return (int)rbuf[rpos++];
}

void ech_hal_flush(void)
{
    write_all(wbuf, wlen);
    wlen = 0u;
}

void ech_hal_putc(uint8_t byte)
{
    if (wlen == sizeof wbuf) {
        ech_hal_flush();
    }
    wbuf[wlen++] = byte;
}

uint32_t ech_cycles_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
}

uint32_t ech_cycles_elapsed(uint32_t start, uint32_t end)
{
    return end - start;
}

uint8_t ech_cycles_source(void)
{
    return (uint8_t)ECH_CYCLES_POSIX_NS;
}

uint32_t ech_cycles_hz(void)
{
    return 1000000000ul;
}
