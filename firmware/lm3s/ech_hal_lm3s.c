/* PL011 UART0 HAL (TI Stellaris lm3s6965evb, as QEMU models it): UART0 at 0x4000C000.
 * DR +0x00, FR +0x18 (RXFE bit 4, TXFF bit 5), IMSC +0x38 (RXIM bit 4). Clocks/pins as left by
 * reset (QEMU needs no set-up; a real LM3S6965 needs RCGC1/RCGC2 and GPIOA AFSEL first).
 *
 * Receive waits in WFI: the UART0 interrupt (IRQ 5) is enabled in the NVIC but masked by
 * PRIMASK, so it only wakes the core (no handler runs); the byte is then read by polling. An
 * idle core costs QEMU no host CPU. Reading DR lowers the RX interrupt. */
#include "ech_cycles_cortexm.h"

#define ECH_UART_BASE 0x4000C000u
#define ECH_UART_DR ECH_REG(ECH_UART_BASE + 0x00u)
#define ECH_UART_FR ECH_REG(ECH_UART_BASE + 0x18u)
#define ECH_UART_IMSC ECH_REG(ECH_UART_BASE + 0x38u)
#define ECH_FR_RXFE (1u << 4)
#define ECH_FR_TXFF (1u << 5)
#define ECH_IMSC_RXIM (1u << 4)
#define ECH_NVIC_ISER0 ECH_REG(0xE000E100u)
#define ECH_NVIC_ICPR0 ECH_REG(0xE000E280u)
#define ECH_UART0_IRQ_BIT (1u << 5) /* IRQ 5 */

void ech_hal_init(void)
{
    __asm__ volatile("cpsid i" ::: "memory"); /* interrupts only wake the core */
    ECH_UART_IMSC = ECH_IMSC_RXIM;
    ECH_NVIC_ISER0 = ECH_UART0_IRQ_BIT;
    ech_cycles_init_cortexm();
}

int ech_hal_getc(void)
{
    int c;
    while (ECH_UART_FR & ECH_FR_RXFE) {
        __asm__ volatile("wfi" ::: "memory");
    }
    c = (int)(ECH_UART_DR & 0xFFu);
    ECH_NVIC_ICPR0 = ECH_UART0_IRQ_BIT; /* the line is low again: forget its pending state */
    return c;
}

void ech_hal_putc(uint8_t byte)
{
    while (ECH_UART_FR & ECH_FR_TXFF) {
    }
    ECH_UART_DR = byte;
}

void ech_hal_flush(void)
{
}
