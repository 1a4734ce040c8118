/* STM32F1 (Blue Pill, STM32F103C8): the core runs on the 8 MHz internal HSI oscillator, the
 * clock the chip resets to (RM0008 section 7.2), with AHB, APB1 and APB2 undivided, so USART1 on
 * APB2 is clocked at 8 MHz. F_CPU is that clock; the build uses this value. */
#ifndef ECH_HAL_CONFIG_H
#define ECH_HAL_CONFIG_H

#define ECH_CLOCK_HZ 8000000ul
#ifndef F_CPU
#define F_CPU ECH_CLOCK_HZ
#elif (F_CPU) != 8000000ul
#error "F_CPU must be 8000000: the STM32F1 HAL runs the core on the 8 MHz HSI"
#endif

#ifndef ECH_BAUD
#define ECH_BAUD 115200ul
#endif

#ifndef ECH_MAX_STEPS_PER_FRAME
#define ECH_MAX_STEPS_PER_FRAME 32
#endif
#endif
