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
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <termios.h>
#include <unistd.h>

#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_io.h"

static int master_fd = -1;
static volatile int xon = 1;
static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t reset_requested;

static void uart_out_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
    unsigned char c = (unsigned char)value;
    (void)irq;
    (void)param;
    while (write(master_fd, &c, 1) < 0 && errno == EINTR) {
    }
}

static void xon_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    (void)param;
    xon = 1;
}

static void xoff_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    (void)param;
    xon = 0;
}

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
    uint32_t flags = 0;
    int opt, slave_fd;
    char name[256];
    struct termios tio;
    unsigned char pending[256];
    size_t npending = 0, ppos = 0;
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
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the process that started us */
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGUSR1, on_signal);
    signal(SIGPIPE, SIG_IGN);

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

    if (openpty(&master_fd, &slave_fd, name, NULL, NULL) != 0) {
        perror("simavr_host: openpty");
        return 2;
    }
    tcgetattr(slave_fd, &tio);
    cfmakeraw(&tio);
    tcsetattr(slave_fd, TCSANOW, &tio);
    /* slave_fd stays open: reads on the master never see EIO between clients */
    fcntl(master_fd, F_SETFL, fcntl(master_fd, F_GETFL) | O_NONBLOCK);
    if (link) {
        unlink(link);
        if (symlink(name, link) != 0) {
            perror("simavr_host: symlink");
            return 2;
        }
    }

    avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
    flags &= ~(uint32_t)(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
                            uart_out_hook, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
                            xon_hook, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
                            xoff_hook, NULL);
    uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);

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
            npending = ppos = 0;
            tcflush(master_fd, TCIFLUSH);
            printf("RESET\n");
            fflush(stdout);
        }
        if (ppos == npending) {
            ssize_t k = read(master_fd, pending, sizeof pending);
            npending = k > 0 ? (size_t)k : 0u;
            ppos = 0;
        }
        /* Bytes raised before the firmware enables the receiver (UCSR0B.RXEN0, data address
         * 0xC1 on the ATmega328P and 2560) would be lost: hold them until then. */
        while (ppos < npending && xon && (avr->data[0xC1] & 0x10u)) {
            avr_raise_irq(uart_in, pending[ppos++]);
        }
    }
    if (link) {
        unlink(link);
    }
    return 0;
}
