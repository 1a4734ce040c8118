/* edgecompile device harness: framed request/reply protocol (docs/protocol.md).
 *
 * Wire: COBS(payload || crc16_le(payload)) 0x00.  CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF).
 * Request payload: cmd, seq, session, body...     Reply payload: cmd|0x80, seq, status, body...
 * Portable C99; one static frame buffer; no malloc. */
#ifndef ECH_PROTO_H
#define ECH_PROTO_H

#include <stdint.h>

#define ECH_PROTO_VERSION 3u
#define ECH_FW_VERSION_MAJOR 0u
#define ECH_FW_VERSION_MINOR 3u
#define ECH_FW_VERSION_PATCH 0u

/* Commands (request cmd byte; a reply carries cmd | ECH_REPLY_BIT). */
#define ECH_CMD_INFO 0x01u  /* handshake: adopt the session byte, report versions, dims, hash */
#define ECH_CMD_RESET 0x02u /* model state to zero (h = 0, t = 0) */
#define ECH_CMD_STEP 0x03u  /* n time steps (+ hidden state / logits on request) */
#define ECH_CMD_ECHO 0x04u  /* reply with the request body (link test, round-trip timing) */
#define ECH_CMD_ERROR 0x7Fu /* only in replies (0xFF): a frame that could not be read */
#define ECH_REPLY_BIT 0x80u

/* STEP flags. */
#define ECH_STEP_RESET 0x01u  /* reset the state before the first step (t0 must be 0) */
#define ECH_STEP_HIDDEN 0x02u /* reply with the hidden state after the last step */
#define ECH_STEP_LOGITS 0x04u /* reply with the logits after the last step */
#define ECH_STEP_RUNS 0x08u   /* the inputs as runs: (count u8 >= 1, row i16[D]), counts sum to n */

/* Where each reported cycle count comes from (INFO reply). */
#define ECH_CYCLES_AVR_TIMER1 1u /* AVR Timer1 at clk/1 extended to 32 bits: CPU cycles */
#define ECH_CYCLES_DWT 2u        /* Cortex-M DWT CYCCNT: CPU cycles */
#define ECH_CYCLES_SYSTICK 3u    /* Cortex-M SysTick on the CPU clock (QEMU -icount: instructions) */
#define ECH_CYCLES_POSIX_NS 4u   /* host process: CLOCK_MONOTONIC nanoseconds */
#define ECH_CYCLES_TIMER 5u      /* a peripheral timer at the reported rate (nRF51 TIMER0: CPU cycles) */

#define ECH_HEADER_LEN 3u
#define ECH_CRC_LEN 2u
#define ECH_STEP_REQ_FIXED 4u /* flags, n, t0 (u16) */
#define ECH_INFO_BODY_LEN 88u

/* Status codes, from the shared table. */
#define ECH_STATUS(code, name, text) ECH_##name = code,
enum ech_status { 
#include "ech_status.def"
    ECH_STATUS_END_ 
};
#undef ECH_STATUS

/* Feed one received byte to the protocol engine; sends a reply through the HAL when a frame ends. */
void ech_init(void);
void ech_feed(uint8_t byte);

/* CRC-16/CCITT-FALSE update over n bytes (exposed for tests). */
uint16_t ech_crc16(uint16_t crc, const uint8_t *data, uint16_t n);

#endif
