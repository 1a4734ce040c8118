/* uno_optiboot_host: an Arduino Uno (ATmega328P, 16 MHz) running its Optiboot bootloader in
 * libsimavr, with UART0 on a pseudo-terminal, so that the real avrdude can program it over the
 * STK500 protocol (avrdude -c arduino -P <pty>), exactly like a board on a USB serial port.
 *
 *   uno_optiboot_host [-l LINK] [-d DUMP] [-t SECONDS] OPTIBOOT.hex
 *
 * Like a real Uno, opening the port resets the chip into the bootloader (the pty slave is
 * watched with inotify, standing in for DTR). While the program counter is in the boot section
 * the simulation is paced to real time, else the loader's ~1 s window would pass before avrdude
 * syncs. Optiboot stays in the loader only after an external reset: EXTRF is set in MCUSR on
 * every reset made here; its watchdog reset then starts the application.
 *
 * Event lines on stdout, one per line:
 *   PTY <path>     the pty slave (-l also makes a symlink LINK to it)
 *   READY          the simulation runs, the bootloader is waiting
 *   RESET          the port was opened: reset into the bootloader
 *   APP_START      the bootloader jumped to the application (address 0), once per reset
 *   DUMP <path>    on SIGUSR1 with -d: the whole flash was written to DUMP (binary)
 *   EXIT <reason>  the simulation stopped (signal, timeout, crashed)
 * Built by edgecompile.targets.flash on first use and cached. */
#define _DEFAULT_SOURCE 1
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "sim_hex.h"
#include "simavr_uart_pty.h"

#define UNO_HZ 16000000ul
#define BOOT_START 0x7E00u    /* Optiboot: the last 512 bytes of the ATmega328P's flash */
#define MCUSR_ADDR 0x54u      /* MCUSR in data space (I/O 0x34) */
#define MCUSR_EXTRF 0x02u
#define PACE_SLACK_NS 2000000ll /* sleep when simulated time runs this far ahead */

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t dump_requested;

static void on_signal(int sig)
{
    if (sig == SIGUSR1) {
        dump_requested = 1;
    } else {
        stop_signal = sig;
    }
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void event(const char *what, const char *arg)
{
    if (arg) {
        printf("%s %s\n", what, arg);
    } else {
        printf("%s\n", what);
    }
    fflush(stdout);
}

/* "Reset button": into the bootloader, which stays there because EXTRF is set. */
static void external_reset(avr_t *avr)
{
    avr_reset(avr);
    avr->pc = BOOT_START;
    avr->data[MCUSR_ADDR] |= MCUSR_EXTRF;
    uart_flags(avr);
}

static int load_bootloader(avr_t *avr, const char *path)
{
    ihex_chunk_p chunks = NULL;
    int i, n = read_ihex_chunks(path, &chunks);
    if (n <= 0) {
        return -1;
    }
    for (i = 0; i < n; ++i) {
        if (chunks[i].baseaddr < BOOT_START || chunks[i].baseaddr + chunks[i].size > avr->flashend + 1u) {
            fprintf(stderr, "uno_optiboot_host: %s has data at 0x%04x, outside the boot section\n",
                    path, (unsigned)chunks[i].baseaddr);
            free_ihex_chunks(chunks);
            return -1;
        }
        memcpy(avr->flash + chunks[i].baseaddr, chunks[i].data, chunks[i].size);
    }
    free_ihex_chunks(chunks);
    return 0;
}

static int dump_flash(const avr_t *avr, const char *path)
{
    FILE *f = fopen(path, "wb");
    size_t n = (size_t)avr->flashend + 1u;
    if (!f) {
        return -1;
    }
    if (fwrite(avr->flash, 1, n, f) != n) {
        fclose(f);
        return -1;
    }
    return fclose(f);
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-l link] [-d dump.bin] [-t seconds] optiboot.hex\n", argv0);
}

