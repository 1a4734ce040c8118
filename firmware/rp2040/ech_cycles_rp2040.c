/* Cycle counter of the RP2040 family: SysTick on the processor clock (125 MHz), 24 bits, polled.
 * The Cortex-M0+ has no DWT CYCCNT; SysTick counts CPU cycles at 8 ns resolution, finer than the
 * chip's 1 MHz TIMER. Each timed call stays below 2^24 counts (134 ms). */
#include "ech_hal_config.h"
#include "ech_cycles_cortexm.h"
#include "ech_mmio.h"

void ech_cycles_start(void)
{
    ech_cycles_init_cortexm();
}
