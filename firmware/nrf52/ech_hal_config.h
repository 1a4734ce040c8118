/* nRF52 (Arduino Nano 33 BLE, nRF52840): the Cortex-M4F runs at 64 MHz (HFCLK), with the
 * 32 MHz crystal started for an accurate UART clock (nRF52840 Product Specification v1.7,
 * section 6.4: CLOCK). F_CPU is that clock; the build uses this value. */
#ifndef ECH_HAL_CONFIG_H
#define ECH_HAL_CONFIG_H

#define ECH_CLOCK_HZ 64000000ul
#ifndef F_CPU
#define F_CPU ECH_CLOCK_HZ
#elif (F_CPU) != 64000000ul
#error "F_CPU must be 64000000: the nRF52840 runs at 64 MHz"
#endif

#ifndef ECH_MAX_STEPS_PER_FRAME
#define ECH_MAX_STEPS_PER_FRAME 32
#endif
#endif
