/* Arduino framework (PlatformIO framework = arduino): the Uno's 2 KB of SRAM also hold the
 * core's two 64-byte Serial buffers, so AVR keeps 4 time steps per STEP frame. */
#ifndef ECH_HAL_CONFIG_H
#define ECH_HAL_CONFIG_H
#ifndef ECH_MAX_STEPS_PER_FRAME
#if defined(__AVR__)
#define ECH_MAX_STEPS_PER_FRAME 4
#else
#define ECH_MAX_STEPS_PER_FRAME 16
#endif
#endif
#endif
