/* Cycle counter of the nRF51 family. Its Cortex-M0 has no DWT CYCCNT, so TIMER0 counts instead:
 * timer mode, 32 bits, prescaler 0 = 16 MHz, the HFCLK the core runs on, so one count is one CPU
 * cycle (nRF51 Series Reference Manual v3.0, section 18: TIMER). Read by capturing into CC[0].
 * Reported in the handshake as a peripheral timer (ECH_CYCLES_TIMER) at 16 MHz. */
#include "ech_hal.h"
#include "ech_hal_config.h"
#include "ech_mmio.h"
#include "ech_proto.h"

#ifndef ECH_CYCLES_TIMER
#define ECH_CYCLES_TIMER 5u /* a peripheral timer at ech_cycles_hz() counts per second */
#endif

/* TIMER0, base 0x40008000 */
#define TIMER0_TASKS_START 0x40008000ul
#define TIMER0_TASKS_STOP 0x40008004ul
#define TIMER0_TASKS_CLEAR 0x4000800Cul
#define TIMER0_TASKS_CAPTURE0 0x40008040ul
#define TIMER0_MODE 0x40008504ul
#define TIMER0_BITMODE 0x40008508ul
#define TIMER0_PRESCALER 0x40008510ul
#define TIMER0_CC0 0x40008540ul
#define TIMER_MODE_TIMER 0ul
#define TIMER_BITMODE_32 3ul

void ech_cycles_start(void)
{
    ECH_MMIO_WR(TIMER0_TASKS_STOP, 1ul);
    ECH_MMIO_WR(TIMER0_MODE, TIMER_MODE_TIMER);
    ECH_MMIO_WR(TIMER0_BITMODE, TIMER_BITMODE_32);
    ECH_MMIO_WR(TIMER0_PRESCALER, 0ul);
    ECH_MMIO_WR(TIMER0_TASKS_CLEAR, 1ul);
    ECH_MMIO_WR(TIMER0_TASKS_START, 1ul);
}

uint32_t ech_cycles_now(void)
{
    ECH_MMIO_WR(TIMER0_TASKS_CAPTURE0, 1ul);
    return ECH_MMIO_RD(TIMER0_CC0);
}

uint32_t ech_cycles_elapsed(uint32_t start, uint32_t end)
{
    return end - start;
}

uint8_t ech_cycles_source(void)
{
    return (uint8_t)ECH_CYCLES_TIMER;
}

uint32_t ech_cycles_hz(void)
{
    return (uint32_t)ECH_CLOCK_HZ;
}
