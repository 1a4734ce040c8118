/* simavr_host: run an AVR firmware ELF in libsimavr with UART0 bridged to a pseudo-terminal.
 *
 *   simavr_host [-m MCU] [-f HZ] [-l LINK] FIRMWARE.elf
 *
 * Event lines on stdout, one per line, for the host to wait on:
 *   PTY <path>      the pty slave to open with pyserial (unique per run; -l adds a symlink)
 *   READY           the simulation is running and the UART is bridged
 *   RESET           the core was reset (on SIGUSR1: a test of reset detection)
 *   EXIT <reason>   the simulation stopped (signal, cpu_Done, cpu_Crashed)
 * Input respects the simulated UART's XON/XOFF (its receive FIFO holds 64 bytes).
 * Built by edgecompile.link.emulators on first use and cached. */
#define _DEFAULT_SOURCE 1
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "sim_elf.h"
#include "simavr_uart_pty.h"

#define UCSR0B_ADDR 0xC1u /* UCSR0B in data space on the ATmega328P and 2560 */
#define UCSR0B_RXEN 0x10u

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t reset_requested;

static void on_signal(int sig)
{
    if (sig == SIGUSR1) {
        reset_requested = 1;
    } else {
        stop_signal = sig;
    }
}

int main(int argc, char **argv)
{
    const char *mcu = "atmega328p";
    unsigned long freq = 16000000ul;
    const char *link = NULL;
    const char *elf;
    elf_firmware_t fw;
    avr_t *avr;
    avr_irq_t *uart_in;
    int opt;
    char name[256];
    struct uart_backlog backlog = {{0}, 0, 0};
    unsigned long loops = 0;

    while ((opt = getopt(argc, argv, "m:f:l:")) != -1) {
        if (opt == 'm') {
            mcu = optarg;
        } else if (opt == 'f') {
            freq = strtoul(optarg, NULL, 10);
        } else if (opt == 'l') {
            link = optarg;
        } else {
            fprintf(stderr, "usage: %s [-m mcu] [-f hz] [-l link] firmware.elf\n", argv[0]);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: %s [-m mcu] [-f hz] [-l link] firmware.elf\n", argv[0]);
        return 2;
    }
    elf = argv[optind];
    install_signals(on_signal);

    memset(&fw, 0, sizeof fw);
    if (elf_read_firmware(elf, &fw) != 0) {
        fprintf(stderr, "simavr_host: cannot read %s\n", elf);
        return 2;
    }
    avr = avr_make_mcu_by_name(mcu);
    if (!avr) {
        fprintf(stderr, "simavr_host: unknown mcu %s\n", mcu);
        return 2;
    }
    avr_init(avr);
    avr->log = 0;
    fw.frequency = (uint32_t)freq;
    avr_load_firmware(avr, &fw);
    avr->frequency = (uint32_t)freq;

    /* The slave fd stays open: reads on the master never see EIO between clients. */
    if (pty_open(name, link, "simavr_host") < 0) {
        return 2;
    }
    uart_in = uart_attach(avr);

    printf("PTY %s\nREADY\n", name);
    fflush(stdout);

    for (;;) {
        int state = avr_run(avr);
        if (state == cpu_Done || state == cpu_Crashed) {
            printf("EXIT %s\n", state == cpu_Done ? "done" : "crashed");
            fflush(stdout);
            break;
        }
        if ((++loops & 4095ul) != 0ul) {
            continue;
        }
        if (stop_signal) {
            printf("EXIT signal %d\n", (int)stop_signal);
            fflush(stdout);
            break;
        }
        if (reset_requested) {
            reset_requested = 0;
            avr_reset(avr);
            backlog.count = backlog.next = 0;
            tcflush(master_fd, TCIFLUSH);
            printf("RESET\n");
            fflush(stdout);
        }
        /* Bytes raised before the firmware enables its receiver would be lost: hold them. */
        uart_feed(uart_in, &backlog, (avr->data[UCSR0B_ADDR] & UCSR0B_RXEN) != 0u);
    }
    if (link) {
        unlink(link);
    }
    return 0;
}
