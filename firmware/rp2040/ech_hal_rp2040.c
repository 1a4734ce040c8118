/* RP2040 HAL (Raspberry Pi Pico: UART0 TX on GP0, RX on GP1, through a 3.3 V USB-serial adapter
 * or a Raspberry Pi Debug Probe). Register-level, polled; addresses and values from the RP2040
 * datasheet (resets 2.14, clocks 2.15, XOSC 2.16, PLL 2.18, IO and pads 2.19, UART 4.2).
 * No emulator models this chip: built, not run, here.
 *
 * Clock: XOSC 12 MHz -> clk_ref; PLL_SYS 12 MHz x 125 / (6 x 2) = 125 MHz -> clk_sys;
 * clk_peri = clk_sys. Every wait (XOSC stable, PLL lock, clock switch, reset done) is bounded.
 * Baud: PL011 divisor = 125 MHz / (16 x 115200) = 67.817 -> IBRD 67, FBRD 52 (0.817 x 64),
 * 115207 baud. */
#include "ech_hal.h"
#include "ech_hal_config.h"
#include "ech_mmio.h"

/* Atomic register aliases (datasheet 2.1.2): +0x2000 sets bits, +0x3000 clears bits. */
#define ECH_SET(addr) ((addr) + 0x2000ul)
#define ECH_CLR(addr) ((addr) + 0x3000ul)

/* RESETS, base 0x4000C000 */
#define RESETS_RESET 0x4000C000ul
#define RESETS_DONE 0x4000C008ul
#define RESET_IO_BANK0 (1ul << 5)
#define RESET_PADS_BANK0 (1ul << 8)
#define RESET_PLL_SYS (1ul << 12)
#define RESET_UART0 (1ul << 22)

/* XOSC, base 0x40024000 */
#define XOSC_CTRL 0x40024000ul
#define XOSC_STATUS 0x40024004ul
#define XOSC_STARTUP 0x4002400Cul
#define XOSC_CTRL_RANGE_1_15MHZ 0xAA0ul
#define XOSC_CTRL_ENABLE (0xFABul << 12)
#define XOSC_STATUS_STABLE (1ul << 31)
#define XOSC_KHZ 12000ul
#define XOSC_STARTUP_DELAY ((XOSC_KHZ + 128ul) / 256ul) /* ~1 ms in units of 256 cycles */

/* PLL_SYS, base 0x40028000 */
#define PLL_SYS_CS 0x40028000ul
#define PLL_SYS_PWR 0x40028004ul
#define PLL_SYS_FBDIV 0x40028008ul
#define PLL_SYS_PRIM 0x4002800Cul
#define PLL_CS_LOCK (1ul << 31)
#define PLL_PWR_PD (1ul << 0)
#define PLL_PWR_DSMPD (1ul << 2)
#define PLL_PWR_POSTDIVPD (1ul << 3)
#define PLL_PWR_VCOPD (1ul << 5)
#define PLL_REFDIV 1ul
#define PLL_FBDIV 125ul
#define PLL_POSTDIV1 6ul
#define PLL_POSTDIV2 2ul

/* CLOCKS, base 0x40008000 */
#define CLK_REF_CTRL 0x40008030ul
#define CLK_REF_DIV 0x40008034ul
#define CLK_REF_SELECTED 0x40008038ul
#define CLK_SYS_CTRL 0x4000803Cul
#define CLK_SYS_DIV 0x40008040ul
#define CLK_SYS_SELECTED 0x40008044ul
#define CLK_PERI_CTRL 0x40008048ul
#define CLK_SYS_RESUS_CTRL 0x40008078ul
#define CLK_REF_SRC_ROSC 0ul
#define CLK_REF_SRC_XOSC 2ul
#define CLK_SYS_SRC_REF 0ul
#define CLK_SYS_SRC_AUX 1ul /* AUXSRC 0 = PLL_SYS */
#define CLK_PERI_ENABLE (1ul << 11) /* AUXSRC 0 = clk_sys */
#define CLK_DIV_1 (1ul << 8)        /* integer divisor 1 (bits 31:8) */

/* IO_BANK0 (0x40014000) and PADS_BANK0 (0x4001C000) */
#define IO_GPIO_CTRL(n) (0x40014004ul + 8ul * (uint32_t)(n))
#define PADS_GPIO(n) (0x4001C004ul + 4ul * (uint32_t)(n))
#define IO_FUNCSEL_UART 2ul
#define PAD_IE (1ul << 6)
#define PAD_DRIVE_4MA (1ul << 4)
#define PAD_PUE (1ul << 3)
#define PAD_SCHMITT (1ul << 1)

/* UART0 (Arm PL011), base 0x40034000 */
#define UART0_DR 0x40034000ul
#define UART0_FR 0x40034018ul
#define UART0_IBRD 0x40034024ul
#define UART0_FBRD 0x40034028ul
#define UART0_LCR_H 0x4003402Cul
#define UART0_CR 0x40034030ul
#define UART_FR_RXFE (1ul << 4)
#define UART_FR_TXFF (1ul << 5)
#define UART_LCR_H_8N1_FIFO ((3ul << 5) | (1ul << 4)) /* WLEN = 8 bits, FEN */
#define UART_CR_ON ((1ul << 0) | (1ul << 8) | (1ul << 9)) /* UARTEN, TXE, RXE */

#define ECH_TX_PIN 0u
#define ECH_RX_PIN 1u

