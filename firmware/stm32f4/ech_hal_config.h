/* STM32F4 (Nucleo-F401RE): the core runs on the 16 MHz internal HSI oscillator, the clock the
 * chip resets to (RM0368 section 6.2.2), with the AHB and both APB buses undivided, so USART2 on
 * APB1 is clocked at 16 MHz as well. F_CPU is that clock; the build uses this value. */
#ifndef ECH_HAL_CONFIG_H
#define ECH_HAL_CONFIG_H

#define ECH_CLOCK_HZ 16000000ul
#ifndef F_CPU
#define F_CPU ECH_CLOCK_HZ
#elif (F_CPU) != 16000000ul
#error "F_CPU must be 16000000: the STM32F4 HAL runs the core on the 16 MHz HSI"
#endif

#ifndef ECH_BAUD
#define ECH_BAUD 115200ul
#endif

#ifndef ECH_MAX_STEPS_PER_FRAME
#define ECH_MAX_STEPS_PER_FRAME 32
#endif
#endif
