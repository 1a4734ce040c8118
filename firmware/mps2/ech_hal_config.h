/* Cortex-M: RAM is plentiful next to the Uno; 32 time steps per STEP frame. */
#ifndef ECH_HAL_CONFIG_H
#define ECH_HAL_CONFIG_H
#ifndef ECH_MAX_STEPS_PER_FRAME
#define ECH_MAX_STEPS_PER_FRAME 32
#endif
#endif
