/* Cycle counter of the STM32F4 family: DWT CYCCNT (Cortex-M4), CPU cycles at 16 MHz.
 * Where CYCCNT does not count (QEMU reads it as 0) the shared code falls back to SysTick on the
 * CPU clock, reported as such in the handshake. */
#include "ech_hal_config.h"
#include "ech_cycles_cortexm.h"
#include "ech_mmio.h"

void ech_cycles_start(void)
{
    ech_cycles_init_cortexm();
}
