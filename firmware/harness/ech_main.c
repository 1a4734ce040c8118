/* Entry point of the harness firmware: bring up the board, then answer frames forever.
 * Under the Arduino core (PlatformIO framework = arduino) the core owns main(). */
#include "ech_hal.h"
#include "ech_proto.h"

#if defined(ARDUINO)
void setup(void);
void loop(void);

void setup(void)
{
    ech_hal_init();
    ech_init();
}

void loop(void)
{
    int c = ech_hal_getc();
    if (c >= 0) {
        ech_feed((uint8_t)c);
    }
}
#else
int main(void)
{
    ech_hal_init();
    ech_init();
    for (;;) {
        int c = ech_hal_getc();
        if (c < 0) {
            break;
        }
        ech_feed((uint8_t)c);
    }
    return 0;
}
#endif
