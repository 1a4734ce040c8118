/* nRF51 HAL (BBC micro:bit v1: UART0 TX on P0.24, RX on P0.25, wired to the interface chip's
 * USB serial). Register-level, polled; addresses and values from the nRF51 Series Reference
 * Manual v3.0 (CLOCK section 13, GPIO section 14, UART section 29). The same image runs in
 * QEMU's microbit machine, which models UART0, GPIO and TIMER0 and ignores the CLOCK writes.
 *
 * Clock: HFCLK from the 16 MHz crystal (XTALFREQ = 16 MHz, TASKS_HFCLKSTART, bounded wait for
 * EVENTS_HFCLKSTARTED); the internal 16 MHz RC oscillator stays in use if the crystal does not
 * start. Baud: BAUDRATE = 0x01D7E000 (the manual's value for 115200). */
#include "ech_hal.h"
#include "ech_hal_config.h"
#include "ech_mmio.h"

/* CLOCK, base 0x40000000 */
#define CLOCK_TASKS_HFCLKSTART 0x40000000ul
#define CLOCK_EVENTS_HFCLKSTARTED 0x40000100ul
#define CLOCK_XTALFREQ 0x40000550ul
#define CLOCK_XTALFREQ_16MHZ 0xFFul

/* GPIO, base 0x50000000 */
#define GPIO_OUTSET 0x50000508ul
#define GPIO_PIN_CNF(n) (0x50000700ul + 4ul * (uint32_t)(n))
#define GPIO_CNF_OUTPUT 1ul /* DIR = output, input buffer connected, no pull, S0S1 */
#define GPIO_CNF_INPUT 0ul  /* DIR = input, input buffer connected, no pull */

/* UART0, base 0x40002000 */
#define UART0_TASKS_STARTRX 0x40002000ul
#define UART0_TASKS_STARTTX 0x40002008ul
#define UART0_EVENTS_RXDRDY 0x40002108ul
#define UART0_EVENTS_TXDRDY 0x4000211Cul
#define UART0_ENABLE 0x40002500ul
#define UART0_PSELRTS 0x40002508ul
#define UART0_PSELTXD 0x4000250Cul
#define UART0_PSELCTS 0x40002510ul
#define UART0_PSELRXD 0x40002514ul
#define UART0_RXD 0x40002518ul
#define UART0_TXD 0x4000251Cul
#define UART0_BAUDRATE 0x40002524ul
#define UART0_CONFIG 0x4000256Cul
#define UART_ENABLE_ON 4ul
#define UART_BAUD_115200 0x01D7E000ul
#define UART_PSEL_NONE 0xFFFFFFFFul

#define ECH_TX_PIN 24u
#define ECH_RX_PIN 25u

static void ech_clock_init(void)
{
    ECH_MMIO_WR(CLOCK_XTALFREQ, CLOCK_XTALFREQ_16MHZ);
    ECH_MMIO_WR(CLOCK_EVENTS_HFCLKSTARTED, 0ul);
    ECH_MMIO_WR(CLOCK_TASKS_HFCLKSTART, 1ul);
    (void)ech_wait_bits(CLOCK_EVENTS_HFCLKSTARTED, 1ul, 1ul);
}

static void ech_pins_init(void)
{
    /* The manual (section 29.2): TXD an output driven high while idle, RXD an input. */
    ECH_MMIO_WR(GPIO_OUTSET, 1ul << ECH_TX_PIN);
    ECH_MMIO_WR(GPIO_PIN_CNF(ECH_TX_PIN), GPIO_CNF_OUTPUT);
    ECH_MMIO_WR(GPIO_PIN_CNF(ECH_RX_PIN), GPIO_CNF_INPUT);
}

static void ech_uart_init(void)
{
    ECH_MMIO_WR(UART0_PSELRTS, UART_PSEL_NONE);
    ECH_MMIO_WR(UART0_PSELCTS, UART_PSEL_NONE);
    ECH_MMIO_WR(UART0_PSELTXD, ECH_TX_PIN);
    ECH_MMIO_WR(UART0_PSELRXD, ECH_RX_PIN);
    ECH_MMIO_WR(UART0_CONFIG, 0ul); /* no flow control, no parity */
    ECH_MMIO_WR(UART0_BAUDRATE, UART_BAUD_115200);
    ECH_MMIO_WR(UART0_ENABLE, UART_ENABLE_ON);
    ECH_MMIO_WR(UART0_EVENTS_RXDRDY, 0ul);
    ECH_MMIO_WR(UART0_EVENTS_TXDRDY, 0ul);
    ECH_MMIO_WR(UART0_TASKS_STARTRX, 1ul);
    ECH_MMIO_WR(UART0_TASKS_STARTTX, 1ul);
}

void ech_hal_init(void)
{
    ech_clock_init();
    ech_pins_init();
    ech_uart_init();
    ech_cycles_start();
}

int ech_hal_getc(void)
{
    while (ECH_MMIO_RD(UART0_EVENTS_RXDRDY) == 0u) {
    }
    ECH_MMIO_WR(UART0_EVENTS_RXDRDY, 0ul); /* clear before reading RXD (manual section 29.5) */
    return (int)(ECH_MMIO_RD(UART0_RXD) & 0xFFu);
}

void ech_hal_putc(uint8_t byte)
{
    ECH_MMIO_WR(UART0_TXD, byte);
    while (ECH_MMIO_RD(UART0_EVENTS_TXDRDY) == 0u) {
    }
    ECH_MMIO_WR(UART0_EVENTS_TXDRDY, 0ul);
}

void ech_hal_flush(void)
{
}
