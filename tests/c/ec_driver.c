/* Test driver for a generated model library (tests/test_codegen.py).
 *
 *   ec_driver int   IN OUT    IN: int32 n, int32 T, then n*T*D int16 x_q
 *   ec_driver float IN OUT    IN: int32 n, int32 T, then n*T*D float32 raw x (ecm_step_float)
 *
 * OUT, per sequence: T*H int16 hidden states (after every step), C int32 logits, int32 class of
 * ecm_predict (int mode; -1 in float mode), C int32 logits of ecm_predict (int mode; else 0).
 * Talks to the model only through edgecompile_model.h, like the firmware harness. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgecompile_model.h"

static void die(const char *what)
{
    fprintf(stderr, "ec_driver: %s\n", what);
    exit(2);
}

int main(int argc, char **argv)
{
    FILE *in, *out;
    int32_t hdr[2];
    int32_t n, steps, i, t;
    int is_float;
    size_t per_seq;
    if (argc != 4) {
        die("usage: ec_driver int|float IN OUT");
    }
    is_float = strcmp(argv[1], "float") == 0;
    in = fopen(argv[2], "rb");
    out = fopen(argv[3], "wb");
    if (in == NULL || out == NULL || fread(hdr, sizeof hdr, 1, in) != 1) {
        die("cannot open/read files");
    }
    n = hdr[0];
    steps = hdr[1];
    per_seq = (size_t)steps * ECM_INPUT_DIM;
    for (i = 0; i < n; ++i) {
        ecm_state_t s;
        int32_t logits[ECM_NUM_CLASSES];
        int32_t logits2[ECM_NUM_CLASSES];
        int32_t cls = -1;
        /* exact-size heap buffers so AddressSanitizer sees any overrun */
        int16_t *xq = (int16_t *)malloc(per_seq * sizeof(int16_t) + 1);
        float *xf = (float *)malloc(per_seq * sizeof(float) + 1);
        if (xq == NULL || xf == NULL) {
            die("out of memory");
        }
        if (per_seq && fread(is_float ? (void *)xf : (void *)xq, is_float ? sizeof(float) : sizeof(int16_t),
                             per_seq, in) != per_seq) {
            die("short input");
        }
        memset(logits2, 0, sizeof logits2);
        ecm_reset(&s);
        for (t = 0; t < steps; ++t) {
            int16_t *x1 = (int16_t *)malloc(sizeof(int16_t) * ECM_INPUT_DIM);
            float *f1 = (float *)malloc(sizeof(float) * ECM_INPUT_DIM);
            if (is_float) {
                memcpy(f1, xf + (size_t)t * ECM_INPUT_DIM, sizeof(float) * ECM_INPUT_DIM);
                ecm_step_float(&s, f1);
            } else {
                memcpy(x1, xq + (size_t)t * ECM_INPUT_DIM, sizeof(int16_t) * ECM_INPUT_DIM);
                ecm_step(&s, x1);
            }
            fwrite(ecm_hidden(&s), sizeof(int16_t), ECM_HIDDEN_DIM, out);
            free(x1);
            free(f1);
        }
        ecm_logits(&s, logits);
        if (!is_float) {
            cls = (int32_t)ecm_predict(xq, (uint16_t)steps, logits2);
        }
        fwrite(logits, sizeof(int32_t), ECM_NUM_CLASSES, out);
        fwrite(&cls, sizeof cls, 1, out);
        fwrite(logits2, sizeof(int32_t), ECM_NUM_CLASSES, out);
        free(xq);
        free(xf);
    }
    fclose(in);
    return fclose(out) == 0 ? 0 : 2;
}
