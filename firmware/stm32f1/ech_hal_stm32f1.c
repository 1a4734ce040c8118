/* STM32F1 HAL (Blue Pill: USART1 on PA9 = TX, PA10 = RX, through a 3.3 V USB-serial adapter).
 * Register-level, polled; addresses and bits from RM0008 (STM32F101/102/103/105/107 reference
 * manual). The same sources, linked for the STM32F100's memory map, run in QEMU's
 * stm32vldiscovery, whose USART1 sits at the same address; QEMU ignores the RCC and GPIO
 * writes, which the real chip needs.
 *
 * Clock: HSI 8 MHz selected as SYSCLK, all bus prescalers 1 (RCC_CFGR = 0); flash latency 0
 * (RM0008 section 3.3.3: zero wait states up to 24 MHz) with the prefetch buffer on.
 * Baud: USARTDIV = 8 MHz / (16 x 115200) = 4.34 -> BRR = 0x45 (mantissa 4, fraction 5),
 * 115942 baud (+0.64 %). */
#include "ech_hal.h"
#include "ech_hal_config.h"
#include "ech_mmio.h"

/* RCC (RM0008 section 7.3), base 0x40021000 */
#define RCC_CR 0x40021000ul
#define RCC_CFGR 0x40021004ul
#define RCC_APB2ENR 0x40021018ul
#define RCC_CR_HSION (1ul << 0)
#define RCC_CR_HSIRDY (1ul << 1)
#define RCC_CFGR_SWS_MASK (3ul << 2)
#define RCC_APB2ENR_AFIOEN (1ul << 0)
#define RCC_APB2ENR_IOPAEN (1ul << 2)
#define RCC_APB2ENR_USART1EN (1ul << 14)

/* Flash interface (RM0008 section 3.3.3), base 0x40022000 */
#define FLASH_ACR 0x40022000ul
#define FLASH_ACR_PRFTBE (1ul << 4)

/* GPIOA (RM0008 section 9.2), base 0x40010800: CRH holds PA8..PA15, 4 bits each (MODE, CNF) */
#define GPIOA_CRH 0x40010804ul
#define GPIOA_BSRR 0x40010810ul
#define GPIO_CRH_SHIFT(pin) (4u * ((pin) - 8u))
#define GPIO_AF_PUSHPULL_50MHZ 0xBul /* CNF = 10, MODE = 11 */
#define GPIO_INPUT_PULL 0x8ul        /* CNF = 10, MODE = 00; ODR bit chooses up (1) or down */

/* USART1 (RM0008 section 27.6), base 0x40013800 */
#define USART1_SR 0x40013800ul
#define USART1_DR 0x40013804ul
#define USART1_BRR 0x40013808ul
#define USART1_CR1 0x4001380Cul
#define USART1_CR2 0x40013810ul
#define USART1_CR3 0x40013814ul
#define USART_SR_RXNE (1ul << 5)
#define USART_SR_TXE (1ul << 7)
#define USART_CR1_RE (1ul << 2)
#define USART_CR1_TE (1ul << 3)
#define USART_CR1_UE (1ul << 13)

#define ECH_TX_PIN 9u
#define ECH_RX_PIN 10u

static void ech_clock_init(void)
{
    ECH_MMIO_WR(RCC_CR, ECH_MMIO_RD(RCC_CR) | RCC_CR_HSION);
    (void)ech_wait_bits(RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY);
    ECH_MMIO_WR(FLASH_ACR, FLASH_ACR_PRFTBE); /* LATENCY = 0, prefetch on */
    ECH_MMIO_WR(RCC_CFGR, 0ul);               /* SW = HSI, HPRE = PPRE1 = PPRE2 = /1 */
    (void)ech_wait_bits(RCC_CFGR, RCC_CFGR_SWS_MASK, 0ul);
    ECH_MMIO_WR(RCC_APB2ENR, ECH_MMIO_RD(RCC_APB2ENR) | RCC_APB2ENR_AFIOEN | RCC_APB2ENR_IOPAEN |
                                 RCC_APB2ENR_USART1EN);
    (void)ECH_MMIO_RD(RCC_APB2ENR);
}

static void ech_pins_init(void)
{
    /* PA9: alternate-function push-pull, 50 MHz (USART1_TX, no remap);
     * PA10: input with pull-up (USART1_RX), so an unplugged adapter reads as idle. */
    uint32_t v = ECH_MMIO_RD(GPIOA_CRH);
    v &= ~((0xFul << GPIO_CRH_SHIFT(ECH_TX_PIN)) | (0xFul << GPIO_CRH_SHIFT(ECH_RX_PIN)));
    v |= (GPIO_AF_PUSHPULL_50MHZ << GPIO_CRH_SHIFT(ECH_TX_PIN)) |
         (GPIO_INPUT_PULL << GPIO_CRH_SHIFT(ECH_RX_PIN));
    ECH_MMIO_WR(GPIOA_BSRR, 1ul << ECH_RX_PIN); /* ODR10 = 1: pull-up */
    ECH_MMIO_WR(GPIOA_CRH, v);
}

static void ech_uart_init(void)
{
    ECH_MMIO_WR(USART1_CR1, 0ul);
    ECH_MMIO_WR(USART1_CR2, 0ul);
    ECH_MMIO_WR(USART1_CR3, 0ul);
    ECH_MMIO_WR(USART1_BRR, ((uint32_t)ECH_CLOCK_HZ + (uint32_t)ECH_BAUD / 2u) / (uint32_t)ECH_BAUD);
    ECH_MMIO_WR(USART1_CR1, USART_CR1_UE | USART_CR1_TE | USART_CR1_RE); /* 8N1 */
}

void ech_hal_init(void)
{
    ech_clock_init();
    ech_pins_init();
    ech_uart_init();
    ech_cycles_start();
}

int ech_hal_getc(void)
{
    while ((ECH_MMIO_RD(USART1_SR) & USART_SR_RXNE) == 0u) {
    }
    return (int)(ECH_MMIO_RD(USART1_DR) & 0xFFu);
}

void ech_hal_putc(uint8_t byte)
{
    while ((ECH_MMIO_RD(USART1_SR) & USART_SR_TXE) == 0u) {
    }
    ECH_MMIO_WR(USART1_DR, byte);
}

void ech_hal_flush(void)
{
}
