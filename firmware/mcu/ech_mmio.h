/* Memory-mapped register access for the microcontroller HALs (firmware/stm32f1, stm32f4, nrf51,
 * nrf52, rp2040). Every register access of those HALs goes through ECH_MMIO_RD / ECH_MMIO_WR, so
 * a host build can define both (before this header, e.g. with -D) to run the set-up code against
 * a register model that records each write; ECH_MMIO_HEADER (a quoted file name) is then
 * included first, for the declarations of the functions the macros call.
 *
 * Waits on a hardware flag that an emulator may not model (clock ready, PLL lock, reset done)
 * are bounded by ECH_WAIT_LIMIT polls: a board whose flag never comes keeps running on the
 * clock it already has instead of hanging. */
#ifndef ECH_MMIO_H
#define ECH_MMIO_H

#include <stdint.h>

#if defined(ECH_MMIO_HEADER)
#include ECH_MMIO_HEADER
#endif

#ifndef ECH_MMIO_RD
#define ECH_MMIO_RD(addr) (*(volatile uint32_t *)(uintptr_t)(addr))
#endif
#ifndef ECH_MMIO_WR
#define ECH_MMIO_WR(addr, val) (*(volatile uint32_t *)(uintptr_t)(addr) = (uint32_t)(val))
#endif

#ifndef ECH_WAIT_LIMIT
#define ECH_WAIT_LIMIT 200000ul
#endif

/* Polls until (register & mask) == want or ECH_WAIT_LIMIT polls have passed; 1 when it came. */
static inline uint8_t ech_wait_bits(uint32_t addr, uint32_t mask, uint32_t want)
{
    uint32_t n;
    for (n = 0u; n < (uint32_t)ECH_WAIT_LIMIT; ++n) {
        if ((ECH_MMIO_RD(addr) & mask) == want) {
            return 1u;
        }
    }
    return 0u;
}

/* Start of the cycle counter, supplied by the family's ech_cycles_<family>.c. */
void ech_cycles_start(void);

#endif
