/* edgecompile device harness: COBS frame parser, CRC, command dispatch (docs/protocol.md).
 * Model-agnostic: talks to the model only through edgecompile_model.h (ecm_*). */
#include "ech_proto.h"

#include "ech_hal.h"
#include "ech_hal_config.h"
#include "edgecompile_model.h"

#if defined(__AVR__)
#include <avr/pgmspace.h>
#define ECH_FLASH PROGMEM
#define ECH_READ_CHAR(p) ((char)pgm_read_byte(p))
#else
#define ECH_FLASH
#define ECH_READ_CHAR(p) (*(p))
#endif

/* A binding that does not name its quantized model reports 32 zero bytes: "not reported". */
#ifndef ECM_QMODEL_SHA256
#define ECM_QMODEL_SHA256 "0000000000000000000000000000000000000000000000000000000000000000"
#endif

#ifndef ECH_MAX_STEPS_PER_FRAME
#define ECH_MAX_STEPS_PER_FRAME 4
#endif
#if ECH_MAX_STEPS_PER_FRAME < 1 || ECH_MAX_STEPS_PER_FRAME > 255
#error "ECH_MAX_STEPS_PER_FRAME must be 1..255"
#endif

#define ECH_MAX_(a, b) ((a) > (b) ? (a) : (b))
#define ECH_REQ_MAX (ECH_HEADER_LEN + ECH_STEP_REQ_FIXED + 2L * ECM_INPUT_DIM * ECH_MAX_STEPS_PER_FRAME)
#define ECH_REPLY_MAX (ECH_HEADER_LEN + 6L + 2L * ECM_HIDDEN_DIM + 4L * ECM_NUM_CLASSES)
#define ECH_INFO_MAX (ECH_HEADER_LEN + ECH_INFO_BODY_LEN)
/* Largest payload (header + body, without CRC) the device accepts or sends. */
#define ECH_MAX_PAYLOAD ECH_MAX_(ECH_MAX_(ECH_REQ_MAX, ECH_REPLY_MAX), ECH_INFO_MAX)
#if ECH_MAX_PAYLOAD > 4096
#error "frame buffer above 4 KB: lower ECH_MAX_STEPS_PER_FRAME"
#endif
#define ECH_BUF_LEN (ECH_MAX_PAYLOAD + ECH_CRC_LEN)
#define ECH_RUN_LEN (1u + 2u * ECM_INPUT_DIM) /* one run of a RUNS frame: count, row */

/* Parser state: decoded bytes go straight into buf (COBS decodes in place, streaming). */
static uint8_t buf[ECH_BUF_LEN];
static uint16_t rx_len;
static uint8_t rx_left;        /* data bytes left in the current COBS block */
static uint8_t rx_zero;        /* a block ended short: a zero precedes the next block */
static uint8_t rx_seen;        /* any non-delimiter byte in this frame */
static uint8_t rx_error;       /* ECH_OK, ECH_TOO_LONG or ECH_BAD_FRAME */

static ecm_state_t state;
static uint16_t state_t;       /* steps since the last reset */
static uint8_t session;        /* 0 until a handshake: a reset device answers NO_SESSION */
static uint32_t cycles_overhead;
static int16_t xq[ECM_INPUT_DIM];

uint16_t ech_crc16(uint16_t crc, const uint8_t *data, uint16_t n)
{
    uint16_t i;
    uint8_t b;
    for (i = 0; i < n; ++i) {
        crc = (uint16_t)(crc ^ (uint16_t)((uint16_t)data[i] << 8));
        for (b = 0; b < 8u; ++b) {
            if (crc & 0x8000u) {
                crc = (uint16_t)((uint16_t)(crc << 1) ^ 0x1021u);
            } else {
                crc = (uint16_t)(crc << 1);
            }
        }
    }
    return crc;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] | (uint16_t)((uint16_t)p[1] << 8));
}

static uint8_t hex_nibble(char c)
{
    if (c >= '0' && c <= '9') {
        return (uint8_t)(c - '0');
    }
    if (c >= 'a' && c <= 'f') {
        return (uint8_t)(c - 'a' + 10);
    }
    if (c >= 'A' && c <= 'F') {
        return (uint8_t)(c - 'A' + 10);
    }
    return 0u;
}

