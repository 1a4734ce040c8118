/* CMSDK APB UART0 HAL (Arm MPS2 AN385/AN386/AN500): UART0 at 0x40004000.
 * DATA +0x0, STATE +0x4 (TX full bit 0, RX full bit 1), CTRL +0x8 (TX enable bit 0, RX enable
 * bit 1, without which nothing comes back; RX interrupt enable bit 3), INTSTATUS/INTCLEAR +0xC,
 * BAUDDIV +0x10.
 *
 * Receive waits in WFI: the UART0 RX interrupt (IRQ 0) is enabled in the NVIC but masked by
 * PRIMASK, so it only wakes the core (no handler runs); the byte is then read by polling. An
 * idle core costs QEMU no host CPU, and the emulator thread that delivers the bytes does not
 * compete with a spinning core for the device lock. */
#include "ech_cycles_cortexm.h"

#define ECH_UART_BASE 0x40004000u
#define ECH_UART_DATA ECH_REG(ECH_UART_BASE + 0x00u)
#define ECH_UART_STATE ECH_REG(ECH_UART_BASE + 0x04u)
#define ECH_UART_CTRL ECH_REG(ECH_UART_BASE + 0x08u)
#define ECH_UART_INTCLEAR ECH_REG(ECH_UART_BASE + 0x0Cu)
#define ECH_UART_BAUDDIV ECH_REG(ECH_UART_BASE + 0x10u)
#define ECH_STATE_TXFULL 1u
#define ECH_STATE_RXFULL 2u
#define ECH_CTRL_TX_RX 3u
#define ECH_CTRL_RXINT 8u
#define ECH_INT_RX 2u
#define ECH_NVIC_ISER0 ECH_REG(0xE000E100u)
#define ECH_NVIC_ICPR0 ECH_REG(0xE000E280u)
#define ECH_UART0_RX_IRQ_BIT 1u /* IRQ 0 */
#ifndef ECH_BAUD
#define ECH_BAUD 115200u
#endif

void ech_hal_init(void)
{
    __asm__ volatile("cpsid i" ::: "memory"); /* interrupts only wake the core */
    ECH_UART_BAUDDIV = (uint32_t)F_CPU / ECH_BAUD;
    ECH_UART_CTRL = ECH_CTRL_TX_RX | ECH_CTRL_RXINT;
    ECH_NVIC_ISER0 = ECH_UART0_RX_IRQ_BIT;
    ech_cycles_init_cortexm();
}

int ech_hal_getc(void)
{
    int c;
    while ((ECH_UART_STATE & ECH_STATE_RXFULL) == 0u) {
        __asm__ volatile("wfi" ::: "memory");
    }
    c = (int)(ECH_UART_DATA & 0xFFu);
    ECH_UART_INTCLEAR = ECH_INT_RX;        /* lower the interrupt line first, */
    ECH_NVIC_ICPR0 = ECH_UART0_RX_IRQ_BIT; /* then forget its pending state */
    return c;
}

void ech_hal_putc(uint8_t byte)
{
    while (ECH_UART_STATE & ECH_STATE_TXFULL) {
    }
    ECH_UART_DATA = byte;
}

void ech_hal_flush(void)
{
}
