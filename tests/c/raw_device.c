/* Device test program: the raw int16 helper of several model libraries in one image, on the
 * board HAL of firmware/ (tests/test_raw_input.py, benchmarks/bench_raw_input.py).
 *
 * raw_models.h (written by the test) includes each model's header, defines its test data in
 * flash and lists the models in RAW_MODELS(X) as X(name, NAME, vectors, times, n, seqs, nseq, steps):
 * `n` raw input vectors with the time step of each, and `nseq` raw sequences of `steps` steps.
 * After one byte arrives the program prints, in hexadecimal,
 *     Q <name> <i> <x_q[0]><x_q[1]>...     <name>_quantize_raw of vector i (4 digits each)
 *     L <name> <s> <logit 0> ...           logits after <name>_step_raw over sequence s
 *     C <name> <step> <step_raw> <step_float>   counts of ech_cycles_* for one call of each
 * and then "END". */
#include <stdint.h>

#include "ech_hal.h"
#include "raw_models.h"

#if defined(__AVR__)
#include <avr/pgmspace.h>
#define RAW_READ_I16(p) ((int16_t)pgm_read_word(p))
#define RAW_READ_U16(p) ((uint16_t)pgm_read_word(p))
#else
#define RAW_READ_I16(p) (*(p))
#define RAW_READ_U16(p) (*(p))
#endif

#define RAW_REPEAT 4u

static void put_str(const char *s)
{
    while (*s != '\0') {
        ech_hal_putc((uint8_t)*s);
        ++s;
    }
}

static void put_hex(uint32_t v, uint8_t digits)
{
    int8_t i;
    for (i = (int8_t)((digits - 1u) * 4u); i >= 0; i = (int8_t)(i - 4)) {
        ech_hal_putc((uint8_t)"0123456789abcdef"[(v >> (uint8_t)i) & 0xFu]);
    }
}

#define RAW_RUN(nm, NM, vecs, times, n, seqs, nseq, steps)                                      \
    static void run_##nm(void)                                                                  \
    {                                                                                           \
        nm##_state_t s;                                                                         \
        int16_t raw[NM##_INPUT_DIM];                                                            \
        int16_t x_q[NM##_INPUT_DIM];                                                            \
        float x[NM##_INPUT_DIM];                                                                \
        int32_t logits[NM##_NUM_CLASSES];                                                       \
        uint32_t c_step = 0, c_raw = 0, c_float = 0, t0;                                        \
        uint16_t i, t, d, r;                                                                    \
        for (i = 0; i < (uint16_t)(n); ++i) {                                                   \
            for (d = 0; d < NM##_INPUT_DIM; ++d) {                                              \
                raw[d] = RAW_READ_I16(&vecs[(uint32_t)i * NM##_INPUT_DIM + d]);                 \
            }                                                                                   \
            nm##_quantize_raw(raw, RAW_READ_U16(&times[i]), x_q);                               \
            put_str("Q " #nm " ");                                                              \
            put_hex(i, 4u);                                                                     \
            ech_hal_putc((uint8_t)' ');                                                         \
            for (d = 0; d < NM##_INPUT_DIM; ++d) {                                              \
                put_hex((uint16_t)x_q[d], 4u);                                                  \
            }                                                                                   \
            put_str("\r\n");                                                                    \
        }                                                                                       \
        for (i = 0; i < (uint16_t)(nseq); ++i) {                                                \
            nm##_reset(&s);                                                                     \
            for (t = 0; t < (uint16_t)(steps); ++t) {                                           \
                const uint32_t base = ((uint32_t)i * (uint32_t)(steps) + t) * NM##_INPUT_DIM;   \
                for (d = 0; d < NM##_INPUT_DIM; ++d) {                                          \
                    raw[d] = RAW_READ_I16(&seqs[base + d]);                                     \
                }                                                                               \
                nm##_step_raw(&s, raw);                                                         \
            }                                                                                   \
            nm##_logits(&s, logits);                                                            \
            put_str("L " #nm " ");                                                              \
            put_hex(i, 4u);                                                                     \
            for (d = 0; d < NM##_NUM_CLASSES; ++d) {                                            \
                ech_hal_putc((uint8_t)' ');                                                     \
                put_hex((uint32_t)logits[d], 8u);                                               \
            }                                                                                   \
            put_str("\r\n");                                                                    \
        }                                                                                       \
        /* cycles: the first sequence's first step through each entry point */                 \
        for (d = 0; d < NM##_INPUT_DIM; ++d) {                                                  \
            raw[d] = RAW_READ_I16(&seqs[d]);                                                    \
        }                                                                                       \
        nm##_quantize_raw(raw, 0u, x_q);                                                        \
        for (d = 0; d < NM##_INPUT_DIM; ++d) {                                                  \
            x[d] = (float)raw[d] * NM##_TEST_SCALE + NM##_TEST_OFFSET;                          \
        }                                                                                       \
        for (r = 0; r < RAW_REPEAT; ++r) {                                                      \
            nm##_reset(&s);                                                                     \
            t0 = ech_cycles_now();                                                              \
            nm##_step(&s, x_q);                                                                 \
            c_step += ech_cycles_elapsed(t0, ech_cycles_now());                                 \
            nm##_reset(&s);                                                                     \
            t0 = ech_cycles_now();                                                              \
            nm##_step_raw(&s, raw);                                                             \
            c_raw += ech_cycles_elapsed(t0, ech_cycles_now());                                  \
            nm##_reset(&s);                                                                     \
            t0 = ech_cycles_now();                                                              \
            nm##_step_float(&s, x);                                                             \
            c_float += ech_cycles_elapsed(t0, ech_cycles_now());                                \
        }                                                                                       \
        put_str("C " #nm " ");                                                                  \
        put_hex(c_step / RAW_REPEAT, 8u);                                                       \
        ech_hal_putc((uint8_t)' ');                                                             \
        put_hex(c_raw / RAW_REPEAT, 8u);                                                        \
        ech_hal_putc((uint8_t)' ');                                                             \
        put_hex(c_float / RAW_REPEAT, 8u);                                                      \
        put_str("\r\n");                                                                        \
    }
RAW_MODELS(RAW_RUN)

#define RAW_CALL(nm, NM, vecs, times, n, seqs, nseq, steps) run_##nm();

int main(void)
{
    ech_hal_init();
    (void)ech_hal_getc();
    RAW_MODELS(RAW_CALL)
    put_str("END\r\n");
    ech_hal_flush();
    for (;;) {
    }
}