/* COBS-encode buf[0..n) on the fly (no second buffer) and end the frame with 0x00. */
static void send_frame(uint16_t n)
{
    uint16_t crc = ech_crc16(0xFFFFu, buf, n);
    uint16_t i = 0;
    buf[n] = (uint8_t)(crc & 0xFFu);
    buf[n + 1u] = (uint8_t)(crc >> 8);
    n = (uint16_t)(n + ECH_CRC_LEN);
    ech_hal_putc(0x00u); /* leading delimiter: ends whatever garbage the host may hold */
    for (;;) {
        uint16_t j = i;
        uint8_t code;
        while (j < n && buf[j] != 0u && (uint16_t)(j - i) < 254u) {
            ++j;
        }
        code = (uint8_t)(j - i + 1u);
        ech_hal_putc(code);
        while (i < j) {
            ech_hal_putc(buf[i++]);
        }
        if (j >= n) {
            /* A block ending exactly at the end needs no trailing zero; a full block (0xFF)
             * at the end also ends the frame. */
            break;
        }
        if (code != 0xFFu) {
            ++i; /* skip the zero this block stands for */
            if (i == n) {
                ech_hal_putc(0x01u); /* the payload ended in a zero: an empty last block */
                break;
            }
        }
    }
    ech_hal_putc(0x00u);
    ech_hal_flush();
}

static void reply(uint8_t status, uint16_t body_len)
{
    buf[0] = (uint8_t)(buf[0] | ECH_REPLY_BIT);
    buf[2] = status;
    send_frame((uint16_t)(ECH_HEADER_LEN + body_len));
}

static void reply_frame_error(uint8_t status)
{
    buf[0] = (uint8_t)(ECH_CMD_ERROR | ECH_REPLY_BIT);
    buf[1] = 0u; /* the request id cannot be trusted */
    buf[2] = status;
    send_frame(ECH_HEADER_LEN);
}

static void ech_model_reset(void)
{
    ecm_reset(&state);
    state_t = 0u;
}

/* 64 hex digits (in flash on AVR) -> 32 raw bytes at out. */
static void put_sha256(uint8_t *out, const char *hex)
{
    uint8_t i;
    for (i = 0; i < 32u; ++i) {
        out[i] = (uint8_t)((uint8_t)(hex_nibble(ECH_READ_CHAR(hex + 2 * i)) << 4) |
                           hex_nibble(ECH_READ_CHAR(hex + 2 * i + 1)));
    }
}

static void cmd_info(void)
{
    uint8_t *b = buf + ECH_HEADER_LEN;
    static const char sha[65] ECH_FLASH = ECM_MODEL_SHA256; /* flash, not SRAM, on AVR */
    static const char qsha[65] ECH_FLASH = ECM_QMODEL_SHA256;
    if (buf[2] == 0u) {
        reply(ECH_BAD_ARG, 0u);
        return;
    }
    session = buf[2];
    b[0] = 'E';
    b[1] = 'C';
    b[2] = (uint8_t)ECH_PROTO_VERSION;
    b[3] = (uint8_t)ECH_FW_VERSION_MAJOR;
    b[4] = (uint8_t)ECH_FW_VERSION_MINOR;
    b[5] = (uint8_t)ECH_FW_VERSION_PATCH;
    put_u16(b + 6, (uint16_t)ECH_MAX_PAYLOAD);
    put_u16(b + 8, (uint16_t)ECM_INPUT_DIM);
    put_u16(b + 10, (uint16_t)ECM_HIDDEN_DIM);
    put_u16(b + 12, (uint16_t)ECM_NUM_CLASSES);
    put_u16(b + 14, (uint16_t)ECM_SEQ_LEN);
    b[16] = (uint8_t)ECM_WEIGHT_BITS;
    b[17] = ech_cycles_source();
    put_u32(b + 18, ech_cycles_hz());
    put_sha256(b + 22, sha);
    put_u16(b + 54, (uint16_t)ECH_MAX_STEPS_PER_FRAME);
    put_sha256(b + 56, qsha);
    reply(ECH_OK, ECH_INFO_BODY_LEN);
}