int main(int argc, char **argv)
{
    const char *link = NULL, *dump = NULL;
    double max_seconds = 0.0;
    avr_t *avr;
    avr_irq_t *uart_in;
    int opt, slave_fd = -1, ino_fd;
    char name[256];
    struct uart_backlog backlog = {{0}, 0, 0};
    unsigned long loops = 0;
    long long start_ns, base_ns;
    avr_cycle_count_t base_cycle;
    int in_boot = 1;
    int app_reported = 0; /* APP_START once per reset (erased flash runs back into the loader) */

    while ((opt = getopt(argc, argv, "l:d:t:")) != -1) {
        if (opt == 'l') {
            link = optarg;
        } else if (opt == 'd') {
            dump = optarg;
        } else if (opt == 't') {
            max_seconds = atof(optarg);
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(argv[0]);
        return 2;
    }
    install_signals(on_signal);

    avr = avr_make_mcu_by_name("atmega328p");
    if (!avr) {
        fprintf(stderr, "uno_optiboot_host: libsimavr has no atmega328p\n");
        return 2;
    }
    avr_init(avr);
    avr->log = 0;
    avr->frequency = UNO_HZ;
    memset(avr->flash, 0xFF, (size_t)avr->flashend + 1u); /* erased flash: no application */
    if (load_bootloader(avr, argv[optind]) != 0) {
        fprintf(stderr, "uno_optiboot_host: cannot load %s\n", argv[optind]);
        return 2;
    }
    avr->codeend = avr->flashend;
    avr->reset_pc = BOOT_START; /* the BOOTRST fuse */

    slave_fd = pty_open(name, NULL, "uno_optiboot_host");
    if (slave_fd < 0) {
        return 2;
    }
    /* The slave is closed again: while no client has it open, nobody "uses" the port (a busy
     * check sees only real clients); the master then reads EIO, treated as "no input". */
    close(slave_fd);
    ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ino_fd < 0 || inotify_add_watch(ino_fd, name, IN_OPEN) < 0) {
        perror("uno_optiboot_host: inotify");
        return 2;
    }
    if (link) { /* only after inotify watches the pty: an open through the link is seen */
        unlink(link);
        if (symlink(name, link) != 0) {
            perror("uno_optiboot_host: symlink");
            return 2;
        }
    }
    uart_in = uart_attach(avr);

    external_reset(avr);
    start_ns = base_ns = now_ns();
    base_cycle = avr->cycle;
    event("PTY", name);
    event("READY", NULL);

    for (;;) {
        int state = avr_run(avr);
        int boot_now;
        if (state == cpu_Done || state == cpu_Crashed) {
            event("EXIT", state == cpu_Done ? "done" : "crashed");
            break;
        }
        boot_now = avr->pc >= BOOT_START;
        if (boot_now != in_boot) {
            in_boot = boot_now;
            if (!boot_now && avr->pc == 0u && !app_reported) {
                app_reported = 1;
                event("APP_START", NULL);
            }
            if (boot_now) { /* back in the loader (watchdog reset): pace from here */
                base_ns = now_ns();
                base_cycle = avr->cycle;
            }
        }
        if ((++loops & 1023ul) != 0ul) {
            continue;
        }
        if (stop_signal) {
            char why[32];
            snprintf(why, sizeof why, "signal %d", (int)stop_signal);
            event("EXIT", why);
            break;
        }
        if (dump_requested) {
            dump_requested = 0;
            if (dump && dump_flash(avr, dump) == 0) {
                event("DUMP", dump);
            } else {
                event("DUMP", "failed");
            }
        }
        {
            char buf[4096];
            ssize_t k = read(ino_fd, buf, sizeof buf);
            if (k > 0) { /* the port was opened: like DTR on a real Uno */
                tcflush(master_fd, TCIOFLUSH); /* stale bytes both ways */
                backlog.count = backlog.next = 0;
                external_reset(avr);
                in_boot = 1;
                app_reported = 0;
                base_ns = now_ns();
                base_cycle = avr->cycle;
                event("RESET", NULL);
                continue;
            }
        }
        if (in_boot) {
            long long sim_ns = (long long)((avr->cycle - base_cycle) * 1000ull / (UNO_HZ / 1000000ul));
            long long ahead = sim_ns - (now_ns() - base_ns);
            if (ahead > PACE_SLACK_NS) {
                struct timespec ts;
                ts.tv_sec = (time_t)(ahead / 1000000000ll);
                ts.tv_nsec = (long)(ahead % 1000000000ll);
                nanosleep(&ts, NULL);
            }
        }
        if (max_seconds > 0.0 && (double)(now_ns() - start_ns) > max_seconds * 1e9) {
            event("EXIT", "timeout");
            break;
        }
        uart_feed(uart_in, &backlog, 1);
    }
    if (link) { /* only our own link: a later run may have reused the name */
        char target[256];
        ssize_t k = readlink(link, target, sizeof target - 1u);
        if (k > 0) {
            target[k] = '\0';
            if (strcmp(target, name) == 0) {
                unlink(link);
            }
        }
    }
    return 0;
}
