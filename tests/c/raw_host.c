/* Host driver of the raw int16 helper of a library named m (tests/test_raw_input.py).
 *     raw_host q STEPS OUT   every int16 raw value in every feature at t = 0..STEPS-1:
 *                            OUT = int16 x_q [STEPS][65536][D] (raw = -32768 first)
 *     raw_host s IN OUT      IN = int32 n, steps, then int16 raw [n][steps][D];
 *                            OUT = int32 logits [n][C] after m_step_raw over each sequence */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "m.h"

static int fail(const char *what)
{
    fprintf(stderr, "raw_host: %s\n", what);
    return 2;
}

int main(int argc, char **argv)
{
    int16_t raw[M_INPUT_DIM];
    int16_t x_q[M_INPUT_DIM];
    FILE *out;
    if (argc != 4) {
        return fail("usage: raw_host q STEPS OUT | s IN OUT");
    }
    if (strcmp(argv[1], "q") == 0) {
        const long steps = strtol(argv[2], NULL, 10);
        long t;
        int32_t v;
        uint16_t d;
        out = fopen(argv[3], "wb");
        if (out == NULL || steps < 1 || steps > 65535) {
            return fail("cannot write the output");
        }
        for (t = 0; t < steps; ++t) {
            for (v = -32768; v <= 32767; ++v) {
                for (d = 0; d < M_INPUT_DIM; ++d) {
                    raw[d] = (int16_t)v;
                }
                m_quantize_raw(raw, (uint16_t)t, x_q);
                if (fwrite(x_q, sizeof x_q, 1, out) != 1) {
                    return fail("write failed");
                }
            }
        }
        return fclose(out) == 0 ? 0 : fail("write failed");
    }
    if (strcmp(argv[1], "s") == 0) {
        FILE *in = fopen(argv[2], "rb");
        int32_t hdr[2];
        int32_t i, t;
        m_state_t s;
        int32_t logits[M_NUM_CLASSES];
        out = fopen(argv[3], "wb");
        if (in == NULL || out == NULL || fread(hdr, sizeof hdr, 1, in) != 1) {
            return fail("cannot read the input");
        }
        for (i = 0; i < hdr[0]; ++i) {
            m_reset(&s);
            for (t = 0; t < hdr[1]; ++t) {
                if (fread(raw, sizeof raw, 1, in) != 1) {
                    return fail("short input");
                }
                m_step_raw(&s, raw);
            }
            m_logits(&s, logits);
            if (fwrite(logits, sizeof logits, 1, out) != 1) {
                return fail("write failed");
            }
        }
        fclose(in);
        return fclose(out) == 0 ? 0 : fail("write failed");
    }
    return fail("mode must be q or s");
}
