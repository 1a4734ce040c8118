/* Bare-metal start-up for edgecompile's Cortex-M builds (M0+/M3/M4/M7).
 * Vector table, reset handler (copy .data, zero .bss, FPU on when built for one, C++ constructors),
 * and a default handler that parks the core. No vendor headers: only architectural registers. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern void (*__preinit_array_start[])(void);
extern void (*__preinit_array_end[])(void);
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

int main(void);
void Reset_Handler(void);
void Default_Handler(void);

/* Weak so that a HAL can supply its own handlers (e.g. SysTick_Handler for a cycle counter). */
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));
void EC_IRQ_Handler(void) __attribute__((weak, alias("Default_Handler")));

#define EC_NUM_IRQ 32

typedef void (*ec_vector_t)(void);

__attribute__((section(".isr_vector"), used))
const ec_vector_t ec_vector_table[16 + EC_NUM_IRQ] = {
    (ec_vector_t)(uintptr_t)&_estack,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
    /* External interrupts: all routed to one weak handler. */
    EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler,
    EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler,
    EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler,
    EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler,
    EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler,
    EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler,
    EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler,
    EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler, EC_IRQ_Handler,
};

void Reset_Handler(void)
{
    uint32_t *src = &_sidata;
    uint32_t *dst = &_sdata;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss; ++dst) {
        *dst = 0u;
    }
#if defined(__ARM_FP)
    /* CPACR: full access to CP10/CP11 before any floating-point instruction. */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    {
        uintptr_t i;
        uintptr_t n = (uintptr_t)(__preinit_array_end - __preinit_array_start);
        for (i = 0; i < n; ++i) {
            __preinit_array_start[i]();
        }
        n = (uintptr_t)(__init_array_end - __init_array_start);
        for (i = 0; i < n; ++i) {
            __init_array_start[i]();
        }
    }
    (void)main();
    for (;;) {
    }
}

void Default_Handler(void)
{
    for (;;) {
    }
}
