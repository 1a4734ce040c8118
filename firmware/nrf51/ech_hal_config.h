/* nRF51 (BBC micro:bit v1, nRF51822): the Cortex-M0 runs on the 16 MHz HFCLK, here taken from
 * the board's 16 MHz crystal (nRF51 Series Reference Manual v3.0, section 13: CLOCK). F_CPU is
 * that clock; the build uses this value. */
#ifndef ECH_HAL_CONFIG_H
#define ECH_HAL_CONFIG_H

#define ECH_CLOCK_HZ 16000000ul
#ifndef F_CPU
#define F_CPU ECH_CLOCK_HZ
#elif (F_CPU) != 16000000ul
#error "F_CPU must be 16000000: the nRF51 runs at 16 MHz"
#endif

#ifndef ECH_MAX_STEPS_PER_FRAME
#define ECH_MAX_STEPS_PER_FRAME 32
#endif
#endif
