/* libFuzzer target for the device-side frame parser and dispatcher (firmware/harness).
 * Built with clang -fsanitize=fuzzer,address,undefined against the stand-in model; the HAL is
 * replaced by a capture buffer, and every reply the harness sends is checked to be a valid
 * COBS frame with a correct CRC and a reply header. Run by tests/test_fuzz.py. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ech_hal.h"
#include "ech_proto.h"

static uint8_t out[1 << 16];
static size_t out_len;

void ech_hal_init(void) {}
int ech_hal_getc(void) { return -1; }
void ech_hal_putc(uint8_t b)
{
    if (out_len < sizeof out) {
        out[out_len++] = b;
    } else {
        abort(); /* a reply that never ends */
    }
}
void ech_hal_flush(void) {}
uint32_t ech_cycles_now(void) { return 0u; }
uint32_t ech_cycles_elapsed(uint32_t a, uint32_t b) { return b - a; }
uint8_t ech_cycles_source(void) { return ECH_CYCLES_POSIX_NS; }
uint32_t ech_cycles_hz(void) { return 1000000000u; }

static void check_frame(const uint8_t *p, size_t n)
{
    uint8_t dec[1 << 12];
    size_t i = 0, k = 0;
    uint16_t crc;
    if (n == 0u) {
        return;
    }
    while (i < n) {
        uint8_t code = p[i++];
        uint8_t j;
        if (code == 0u) {
            abort();
        }
        for (j = 1; j < code; ++j) {
            if (i >= n || k >= sizeof dec) {
                abort(); /* truncated or oversized reply */
            }
            dec[k++] = p[i++];
        }
        if (code != 0xFFu && i < n) {
            dec[k++] = 0u;
        }
    }
    if (k < 5u) {
        abort();
    }
    crc = ech_crc16(0xFFFFu, dec, (uint16_t)(k - 2u));
    if (crc != (uint16_t)(dec[k - 2u] | (dec[k - 1u] << 8)) || !(dec[0] & 0x80u)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t i, start = 0;
    out_len = 0;
    ech_init();
    for (i = 0; i < size; ++i) {
        ech_feed(data[i]);
    }
    ech_feed(0u);
    for (i = 0; i < out_len; ++i) {
        if (out[i] == 0u) {
            check_frame(out + start, i - start);
            start = i + 1u;
        }
    }
    if (start != out_len) {
        abort(); /* a reply without its closing delimiter */
    }
    return 0;
}
