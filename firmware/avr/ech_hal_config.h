/* AVR (ATmega328P/2560): 2 KB SRAM on the Uno, so a STEP frame carries at most 4 time steps. */
#ifndef ECH_HAL_CONFIG_H
#define ECH_HAL_CONFIG_H
#ifndef ECH_MAX_STEPS_PER_FRAME
#define ECH_MAX_STEPS_PER_FRAME 4
#endif
#endif
