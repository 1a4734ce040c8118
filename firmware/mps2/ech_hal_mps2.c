/* CMSDK APB UART0 HAL (Arm MPS2 AN385/AN386/AN500): UART0 at 0x40004000.
 * DATA +0x0, STATE +0x4 (TX full bit 0, RX full bit 1), CTRL +0x8 (= 3: TX and RX enable,
 * without which nothing comes back), BAUDDIV +0x10. Polled. */
#include "ech_cycles_cortexm.h"

#define ECH_UART_BASE 0x40004000u
#define ECH_UART_DATA ECH_REG(ECH_UART_BASE + 0x00u)
#define ECH_UART_STATE ECH_REG(ECH_UART_BASE + 0x04u)
#define ECH_UART_CTRL ECH_REG(ECH_UART_BASE + 0x08u)
#define ECH_UART_BAUDDIV ECH_REG(ECH_UART_BASE + 0x10u)
#ifndef ECH_BAUD
#define ECH_BAUD 115200u
#endif

void ech_hal_init(void)
{
    ECH_UART_BAUDDIV = (uint32_t)F_CPU / ECH_BAUD;
    ECH_UART_CTRL = 3u;
    ech_cycles_init_cortexm();
}

int ech_hal_getc(void)
{
    while ((ECH_UART_STATE & 2u) == 0u) {
    }
    return (int)(ECH_UART_DATA & 0xFFu);
}

void ech_hal_putc(uint8_t byte)
{
    while (ECH_UART_STATE & 1u) {
    }
    ECH_UART_DATA = byte;
}

void ech_hal_flush(void)
{
}
