/* Host test program for matrix_run.h (tests/test_matrix_run.py). Without arguments it reads
 * records
 *     <seq> <T> <H> <C> <T*H hidden states> <C logits>
 * (decimal, white space between) from stdin until its end and prints, per record, the result
 * line of model "m" as the device programs do: the hash chained over the T steps of H states.
 * With an argument it runs EC_MATRIX_RUN on model "fk" (h = x, one logit h[0] - h[1]) over two
 * sequences of three steps of the inputs 1 .. 12. */
#include <stdint.h>
#include <stdio.h>

#define EC_MATRIX_PUTC(byte) (void)putchar((int)(byte))
#define EC_MATRIX_STEP(nm, NM, s, xs, base) nm##_step(&(s), &(xs)[base])
#include "matrix_run.h"

#define FK_INPUT_DIM 2
#define FK_HIDDEN_DIM 2
#define FK_NUM_CLASSES 1

typedef struct {
    int16_t h[FK_HIDDEN_DIM];
} fk_state_t;

static void fk_reset(fk_state_t *s)
{
    s->h[0] = 0;
    s->h[1] = 0;
}

static void fk_step(fk_state_t *s, const int16_t x[FK_INPUT_DIM])
{
    s->h[0] = x[0];
    s->h[1] = x[1];
}

static const int16_t *fk_hidden(const fk_state_t *s)
{
    return s->h;
}

static void fk_logits(const fk_state_t *s, int32_t logits[FK_NUM_CLASSES])
{
    logits[0] = (int32_t)s->h[0] - (int32_t)s->h[1];
}

static const int16_t fk_x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

#define EC_MATRIX_MODELS(X) X(fk, FK, fk_x, 2u, 3u)
EC_MATRIX_MODELS(EC_MATRIX_RUN)

#define MAX_STATES 4096
#define MAX_CLASSES 64

static int read_long(long *v)
{
    return scanf("%ld", v) == 1;
}

int main(int argc, char **argv)
{
    static int16_t h[MAX_STATES];
    int32_t logits[MAX_CLASSES];
    long seq, steps, hidden, classes, v;
    long k;
    (void)argv;
    if (argc > 1) {
        EC_MATRIX_MODELS(EC_MATRIX_CALL)
        ec_matrix_str("END\r\n");
        return 0;
    }
    while (read_long(&seq)) {
        uint32_t hash = EC_MATRIX_FNV_BASIS;
        if (!read_long(&steps) || !read_long(&hidden) || !read_long(&classes) || steps < 0 ||
            hidden < 0 || classes < 0 || steps * hidden > MAX_STATES || classes > MAX_CLASSES) {
            return 2;
        }
        for (k = 0; k < steps * hidden; ++k) {
            if (!read_long(&v)) {
                return 2;
            }
            h[k] = (int16_t)v;
        }
        for (k = 0; k < classes; ++k) {
            if (!read_long(&v)) {
                return 2;
            }
            logits[k] = (int32_t)v;
        }
        for (k = 0; k < steps; ++k) {
            hash = ec_matrix_fnv(hash, &h[k * hidden], (uint16_t)hidden);
        }
        ec_matrix_line("m", (uint32_t)seq, hash, logits, (uint16_t)classes);
    }
    ec_matrix_str("END\r\n");
    return 0;
}