static uint32_t timed_elapsed(uint32_t c0, uint32_t c1)
{
    uint32_t d = ech_cycles_elapsed(c0, c1);
    return d > cycles_overhead ? d - cycles_overhead : 0u;
}

#if defined(__GNUC__)
#define ECH_BARRIER() __asm__ volatile("" ::: "memory")
#else
#define ECH_BARRIER() ((void)0)
#endif

static void cmd_step(uint16_t body_len)
{
    const uint8_t *req = buf + ECH_HEADER_LEN;
    uint8_t flags, n, k, left;
    uint16_t t0, d, pos;
    uint16_t out;
    uint32_t cycles = 0u;
    if (body_len < ECH_STEP_REQ_FIXED) {
        reply(ECH_BAD_LENGTH, 0u);
        return;
    }
    flags = req[0];
    n = req[1];
    t0 = get_u16(req + 2);
    if ((flags & (uint8_t)~(ECH_STEP_RESET | ECH_STEP_HIDDEN | ECH_STEP_LOGITS | ECH_STEP_RUNS)) !=
            0u ||
        n > (uint8_t)ECH_MAX_STEPS_PER_FRAME) {
        reply(ECH_BAD_ARG, 0u);
        return;
    }
    if (flags & ECH_STEP_RUNS) {
        /* runs of (count >= 1, one row): whole runs only, the counts summing to n */
        uint16_t total = 0u;
        pos = ECH_HEADER_LEN + ECH_STEP_REQ_FIXED;
        while (pos < (uint16_t)(ECH_HEADER_LEN + body_len)) {
            if (buf[pos] == 0u ||
                (uint32_t)pos + ECH_RUN_LEN > (uint32_t)ECH_HEADER_LEN + body_len) {
                reply(ECH_BAD_LENGTH, 0u);
                return;
            }
            total = (uint16_t)(total + buf[pos]);
            pos = (uint16_t)(pos + ECH_RUN_LEN);
        }
        if (total != n) {
            reply(ECH_BAD_LENGTH, 0u);
            return;
        }
    } else if ((uint32_t)body_len != ECH_STEP_REQ_FIXED + 2UL * ECM_INPUT_DIM * n) {
        reply(ECH_BAD_LENGTH, 0u);
        return;
    }
    if (flags & ECH_STEP_RESET) {
        ech_model_reset();
    }
    if (t0 != state_t) {
        reply(ECH_BAD_SEQUENCE, 0u);
        return;
    }
    if ((uint32_t)state_t + n > 0xFFFFul) {
        reply(ECH_BAD_ARG, 0u);
        return;
    }
    pos = ECH_HEADER_LEN + ECH_STEP_REQ_FIXED;
    left = 0u;
    for (k = 0; k < n; ++k) {
        uint32_t c0, c1;
        if (flags & ECH_STEP_RUNS) {
            if (left == 0u) { /* the next run: its count, then its row */
                left = buf[pos];
                pos = (uint16_t)(pos + 1u);
            } else {
                pos = (uint16_t)(pos - 2u * ECM_INPUT_DIM); /* the same row again */
            }
            --left;
        }
        for (d = 0; d < (uint16_t)ECM_INPUT_DIM; ++d) {
            xq[d] = (int16_t)get_u16(buf + pos);
            pos = (uint16_t)(pos + 2u);
        }
        c0 = ech_cycles_now();
        ECH_BARRIER();
        ecm_step(&state, xq);
        ECH_BARRIER();
        c1 = ech_cycles_now();
        cycles += timed_elapsed(c0, c1);
        ++state_t;
    }
    /* The request has been consumed: the reply overwrites it in place. */
    out = ECH_HEADER_LEN + 6u;
    if (flags & ECH_STEP_HIDDEN) {
        const int16_t *h = ecm_hidden(&state);
        for (d = 0; d < (uint16_t)ECM_HIDDEN_DIM; ++d) {
            put_u16(buf + out, (uint16_t)h[d]);
            out = (uint16_t)(out + 2u);
        }
    }
    if (flags & ECH_STEP_LOGITS) {
        static int32_t logits[ECM_NUM_CLASSES];
        uint32_t c0, c1;
        c0 = ech_cycles_now();
        ECH_BARRIER();
        ecm_logits(&state, logits);
        ECH_BARRIER();
        c1 = ech_cycles_now();
        cycles += timed_elapsed(c0, c1);
        for (d = 0; d < (uint16_t)ECM_NUM_CLASSES; ++d) {
            put_u32(buf + out, (uint32_t)logits[d]);
            out = (uint16_t)(out + 4u);
        }
    }
    put_u16(buf + ECH_HEADER_LEN, state_t);
    put_u32(buf + ECH_HEADER_LEN + 2u, cycles);
    reply(ECH_OK, (uint16_t)(out - ECH_HEADER_LEN));
}

