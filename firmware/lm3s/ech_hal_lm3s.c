/* PL011 UART0 HAL (TI Stellaris lm3s6965evb, as QEMU models it): UART0 at 0x4000C000.
 * DR +0x00, FR +0x18 (RXFE bit 4, TXFF bit 5). Polled; clocks/pins as left by reset
 * (QEMU needs no set-up; a real LM3S6965 needs RCGC1/RCGC2 and GPIOA AFSEL first). */
#include "ech_cycles_cortexm.h"

#define ECH_UART_BASE 0x4000C000u
#define ECH_UART_DR ECH_REG(ECH_UART_BASE + 0x00u)
#define ECH_UART_FR ECH_REG(ECH_UART_BASE + 0x18u)
#define ECH_FR_RXFE (1u << 4)
#define ECH_FR_TXFF (1u << 5)

void ech_hal_init(void)
{
    ech_cycles_init_cortexm();
}

int ech_hal_getc(void)
{
    while (ECH_UART_FR & ECH_FR_RXFE) {
    }
    return (int)(ECH_UART_DR & 0xFFu);
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
