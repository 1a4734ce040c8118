/* AVR HAL: bare USART0 (polled, 115200 8N1, U2X) and Timer1 at clk/1 extended to 32 bits.
 * Bare registers instead of Arduino's HardwareSerial: no 2 x 64-byte ring buffers in SRAM and
 * about 1 KB less flash; polling is safe because the protocol is strictly request/reply. */
#if defined(__AVR__)
#include <avr/interrupt.h>
#include <avr/io.h>

#include "ech_hal.h"
#include "ech_proto.h"

#ifndef F_CPU
#error "F_CPU must be defined (e.g. -DF_CPU=16000000UL)"
#endif
#ifndef ECH_BAUD
#define ECH_BAUD 115200UL
#endif

static volatile uint16_t timer1_high;

ISR(TIMER1_OVF_vect)
{
    ++timer1_high;
}

void ech_hal_init(void)
{
    uint16_t ubrr = (uint16_t)((F_CPU + 4UL * ECH_BAUD) / (8UL * ECH_BAUD) - 1UL);
    UBRR0H = (uint8_t)(ubrr >> 8);
    UBRR0L = (uint8_t)(ubrr & 0xFFu);
    UCSR0A = (uint8_t)_BV(U2X0);
    UCSR0C = (uint8_t)(_BV(UCSZ01) | _BV(UCSZ00)); /* 8N1 */
    UCSR0B = (uint8_t)(_BV(RXEN0) | _BV(TXEN0));
    TCCR1A = 0u;
    TCCR1B = (uint8_t)_BV(CS10); /* clk/1, free running */
    TCNT1 = 0u;
    TIFR1 = (uint8_t)_BV(TOV1);
    TIMSK1 = (uint8_t)_BV(TOIE1);
    sei();
}

int ech_hal_getc(void)
{
    while (!(UCSR0A & _BV(RXC0))) {
    }
    return (int)UDR0;
}

/* Transmit-complete (TXC0) pacing rather than UDRE0: simavr 1.6 leaves UDRE0 clear after the
 * Arduino core's init() has written UCSR0B = 0, so a UDRE0 wait would hang there; TXC0 works on
 * the simulator and on silicon at the cost of the one-byte transmit double buffer. */
static uint8_t tx_busy;

void ech_hal_putc(uint8_t byte)
{
    if (tx_busy) {
        while (!(UCSR0A & _BV(TXC0))) {
        }
    }
    UCSR0A = (uint8_t)(_BV(U2X0) | _BV(TXC0)); /* writing 1 clears TXC0 */
    UDR0 = byte;
    tx_busy = 1u;
}

void ech_hal_flush(void)
{
}

uint32_t ech_cycles_now(void)
{
    uint8_t sreg = SREG;
    uint16_t lo, hi;
    cli();
    lo = TCNT1;
    hi = timer1_high;
    /* An overflow not yet serviced: the low word has wrapped but the high word has not. */
    if ((TIFR1 & _BV(TOV1)) && lo < 0x8000u) {
        ++hi;
    }
    SREG = sreg;
    return ((uint32_t)hi << 16) | lo;
}

uint32_t ech_cycles_elapsed(uint32_t start, uint32_t end)
{
    return end - start;
}

uint8_t ech_cycles_source(void)
{
    return (uint8_t)ECH_CYCLES_AVR_TIMER1;
}

uint32_t ech_cycles_hz(void)
{
    return (uint32_t)F_CPU;
}
#else
typedef int ech_hal_avr_unused_t; /* ISO C forbids an empty translation unit */
#endif
