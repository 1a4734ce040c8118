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

#define EC_MATRIX_PUTC(byte) uart_putc(byte)
#define EC_MATRIX_INDEX uint16_t
/* The step's inputs read from flash. */
#define EC_MATRIX_STEP(nm, NM, s, xs, base)                                                     \
    do {                                                                                        \
        int16_t x[NM##_INPUT_DIM];                                                              \
        uint16_t d;                                                                             \
        for (d = 0; d < NM##_INPUT_DIM; ++d) {                                                  \
            x[d] = (int16_t)pgm_read_word(&(xs)[(base) + d]);                                   \
        }                                                                                       \
        nm##_step(&(s), x);                                                                     \
    } while (0)
#include "matrix_run.h"

EC_MATRIX_MODELS(EC_MATRIX_RUN)

int main(void)
{
    uart_init();
    (void)uart_getc();
    EC_MATRIX_MODELS(EC_MATRIX_CALL)
    ec_matrix_str("END\r\n");
    for (;;) {
    }
}
