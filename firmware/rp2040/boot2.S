/* Second-stage boot loader of the RP2040 for a standard QSPI flash (W25Q080 on the Pico, and any
 * flash that answers the serial 03h read command). The boot ROM copies these 256 bytes to SRAM
 * (0x20041F00), checks the CRC32 in their last 4 bytes and runs them. This code sets up the
 * XIP SSI (RP2040 datasheet 4.10: DW_apb_ssi) for plain 03h reads, 24-bit address, one data bit
 * per clock, SCK = clk_sys / 4, then enters the application whose vector table follows at
 * 0x10000100: VTOR, stack pointer, reset handler. Called as a function (lr != 0) it returns.
 * boot2.py pads the assembled code to 252 bytes and appends the CRC32. */
    .syntax unified
    .cpu cortex-m0plus
    .thumb

    .equ XIP_SSI_BASE, 0x18000000
    .equ SSI_CTRLR0, 0x00
    .equ SSI_CTRLR1, 0x04
    .equ SSI_SSIENR, 0x08
    .equ SSI_BAUDR, 0x14
    .equ SSI_SPI_CTRLR0, 0xF4
    /* CTRLR0: SPI_FRF (22:21) = 0 standard SPI, DFS_32 (20:16) = 31 (32-bit frames),
     * TMOD (9:8) = 3 EEPROM read (send instruction + address, then receive). */
    .equ CTRLR0_XIP, (31 << 16) | (3 << 8)
    /* SPI_CTRLR0: XIP_CMD (31:24) = 0x03, INST_L (9:8) = 2 (8-bit instruction),
     * ADDR_L (5:2) = 6 (24-bit address), TRANS_TYPE (1:0) = 0 (instruction and address serial). */
    .equ SPI_CTRLR0_XIP, (0x03 << 24) | (2 << 8) | (6 << 2)
    .equ CLKDIV, 4
    .equ APP_VECTORS, 0x10000100
    .equ M0PLUS_VTOR, 0xE000ED08

    .section .text.boot2, "ax"
    .global ech_boot2
    .type ech_boot2, %function
    .thumb_func
ech_boot2:
    push {lr}
    ldr r3, =XIP_SSI_BASE
    movs r1, #0
    str r1, [r3, #SSI_SSIENR]       /* SSI off while configuring */
    movs r1, #CLKDIV
    str r1, [r3, #SSI_BAUDR]
    ldr r1, =CTRLR0_XIP
    str r1, [r3, #SSI_CTRLR0]
    ldr r1, =SPI_CTRLR0_XIP
    ldr r0, =XIP_SSI_BASE + SSI_SPI_CTRLR0
    str r1, [r0]
    movs r1, #0
    str r1, [r3, #SSI_CTRLR1]       /* NDF = 0: one 32-bit frame per XIP access */
    movs r1, #1
    str r1, [r3, #SSI_SSIENR]       /* SSI on: flash is now mapped at 0x10000000 */
    pop {r0}
    cmp r0, #0
    beq 1f
    bx r0                           /* called as a function: return */
1:
    ldr r0, =APP_VECTORS
    ldr r1, =M0PLUS_VTOR
    str r0, [r1]
    ldmia r0, {r0, r1}
    msr msp, r0
    bx r1
    .ltorg
    .size ech_boot2, . - ech_boot2
