/* The seam between the portable harness and one board family (firmware/<family>/).
 * A family supplies ech_hal_config.h (buffer sizing) and these functions. */
#ifndef ECH_HAL_H
#define ECH_HAL_H

#include <stdint.h>

void ech_hal_init(void);
/* Blocking read of one byte: 0..255, or a negative value when the input has ended for good
 * (native stdin at EOF); bare-metal families never return negative. */
int ech_hal_getc(void);
void ech_hal_putc(uint8_t byte);
void ech_hal_flush(void); /* end of a reply */

uint32_t ech_cycles_now(void);
/* Elapsed counts from start to end, wrap-around handled (SysTick counts down, 24 bits). */
uint32_t ech_cycles_elapsed(uint32_t start, uint32_t end);
uint8_t ech_cycles_source(void); /* ECH_CYCLES_* */
uint32_t ech_cycles_hz(void);    /* counts per second of that source, never 0 */

#endif
