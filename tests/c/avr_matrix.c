/* AVR test program: many generated model libraries in one firmware image, run under simavr
 * (tests/test_avr_matrix.py).
 *
 * avr_matrix_models.h (written by the test) includes each model's header, defines its int16
 * inputs in flash and lists the models in EC_MATRIX_MODELS(X) as X(name, NAME, inputs, n, steps).
 * After one byte arrives on USART0 the program runs every sequence of every model and prints,
 * per sequence, one line
 *     R <name> <sequence> <hash> <logit 0> ... <logit C-1>
 * (hexadecimal; hash = FNV-1a over the 16-bit hidden states after every step), then "END".
 * USART0 is polled, 115200 8N1 with U2X, paced by TXC0 as firmware/avr does. */
#include <stdint.h>

#include <avr/io.h>
#include <avr/pgmspace.h>

#include "avr_matrix_models.h"

#ifndef F_CPU
#error "F_CPU must be defined"
#endif
#define EC_BAUD 115200UL

static uint8_t tx_busy;

static void uart_init(void)
{
    const uint16_t ubrr = (uint16_t)((F_CPU + 4UL * EC_BAUD) / (8UL * EC_BAUD) - 1UL);
    UBRR0H = (uint8_t)(ubrr >> 8);
    UBRR0L = (uint8_t)(ubrr & 0xFFu);
    UCSR0A = (uint8_t)_BV(U2X0);
    UCSR0C = (uint8_t)(_BV(UCSZ01) | _BV(UCSZ00));
    UCSR0B = (uint8_t)(_BV(RXEN0) | _BV(TXEN0));
}

static uint8_t uart_getc(void)
{
    while (!(UCSR0A & _BV(RXC0))) {
    }
    return (uint8_t)UDR0;
}

static void uart_putc(uint8_t byte)
{
    if (tx_busy) {
        while (!(UCSR0A & _BV(TXC0))) {
        }
    }
    UCSR0A = (uint8_t)(_BV(U2X0) | _BV(TXC0));
    UDR0 = byte;
    tx_busy = 1u;
}

static void put_str(const char *s)
{
    while (*s != '\0') {
        uart_putc((uint8_t)*s);
        ++s;
    }
}

static void put_hex32(uint32_t v)
{
    int8_t i;
    uart_putc((uint8_t)' ');
    for (i = 28; i >= 0; i = (int8_t)(i - 4)) {
        const uint8_t d = (uint8_t)((v >> (uint8_t)i) & 0xFu);
        uart_putc((uint8_t)"0123456789abcdef"[d]);
    }
}

static uint32_t fnv_u16(uint32_t hash, int16_t v)
{
    hash = (hash ^ (uint32_t)(uint8_t)(uint16_t)v) * 16777619UL;
    return (hash ^ (uint32_t)(uint8_t)((uint16_t)v >> 8)) * 16777619UL;
}

/* One model: every sequence of its inputs, one result line each. */
#define EC_MATRIX_RUN(nm, NM, xs, n, steps)                                                     \
    static void run_##nm(void)                                                                  \
    {                                                                                           \
        nm##_state_t s;                                                                         \
        int32_t logits[NM##_NUM_CLASSES];                                                       \
        int16_t x[NM##_INPUT_DIM];                                                              \
        uint16_t i, t, d, j;                                                                    \
        for (i = 0; i < (uint16_t)(n); ++i) {                                                   \
            uint32_t hash = 2166136261UL;                                                       \
            nm##_reset(&s);                                                                     \
            for (t = 0; t < (uint16_t)(steps); ++t) {                                           \
                const uint32_t base = ((uint32_t)i * (uint32_t)(steps) + t) * NM##_INPUT_DIM;   \
                for (d = 0; d < NM##_INPUT_DIM; ++d) {                                          \
                    x[d] = (int16_t)pgm_read_word(&xs[base + d]);                               \
                }                                                                               \
                nm##_step(&s, x);                                                               \
                for (j = 0; j < NM##_HIDDEN_DIM; ++j) {                                         \
                    hash = fnv_u16(hash, nm##_hidden(&s)[j]);                                   \
                }                                                                               \
            }                                                                                   \
            nm##_logits(&s, logits);                                                            \
            put_str("R " #nm);                                                                  \
            put_hex32((uint32_t)i);                                                             \
            put_hex32(hash);                                                                    \
            for (j = 0; j < NM##_NUM_CLASSES; ++j) {                                            \
                put_hex32((uint32_t)logits[j]);                                                 \
            }                                                                                   \
            put_str("\r\n");                                                                    \
        }                                                                                       \
    }
EC_MATRIX_MODELS(EC_MATRIX_RUN)

#define EC_MATRIX_CALL(nm, NM, xs, n, steps) run_##nm();

int main(void)
{
    uart_init();
    (void)uart_getc();
    EC_MATRIX_MODELS(EC_MATRIX_CALL)
    put_str("END\r\n");
    for (;;) {
    }
}
