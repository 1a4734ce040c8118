/* The model runs and result lines of the matrix test programs (avr_matrix.c on the AVR USART,
 * hal_matrix.c on the board HAL of firmware/): per sequence one line
 *     R <name> <sequence> <hash> <logit 0> ... <logit C-1>
 * in hexadecimal, hash = FNV-1a over the bytes of the 16-bit hidden states (low byte first)
 * after every step.
 *
 * The including program defines first
 *     EC_MATRIX_PUTC(byte)                 sends one byte (uint8_t);
 * and, to use EC_MATRIX_RUN,
 *     EC_MATRIX_STEP(nm, NM, s, xs, base)  runs nm##_step(&s, x) on x = xs[base .. base+D-1];
 * it may define EC_MATRIX_INDEX, the type of the sequence and step counters (uint32_t). */
#ifndef EC_MATRIX_RUN_H
#define EC_MATRIX_RUN_H

#include <stdint.h>

#ifndef EC_MATRIX_PUTC
#error "EC_MATRIX_PUTC(byte) must be defined before matrix_run.h"
#endif
#ifndef EC_MATRIX_INDEX
#define EC_MATRIX_INDEX uint32_t
#endif

/* FNV-1a offset basis: the hash of a sequence before its first step. */
#define EC_MATRIX_FNV_BASIS 2166136261UL

static inline void ec_matrix_str(const char *s)
{
    while (*s != '\0') {
        EC_MATRIX_PUTC((uint8_t)*s);
        ++s;
    }
}

/* A space and v as eight lower-case hexadecimal digits. */
static inline void ec_matrix_hex32(uint32_t v)
{
    int8_t i;
    EC_MATRIX_PUTC((uint8_t)' ');
    for (i = 28; i >= 0; i = (int8_t)(i - 4)) {
        const uint8_t d = (uint8_t)((v >> (uint8_t)i) & 0xFu);
        EC_MATRIX_PUTC((uint8_t)"0123456789abcdef"[d]);
    }
}

/* hash extended by the n states h[0..n-1], each as its low then its high byte. */
static inline uint32_t ec_matrix_fnv(uint32_t hash, const int16_t *h, uint16_t n)
{
    uint16_t j;
    for (j = 0; j < n; ++j) {
        hash = (hash ^ (uint32_t)(uint8_t)(uint16_t)h[j]) * 16777619UL;
        hash = (hash ^ (uint32_t)(uint8_t)((uint16_t)h[j] >> 8)) * 16777619UL;
    }
    return hash;
}

/* The result line of sequence seq of model name: its hash and its n logits. */
static inline void ec_matrix_line(const char *name, uint32_t seq, uint32_t hash,
                                  const int32_t *logits, uint16_t n)
{
    uint16_t j;
    ec_matrix_str("R ");
    ec_matrix_str(name);
    ec_matrix_hex32(seq);
    ec_matrix_hex32(hash);
    for (j = 0; j < n; ++j) {
        ec_matrix_hex32((uint32_t)logits[j]);
    }
    ec_matrix_str("\r\n");
}

/* One model of EC_MATRIX_MODELS(X), X(name, NAME, inputs, n, steps): run_<name>() runs its n
 * sequences of steps steps from their reset state, one result line each. */
#define EC_MATRIX_RUN(nm, NM, xs, n, steps)                                                     \
    static void run_##nm(void)                                                                  \
    {                                                                                           \
        nm##_state_t s;                                                                         \
        int32_t logits[NM##_NUM_CLASSES];                                                       \
        EC_MATRIX_INDEX i, t;                                                                   \
        for (i = 0; i < (EC_MATRIX_INDEX)(n); ++i) {                                            \
            uint32_t hash = EC_MATRIX_FNV_BASIS;                                                \
            nm##_reset(&s);                                                                     \
            for (t = 0; t < (EC_MATRIX_INDEX)(steps); ++t) {                                    \
                const uint32_t at = (uint32_t)i * (uint32_t)(steps) + (uint32_t)t;              \
                EC_MATRIX_STEP(nm, NM, s, xs, at * NM##_INPUT_DIM);                             \
                hash = ec_matrix_fnv(hash, nm##_hidden(&s), (uint16_t)NM##_HIDDEN_DIM);         \
            }                                                                                   \
            nm##_logits(&s, logits);                                                            \
            ec_matrix_line(#nm, (uint32_t)i, hash, logits, (uint16_t)NM##_NUM_CLASSES);         \
        }                                                                                       \
    }

/* Calls run_<name>() of one model. */
#define EC_MATRIX_CALL(nm, NM, xs, n, steps) run_##nm();

#endif /* EC_MATRIX_RUN_H */
