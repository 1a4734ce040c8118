/* RP2040 (Raspberry Pi Pico): the Cortex-M0+ runs at 125 MHz from PLL_SYS, fed by the board's
 * 12 MHz crystal (XOSC): REFDIV 1, FBDIV 125 (VCO 1500 MHz), POSTDIV1 6, POSTDIV2 2
 * (RP2040 datasheet, section 2.18: PLL). clk_peri, the UART clock, runs from clk_sys at the same
 * 125 MHz. F_CPU is that clock; the build uses this value. */
#ifndef ECH_HAL_CONFIG_H
#define ECH_HAL_CONFIG_H

#define ECH_CLOCK_HZ 125000000ul
#ifndef F_CPU
#define F_CPU ECH_CLOCK_HZ
#elif (F_CPU) != 125000000ul
#error "F_CPU must be 125000000: the RP2040 HAL runs clk_sys at 125 MHz"
#endif

#ifndef ECH_BAUD
#define ECH_BAUD 115200ul
#endif

#ifndef ECH_MAX_STEPS_PER_FRAME
#define ECH_MAX_STEPS_PER_FRAME 32
#endif
#endif
