/* Device test program: many generated model libraries in one firmware image, on the board HAL
 * of firmware/ (the Cortex-M twin of avr_matrix.c; tests/test_ernn_fixed.py).
 *
 * hal_matrix_models.h (written by the test) includes each model's header, defines its int16
 * inputs and lists the models in EC_MATRIX_MODELS(X) as X(name, NAME, inputs, n, steps).
 * After one byte arrives the program runs every sequence of every model and prints, per
 * sequence, one line
 *     R <name> <sequence> <hash> <logit 0> ... <logit C-1>
 * (hexadecimal; hash = FNV-1a over the 16-bit hidden states after every step), then "END". */
#include <stdint.h>

#include "ech_hal.h"
#include "hal_matrix_models.h"

static void put_str(const char *s)
{
    while (*s != '\0') {
        ech_hal_putc((uint8_t)*s);
        ++s;
    }
}

static void put_hex32(uint32_t v)
{
    int8_t i;
    ech_hal_putc((uint8_t)' ');
    for (i = 28; i >= 0; i = (int8_t)(i - 4)) {
        ech_hal_putc((uint8_t)"0123456789abcdef"[(v >> (uint8_t)i) & 0xFu]);
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
        uint32_t i, t, j;                                                                       \
        for (i = 0; i < (uint32_t)(n); ++i) {                                                   \
            uint32_t hash = 2166136261UL;                                                       \
            nm##_reset(&s);                                                                     \
            for (t = 0; t < (uint32_t)(steps); ++t) {                                           \
                nm##_step(&s, &xs[(i * (uint32_t)(steps) + t) * NM##_INPUT_DIM]);               \
                for (j = 0; j < NM##_HIDDEN_DIM; ++j) {                                         \
                    hash = fnv_u16(hash, nm##_hidden(&s)[j]);                                   \
                }                                                                               \
            }                                                                                   \
            nm##_logits(&s, logits);                                                            \
            put_str("R " #nm);                                                                  \
            put_hex32(i);                                                                       \
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
    ech_hal_init();
    (void)ech_hal_getc();
    EC_MATRIX_MODELS(EC_MATRIX_CALL)
    put_str("END\r\n");
    ech_hal_flush();
    for (;;) {
    }
}
