/* simavr_uart_pty.h: UART0 of a libsimavr chip on a pseudo-terminal, shared by the host
 * programs in this folder (simavr_host.c runs an application, uno_optiboot_host.c a bootloader).
 *
 * Output bytes go to the pty master as the firmware sends them; input bytes are raised into
 * the simulated UART only while it signals XON (its receive FIFO holds just 64 bytes).
 * Header-only: each program includes it once. */
#ifndef SIMAVR_UART_PTY_H
#define SIMAVR_UART_PTY_H

#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <termios.h>
#include <unistd.h>

#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_io.h"

static int master_fd = -1;
static volatile int xon = 1;

/* Bytes read from the pty and not yet raised into the UART. */
struct uart_backlog {
    unsigned char bytes[256];
    size_t count, next;
};

static void uart_out_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
    unsigned char c = (unsigned char)value;
    (void)irq;
    (void)param;
    /* Nobody reading: the byte is dropped rather than stalling the simulation. */
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

/* Never outlive the starting process; route stop/reset signals to `handler`. */
static void install_signals(void (*handler)(int))
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGTERM, handler);
    signal(SIGINT, handler);
    signal(SIGHUP, handler);
    signal(SIGUSR1, handler);
    signal(SIGPIPE, SIG_IGN);
}

/* No stdio echo, no sleeping while polling: set again after every avr_reset(). */
static void uart_flags(avr_t *avr)
{
    uint32_t flags = 0;
    avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
    flags &= ~(uint32_t)(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
}

/* Hook UART0 to the pty master; returns the UART's input IRQ. */
static avr_irq_t *uart_attach(avr_t *avr)
{
    uart_flags(avr);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
                            uart_out_hook, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
                            xon_hook, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
                            xoff_hook, NULL);
    return avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
}

/* Open a raw pty (path into name[256]), non-blocking master, optional symlink `link` to it.
 * Returns the slave fd (the caller keeps or closes it), or -1 after printing why. */
static int pty_open(char *name, const char *link, const char *who)
{
    struct termios tio;
    int slave_fd;
    if (openpty(&master_fd, &slave_fd, name, NULL, NULL) != 0) {
        fprintf(stderr, "%s: openpty: %s\n", who, strerror(errno));
        return -1;
    }
    tcgetattr(slave_fd, &tio);
    cfmakeraw(&tio);
    tcsetattr(slave_fd, TCSANOW, &tio);
    fcntl(master_fd, F_SETFL, fcntl(master_fd, F_GETFL) | O_NONBLOCK);
    if (link) {
        unlink(link);
        if (symlink(name, link) != 0) {
            fprintf(stderr, "%s: symlink %s: %s\n", who, link, strerror(errno));
            return -1;
        }
    }
    return slave_fd;
}

/* Move pty input into the UART while it says XON and `receiving` is true. */
static void uart_feed(avr_irq_t *uart_in, struct uart_backlog *in, int receiving)
{
    if (in->next == in->count) {
        ssize_t k = read(master_fd, in->bytes, sizeof in->bytes);
        in->count = k > 0 ? (size_t)k : 0u;
        in->next = 0;
    }
    while (in->next < in->count && xon && receiving) {
        avr_raise_irq(uart_in, in->bytes[in->next++]);
    }
}

#endif /* SIMAVR_UART_PTY_H */