static void ech_unreset(uint32_t bits)
{
    ECH_MMIO_WR(ECH_CLR(RESETS_RESET), bits);
    (void)ech_wait_bits(RESETS_DONE, bits, bits);
}

static void ech_clock_init(void)
{
    ECH_MMIO_WR(CLK_SYS_RESUS_CTRL, 0ul);
    /* Crystal oscillator. */
    ECH_MMIO_WR(XOSC_CTRL, XOSC_CTRL_RANGE_1_15MHZ);
    ECH_MMIO_WR(XOSC_STARTUP, XOSC_STARTUP_DELAY);
    ECH_MMIO_WR(XOSC_CTRL, XOSC_CTRL_RANGE_1_15MHZ | XOSC_CTRL_ENABLE);
    (void)ech_wait_bits(XOSC_STATUS, XOSC_STATUS_STABLE, XOSC_STATUS_STABLE);
    /* Off the PLL before touching it: clk_sys from clk_ref, clk_ref from the ring oscillator. */
    ECH_MMIO_WR(CLK_SYS_CTRL, CLK_SYS_SRC_REF);
    (void)ech_wait_bits(CLK_SYS_SELECTED, 0xFFFFFFFFul, 1ul << CLK_SYS_SRC_REF);
    ECH_MMIO_WR(CLK_REF_CTRL, CLK_REF_SRC_ROSC);
    (void)ech_wait_bits(CLK_REF_SELECTED, 0xFFFFFFFFul, 1ul << CLK_REF_SRC_ROSC);
    /* PLL_SYS: reset, program, power up, lock, then the post dividers. */
    ECH_MMIO_WR(ECH_SET(RESETS_RESET), RESET_PLL_SYS);
    ech_unreset(RESET_PLL_SYS);
    ECH_MMIO_WR(PLL_SYS_CS, PLL_REFDIV);
    ECH_MMIO_WR(PLL_SYS_FBDIV, PLL_FBDIV);
    ECH_MMIO_WR(PLL_SYS_PWR, PLL_PWR_DSMPD | PLL_PWR_POSTDIVPD); /* PD and VCOPD off */
    (void)ech_wait_bits(PLL_SYS_CS, PLL_CS_LOCK, PLL_CS_LOCK);
    ECH_MMIO_WR(PLL_SYS_PRIM, (PLL_POSTDIV1 << 16) | (PLL_POSTDIV2 << 12));
    ECH_MMIO_WR(PLL_SYS_PWR, PLL_PWR_DSMPD); /* post dividers powered */
    /* clk_ref = XOSC / 1, clk_sys = PLL_SYS / 1, clk_peri = clk_sys. */
    ECH_MMIO_WR(CLK_REF_DIV, CLK_DIV_1);
    ECH_MMIO_WR(CLK_REF_CTRL, CLK_REF_SRC_XOSC);
    (void)ech_wait_bits(CLK_REF_SELECTED, 0xFFFFFFFFul, 1ul << CLK_REF_SRC_XOSC);
    ECH_MMIO_WR(CLK_SYS_DIV, CLK_DIV_1);
    ECH_MMIO_WR(CLK_SYS_CTRL, CLK_SYS_SRC_AUX);
    (void)ech_wait_bits(CLK_SYS_SELECTED, 0xFFFFFFFFul, 1ul << CLK_SYS_SRC_AUX);
    ECH_MMIO_WR(CLK_PERI_CTRL, CLK_PERI_ENABLE);
}

static void ech_pins_init(void)
{
    ECH_MMIO_WR(ECH_SET(RESETS_RESET), RESET_UART0);
    ech_unreset(RESET_IO_BANK0 | RESET_PADS_BANK0 | RESET_UART0);
    ECH_MMIO_WR(PADS_GPIO(ECH_TX_PIN), PAD_IE | PAD_DRIVE_4MA | PAD_SCHMITT);
    ECH_MMIO_WR(PADS_GPIO(ECH_RX_PIN), PAD_IE | PAD_DRIVE_4MA | PAD_PUE | PAD_SCHMITT);
    ECH_MMIO_WR(IO_GPIO_CTRL(ECH_TX_PIN), IO_FUNCSEL_UART);
    ECH_MMIO_WR(IO_GPIO_CTRL(ECH_RX_PIN), IO_FUNCSEL_UART);
}

static void ech_uart_init(void)
{
    /* 64 x divisor, rounded: (8 x clk / baud + 1) / 2; integer part in IBRD, 6 fraction bits in
     * FBRD. LCR_H is written after the divisors: the write latches them (datasheet 4.2.7.1). */
    uint32_t div = (8ul * (uint32_t)ECH_CLOCK_HZ / (uint32_t)ECH_BAUD + 1ul) / 2ul;
    ECH_MMIO_WR(UART0_CR, 0ul);
    ECH_MMIO_WR(UART0_IBRD, div >> 6);
    ECH_MMIO_WR(UART0_FBRD, div & 0x3Ful);
    ECH_MMIO_WR(UART0_LCR_H, UART_LCR_H_8N1_FIFO);
    ECH_MMIO_WR(UART0_CR, UART_CR_ON);
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
    while ((ECH_MMIO_RD(UART0_FR) & UART_FR_RXFE) != 0u) {
    }
    return (int)(ECH_MMIO_RD(UART0_DR) & 0xFFu);
}

void ech_hal_putc(uint8_t byte)
{
    while ((ECH_MMIO_RD(UART0_FR) & UART_FR_TXFF) != 0u) {
    }
    ECH_MMIO_WR(UART0_DR, byte);
}

void ech_hal_flush(void)
{
}
