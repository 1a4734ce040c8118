/* Cycle counter shared by the Cortex-M family folders (firmware/mps2, lm3s, stm32f1, ...).
 * DWT CYCCNT where the core has one and it runs (real M3/M4/M7); otherwise SysTick on the CPU
 * clock, 24 bits, polled (no interrupt: each timed call must stay below 2^24 counts).
 * QEMU does not emulate CYCCNT (it reads 0): SysTick is chosen there, and under
 * -icount shift=0 it advances one count per (1e9 / F_CPU) instructions. */
#ifndef ECH_CYCLES_CORTEXM_H
#define ECH_CYCLES_CORTEXM_H

#include <stdint.h>

#include "ech_hal.h"
#include "ech_proto.h"

#ifndef F_CPU
#error "F_CPU must be defined (the core clock in Hz)"
#endif

#define ECH_REG(addr) (*(volatile uint32_t *)(addr))
#define ECH_DEMCR ECH_REG(0xE000EDFCu)
#define ECH_DWT_CTRL ECH_REG(0xE0001000u)
#define ECH_DWT_CYCCNT ECH_REG(0xE0001004u)
#define ECH_SYST_CSR ECH_REG(0xE000E010u)
#define ECH_SYST_RVR ECH_REG(0xE000E014u)
#define ECH_SYST_CVR ECH_REG(0xE000E018u)

static uint8_t ech_cm_source;

static void ech_cycles_init_cortexm(void)
{
    ech_cm_source = (uint8_t)ECH_CYCLES_SYSTICK;
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__)
    ECH_DEMCR |= (1ul << 24); /* TRCENA */
    if ((ECH_DWT_CTRL & (1ul << 25)) == 0u) { /* NOCYCCNT clear: a counter exists */
        volatile uint32_t spin;
        uint32_t a;
        ECH_DWT_CYCCNT = 0u;
        ECH_DWT_CTRL |= 1u;
        a = ECH_DWT_CYCCNT;
        for (spin = 0; spin < 16u; ++spin) {
        }
        if (ECH_DWT_CYCCNT != a) {
            ech_cm_source = (uint8_t)ECH_CYCLES_DWT;
        }
    }
#endif
    ECH_SYST_RVR = 0x00FFFFFFu;
    ECH_SYST_CVR = 0u;
    ECH_SYST_CSR = 5u; /* ENABLE | CLKSOURCE = processor clock, no interrupt */
}

uint32_t ech_cycles_now(void)
{
    if (ech_cm_source == (uint8_t)ECH_CYCLES_DWT) {
        return ECH_DWT_CYCCNT;
    }
    return ECH_SYST_CVR;
}

uint32_t ech_cycles_elapsed(uint32_t start, uint32_t end)
{
    if (ech_cm_source == (uint8_t)ECH_CYCLES_DWT) {
        return end - start;
    }
    return (start - end) & 0x00FFFFFFu; /* SysTick counts down */
}

uint8_t ech_cycles_source(void)
{
    return ech_cm_source;
}

uint32_t ech_cycles_hz(void)
{
    return (uint32_t)F_CPU;
}

#endif
