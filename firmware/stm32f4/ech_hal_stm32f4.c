/* STM32F4 HAL (Nucleo-F401RE: USART2 on PA2 = TX, PA3 = RX, wired to the ST-LINK virtual COM
 * port). Register-level, polled; addresses and bits from RM0368 (STM32F401xB/C/D/E reference
 * manual). The same image runs in QEMU's netduinoplus2 (STM32F405), whose USART2 sits at the
 * same address; QEMU ignores the RCC, flash and GPIO writes, which the real chip needs.
 *
 * Clock: HSI 16 MHz selected as SYSCLK, AHB/APB1/APB2 prescalers 1 (RCC_CFGR = 0), flash with
 * zero wait states (RM0368 table 6: 0 WS up to 30 MHz at 2.7-3.6 V), prefetch and caches on.
 * Baud: USARTDIV = 16 MHz / (16 x 115200) = 8.6806 -> BRR = 0x8B (mantissa 8, fraction 11),
 * 115108 baud (-0.08 %). */
#include "ech_hal.h"
#include "ech_hal_config.h"
#include "ech_mmio.h"

/* RCC (RM0368 section 6.3), base 0x40023800 */
#define RCC_CR 0x40023800ul
#define RCC_CFGR 0x40023808ul
#define RCC_AHB1ENR 0x40023830ul
#define RCC_APB1ENR 0x40023840ul
#define RCC_CR_HSION (1ul << 0)
#define RCC_CR_HSIRDY (1ul << 1)
#define RCC_CFGR_SWS_MASK (3ul << 2)
#define RCC_AHB1ENR_GPIOAEN (1ul << 0)
#define RCC_APB1ENR_USART2EN (1ul << 17)

/* Flash interface (RM0368 section 3.8), base 0x40023C00 */
#define FLASH_ACR 0x40023C00ul
#define FLASH_ACR_PRFTEN (1ul << 8)
#define FLASH_ACR_ICEN (1ul << 9)
#define FLASH_ACR_DCEN (1ul << 10)

/* GPIOA (RM0368 section 8.4), base 0x40020000 */
#define GPIOA_MODER 0x40020000ul
#define GPIOA_OSPEEDR 0x40020008ul
#define GPIOA_PUPDR 0x4002000Cul
#define GPIOA_AFRL 0x40020020ul
#define GPIO_MODE_AF 2ul
#define GPIO_PULL_UP 1ul
#define GPIO_SPEED_HIGH 2ul
#define GPIO_AF7_USART2 7ul

/* USART2 (RM0368 section 19.6), base 0x40004400 */
#define USART2_SR 0x40004400ul
#define USART2_DR 0x40004404ul
#define USART2_BRR 0x40004408ul
#define USART2_CR1 0x4000440Cul
#define USART2_CR2 0x40004410ul
#define USART2_CR3 0x40004414ul
#define USART_SR_RXNE (1ul << 5)
#define USART_SR_TXE (1ul << 7)
#define USART_CR1_RE (1ul << 2)
#define USART_CR1_TE (1ul << 3)
#define USART_CR1_UE (1ul << 13)

#define ECH_TX_PIN 2u
#define ECH_RX_PIN 3u

static void ech_clock_init(void)
{
    /* HSI on (it is after reset; a boot loader may have left another source). */
    ECH_MMIO_WR(RCC_CR, ECH_MMIO_RD(RCC_CR) | RCC_CR_HSION);
    (void)ech_wait_bits(RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY);
    /* Zero wait states are right for 16 MHz; set them before the clock can drop to it. */
    ECH_MMIO_WR(FLASH_ACR, FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN);
    ECH_MMIO_WR(RCC_CFGR, 0ul); /* SW = HSI, HPRE = PPRE1 = PPRE2 = /1, no MCO */
    (void)ech_wait_bits(RCC_CFGR, RCC_CFGR_SWS_MASK, 0ul);
    ECH_MMIO_WR(RCC_AHB1ENR, ECH_MMIO_RD(RCC_AHB1ENR) | RCC_AHB1ENR_GPIOAEN);
    ECH_MMIO_WR(RCC_APB1ENR, ECH_MMIO_RD(RCC_APB1ENR) | RCC_APB1ENR_USART2EN);
    (void)ECH_MMIO_RD(RCC_APB1ENR); /* the enable takes effect before the first access */
}

static void ech_pins_init(void)
{
    /* PA2, PA3: alternate function 7 (USART2_TX, USART2_RX), high speed, pull-up on RX. */
    uint32_t two = 2u * ECH_TX_PIN;
    uint32_t three = 2u * ECH_RX_PIN;
    uint32_t v = ECH_MMIO_RD(GPIOA_AFRL);
    v &= ~((0xFul << (4u * ECH_TX_PIN)) | (0xFul << (4u * ECH_RX_PIN)));
    v |= (GPIO_AF7_USART2 << (4u * ECH_TX_PIN)) | (GPIO_AF7_USART2 << (4u * ECH_RX_PIN));
    ECH_MMIO_WR(GPIOA_AFRL, v);
    v = ECH_MMIO_RD(GPIOA_OSPEEDR) & ~((3ul << two) | (3ul << three));
    ECH_MMIO_WR(GPIOA_OSPEEDR, v | (GPIO_SPEED_HIGH << two) | (GPIO_SPEED_HIGH << three));
    v = ECH_MMIO_RD(GPIOA_PUPDR) & ~((3ul << two) | (3ul << three));
    ECH_MMIO_WR(GPIOA_PUPDR, v | (GPIO_PULL_UP << three));
    v = ECH_MMIO_RD(GPIOA_MODER) & ~((3ul << two) | (3ul << three));
    ECH_MMIO_WR(GPIOA_MODER, v | (GPIO_MODE_AF << two) | (GPIO_MODE_AF << three));
}

static void ech_uart_init(void)
{
    ECH_MMIO_WR(USART2_CR1, 0ul); /* UE off while configuring */
    ECH_MMIO_WR(USART2_CR2, 0ul); /* 1 stop bit */
    ECH_MMIO_WR(USART2_CR3, 0ul); /* no flow control */
    ECH_MMIO_WR(USART2_BRR, ((uint32_t)ECH_CLOCK_HZ + (uint32_t)ECH_BAUD / 2u) / (uint32_t)ECH_BAUD);
    ECH_MMIO_WR(USART2_CR1, USART_CR1_UE | USART_CR1_TE | USART_CR1_RE); /* 8N1, oversampling 16 */
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
    while ((ECH_MMIO_RD(USART2_SR) & USART_SR_RXNE) == 0u) {
    }
    return (int)(ECH_MMIO_RD(USART2_DR) & 0xFFu);
}

void ech_hal_putc(uint8_t byte)
{
    while ((ECH_MMIO_RD(USART2_SR) & USART_SR_TXE) == 0u) {
    }
    ECH_MMIO_WR(USART2_DR, byte);
}

void ech_hal_flush(void)
{
}
