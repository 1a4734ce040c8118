/* Harness HAL over the Arduino core (PlatformIO framework = arduino): the core's Serial at
 * 115200 8N1 (on the Arm cores: the first hardware serial / the USB CDC port the core maps to
 * Serial), and the cycle counter:
 *   AVR:                      Timer1 at clk/1 extended to 32 bits (the core leaves Timer1 to
 *                             PWM on pins 9/10, which this takes over): CPU cycles;
 *   Cortex-M3/M4/M7:          DWT CYCCNT: CPU cycles;
 *   elsewhere (M0/M0+, ...):  micros(): microseconds (a peripheral timer at 1 MHz).
 * The core owns main(): it calls setup() and loop() of ech_main.c. */
#include <Arduino.h>

extern "C" {
#include "ech_hal.h"
#include "ech_proto.h"
}

#ifndef ECH_BAUD
#define ECH_BAUD 115200UL
#endif

#if defined(__AVR__)
#include <avr/interrupt.h>
#include <avr/io.h>

static volatile uint16_t timer1_high;

ISR(TIMER1_OVF_vect)
{
    ++timer1_high;
}

static void cycles_init(void)
{
    TCCR1A = 0u;
    TCCR1B = (uint8_t)_BV(CS10); /* clk/1, free running */
    TCNT1 = 0u;
    TIFR1 = (uint8_t)_BV(TOV1);
    TIMSK1 = (uint8_t)_BV(TOIE1);
}

extern "C" uint32_t ech_cycles_now(void)
{
    uint8_t sreg = SREG;
    uint16_t lo, hi;
    cli();
    lo = TCNT1;
    hi = timer1_high;
    if ((TIFR1 & _BV(TOV1)) && lo < 0x8000u) { /* an overflow not yet serviced */
        ++hi;
    }
    SREG = sreg;
    return ((uint32_t)hi << 16) | lo;
}

extern "C" uint8_t ech_cycles_source(void)
{
    return (uint8_t)ECH_CYCLES_AVR_TIMER1;
}

extern "C" uint32_t ech_cycles_hz(void)
{
    return (uint32_t)F_CPU;
}
#elif defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__)
#define ECH_DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define ECH_DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define ECH_DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)

static void cycles_init(void)
{
    ECH_DEMCR |= (1u << 24); /* TRCENA */
    ECH_DWT_CYCCNT = 0u;
    ECH_DWT_CTRL |= 1u; /* CYCCNTENA */
}

extern "C" uint32_t ech_cycles_now(void)
{
    return ECH_DWT_CYCCNT;
}

extern "C" uint8_t ech_cycles_source(void)
{
    return (uint8_t)ECH_CYCLES_DWT;
}

extern "C" uint32_t ech_cycles_hz(void)
{
    return (uint32_t)F_CPU;
}
#else
static void cycles_init(void)
{
}

extern "C" uint32_t ech_cycles_now(void)
{
    return (uint32_t)micros();
}

extern "C" uint8_t ech_cycles_source(void)
{
    return (uint8_t)ECH_CYCLES_TIMER;
}

extern "C" uint32_t ech_cycles_hz(void)
{
    return 1000000UL;
}
#endif

extern "C" uint32_t ech_cycles_elapsed(uint32_t start, uint32_t end)
{
    return end - start;
}

extern "C" void ech_hal_init(void)
{
    Serial.begin(ECH_BAUD);
    while (!Serial) {
        /* USB CDC cores: wait for the host to open the port */
    }
    cycles_init();
}

extern "C" int ech_hal_getc(void)
{
    int c;
    do {
        c = Serial.read();
    } while (c < 0);
    return c;
}

extern "C" void ech_hal_putc(uint8_t byte)
{
    Serial.write(byte);
}

extern "C" void ech_hal_flush(void)
{
    Serial.flush();
}
