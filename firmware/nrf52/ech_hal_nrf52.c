/* nRF52 HAL (Arduino Nano 33 BLE: UARTE0 with TX on P1.03 = pin D1, RX on P1.10 = pin D0,
 * through a 3.3 V USB-serial adapter; the board's native USB port is not used by this bare-metal
 * harness). Register-level; addresses and values from the nRF52840 Product Specification v1.7
 * (CLOCK 6.4, GPIO 6.9, UARTE 6.34). No emulator models this chip: built, not run, here.
 *
 * UARTE moves data with EasyDMA, so every byte goes through a RAM buffer:
 * - receive: RXD.MAXCNT = 1; after each ENDRX the byte is taken and STARTRX re-armed. The host
 *   sends a frame and then waits for the reply, and the work on a byte is short next to the
 *   87 us a byte takes at 115200 baud; the receiver keeps shifting in the next byte meanwhile;
 * - transmit: bytes are gathered in a buffer and sent with one STARTTX per 64 bytes or per reply.
 * Clock: HFXO started (TASKS_HFCLKSTART, bounded wait for EVENTS_HFCLKSTARTED); the core runs at
 * 64 MHz either way. Baud: BAUDRATE = 0x01D60000, the UARTE table's value for 115200. */
#include "ech_hal.h"
#include "ech_hal_config.h"
#include "ech_mmio.h"

/* CLOCK, base 0x40000000 */
#define CLOCK_TASKS_HFCLKSTART 0x40000000ul
#define CLOCK_EVENTS_HFCLKSTARTED 0x40000100ul

/* GPIO port P1, base 0x50000300 */
#define P1_OUTSET 0x50000808ul
#define P1_PIN_CNF(n) (0x50000A00ul + 4ul * (uint32_t)(n))
#define GPIO_CNF_OUTPUT 1ul /* DIR = output, input buffer connected, no pull, S0S1 */
#define GPIO_CNF_INPUT 0ul  /* DIR = input, input buffer connected, no pull */

/* UARTE0, base 0x40002000 */
#define UARTE0_TASKS_STARTRX 0x40002000ul
#define UARTE0_TASKS_STARTTX 0x40002008ul
#define UARTE0_EVENTS_ENDRX 0x40002110ul
#define UARTE0_EVENTS_ENDTX 0x40002120ul
#define UARTE0_ENABLE 0x40002500ul
#define UARTE0_PSEL_RTS 0x40002508ul
#define UARTE0_PSEL_TXD 0x4000250Cul
#define UARTE0_PSEL_CTS 0x40002510ul
#define UARTE0_PSEL_RXD 0x40002514ul
#define UARTE0_BAUDRATE 0x40002524ul
#define UARTE0_RXD_PTR 0x40002534ul
#define UARTE0_RXD_MAXCNT 0x40002538ul
#define UARTE0_TXD_PTR 0x40002544ul
#define UARTE0_TXD_MAXCNT 0x40002548ul
#define UARTE0_CONFIG 0x4000256Cul
#define UARTE_ENABLE_ON 8ul
#define UARTE_BAUD_115200 0x01D60000ul
#define UARTE_PSEL_NONE 0xFFFFFFFFul /* CONNECT = 1: disconnected */
#define UARTE_PSEL(port, pin) (((uint32_t)(port) << 5) | (uint32_t)(pin))

#define ECH_TX_PIN 3u  /* P1.03 */
#define ECH_RX_PIN 10u /* P1.10 */
#define ECH_TX_BUF 64u

static volatile uint8_t ech_rx_byte;
static volatile uint8_t ech_tx_buf[ECH_TX_BUF];
static uint8_t ech_tx_len;

static uint32_t ech_ram_addr(const volatile void *p)
{
    return (uint32_t)(uintptr_t)p;
}

static void ech_clock_init(void)
{
    ECH_MMIO_WR(CLOCK_EVENTS_HFCLKSTARTED, 0ul);
    ECH_MMIO_WR(CLOCK_TASKS_HFCLKSTART, 1ul);
    (void)ech_wait_bits(CLOCK_EVENTS_HFCLKSTARTED, 1ul, 1ul);
}

static void ech_pins_init(void)
{
    ECH_MMIO_WR(P1_OUTSET, 1ul << ECH_TX_PIN); /* TXD idles high */
    ECH_MMIO_WR(P1_PIN_CNF(ECH_TX_PIN), GPIO_CNF_OUTPUT);
    ECH_MMIO_WR(P1_PIN_CNF(ECH_RX_PIN), GPIO_CNF_INPUT);
}

static void ech_uart_init(void)
{
    ECH_MMIO_WR(UARTE0_PSEL_RTS, UARTE_PSEL_NONE);
    ECH_MMIO_WR(UARTE0_PSEL_CTS, UARTE_PSEL_NONE);
    ECH_MMIO_WR(UARTE0_PSEL_TXD, UARTE_PSEL(1u, ECH_TX_PIN));
    ECH_MMIO_WR(UARTE0_PSEL_RXD, UARTE_PSEL(1u, ECH_RX_PIN));
    ECH_MMIO_WR(UARTE0_CONFIG, 0ul); /* no flow control, no parity, one stop bit */
    ECH_MMIO_WR(UARTE0_BAUDRATE, UARTE_BAUD_115200);
    ECH_MMIO_WR(UARTE0_ENABLE, UARTE_ENABLE_ON);
    ECH_MMIO_WR(UARTE0_RXD_PTR, ech_ram_addr(&ech_rx_byte));
    ECH_MMIO_WR(UARTE0_RXD_MAXCNT, 1ul);
    ECH_MMIO_WR(UARTE0_EVENTS_ENDRX, 0ul);
    ECH_MMIO_WR(UARTE0_TASKS_STARTRX, 1ul);
    ech_tx_len = 0u;
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
    uint8_t b;
    while (ECH_MMIO_RD(UARTE0_EVENTS_ENDRX) == 0u) {
    }
    ECH_MMIO_WR(UARTE0_EVENTS_ENDRX, 0ul);
    b = ech_rx_byte;
    ECH_MMIO_WR(UARTE0_TASKS_STARTRX, 1ul);
    return (int)b;
}

static void ech_tx_send(void)
{
    if (ech_tx_len == 0u) {
        return;
    }
    ECH_MMIO_WR(UARTE0_TXD_PTR, ech_ram_addr(ech_tx_buf));
    ECH_MMIO_WR(UARTE0_TXD_MAXCNT, ech_tx_len);
    ECH_MMIO_WR(UARTE0_EVENTS_ENDTX, 0ul);
    ECH_MMIO_WR(UARTE0_TASKS_STARTTX, 1ul);
    while (ECH_MMIO_RD(UARTE0_EVENTS_ENDTX) == 0u) {
    }
    ECH_MMIO_WR(UARTE0_EVENTS_ENDTX, 0ul);
    ech_tx_len = 0u;
}

void ech_hal_putc(uint8_t byte)
{
    ech_tx_buf[ech_tx_len] = byte;
    ech_tx_len = (uint8_t)(ech_tx_len + 1u);
    if (ech_tx_len >= ECH_TX_BUF) {
        ech_tx_send();
    }
}

void ech_hal_flush(void)
{
    ech_tx_send();
}