static void dispatch(uint16_t len)
{
    uint8_t cmd = buf[0];
    uint16_t body_len = (uint16_t)(len - ECH_HEADER_LEN);
    if (cmd == ECH_CMD_INFO) {
        cmd_info();
        return;
    }
    if (cmd == 0u || cmd >= ECH_REPLY_BIT || (cmd != ECH_CMD_RESET && cmd != ECH_CMD_STEP &&
                                              cmd != ECH_CMD_ECHO)) {
        reply(ECH_BAD_COMMAND, 0u);
        return;
    }
    if (session == 0u || buf[2] != session) {
        reply(ECH_NO_SESSION, 0u);
        return;
    }
    if (cmd == ECH_CMD_RESET) {
        if (body_len != 0u) {
            reply(ECH_BAD_LENGTH, 0u);
            return;
        }
        ech_model_reset();
        reply(ECH_OK, 0u);
    } else if (cmd == ECH_CMD_STEP) {
        cmd_step(body_len);
    } else {
        reply(ECH_OK, body_len); /* ECHO: the body is already in place */
    }
}

static void frame_end(void)
{
    uint16_t n;
    uint16_t crc;
    if (!rx_seen) {
        return; /* back-to-back delimiters: idle */
    }
    if (rx_error == ECH_OK && rx_left != 0u) {
        rx_error = ECH_BAD_FRAME; /* the last block was cut short */
    }
    if (rx_error != ECH_OK) {
        reply_frame_error(rx_error);
        return;
    }
    n = rx_len;
    if (n < ECH_HEADER_LEN + ECH_CRC_LEN) {
        reply_frame_error(ECH_BAD_LENGTH);
        return;
    }
    n = (uint16_t)(n - ECH_CRC_LEN);
    crc = ech_crc16(0xFFFFu, buf, n);
    if (crc != get_u16(buf + n)) {
        reply_frame_error(ECH_BAD_CRC);
        return;
    }
    dispatch(n);
}

static void rx_start(void)
{
    rx_len = 0u;
    rx_left = 0u;
    rx_zero = 0u;
    rx_seen = 0u;
    rx_error = ECH_OK;
}

static void rx_put(uint8_t b)
{
    if (rx_len < (uint16_t)ECH_BUF_LEN) {
        buf[rx_len++] = b;
    } else {
        rx_error = ECH_TOO_LONG;
    }
}

void ech_feed(uint8_t byte)
{
    if (byte == 0u) {
        frame_end();
        rx_start();
        return;
    }
    rx_seen = 1u;
    if (rx_error != ECH_OK) {
        return; /* skip to the next delimiter */
    }
    if (rx_left == 0u) {
        /* a code byte: the previous short block stood for a zero */
        if (rx_zero) {
            rx_put(0u);
        }
        rx_left = (uint8_t)(byte - 1u);
        rx_zero = (uint8_t)(byte != 0xFFu);
    } else {
        rx_put(byte);
        --rx_left;
    }
}

void ech_init(void)
{
    uint32_t c0, c1;
    rx_start();
    session = 0u;
    ech_model_reset();
    c0 = ech_cycles_now();
    ECH_BARRIER();
    c1 = ech_cycles_now();
    cycles_overhead = ech_cycles_elapsed(c0, c1);
}
