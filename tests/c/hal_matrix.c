/* Device test program: many generated model libraries in one firmware image, on the board HAL
 * of firmware/ (the Cortex-M twin of avr_matrix.c; tests/helpers/matrix.py builds and runs it).
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

#define EC_MATRIX_PUTC(byte) ech_hal_putc(byte)
#define EC_MATRIX_STEP(nm, NM, s, xs, base) nm##_step(&(s), &(xs)[base])
#include "matrix_run.h"

EC_MATRIX_MODELS(EC_MATRIX_RUN)

int main(void)
{
    ech_hal_init();
    (void)ech_hal_getc();
    EC_MATRIX_MODELS(EC_MATRIX_CALL)
    ec_matrix_str("END\r\n");
    ech_hal_flush();
    for (;;) {
    }
}
