"""Bare-metal firmware for the real Cortex-M boards (firmware/stm32f4, stm32f1, nrf51, nrf52,
rp2040): every board builds warning-free and small; the three with a QEMU twin of their SoC
answer the harness protocol bit for bit; the clock, pin and baud set-up that QEMU ignores is
checked register by register against values worked out from the reference manuals; the RP2040's
boot loader and UF2 image have the layout its boot ROM expects."""

from __future__ import annotations

import binascii
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.link.client import Client

from . import harness_build as hb
from . import real_boards_build as rb
from .helpers import standin

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real_boards"
REAL_BOARDS = ["nucleo_f401re", "bluepill_f103c8", "microbit", "nano33ble", "pico"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("real_boards")
    return {board: rb.build(out, board) for board in rb.BOARDS}


# ---- 1. builds -------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("board", sorted(rb.BOARDS))
def test_board_builds_warning_free_and_small(images, board):
    flash, ram = rb.sizes(images[board])
    b = rb.BOARDS[board]
    print(f"{board}: flash {flash} B of {b.flash[1]}, static RAM {ram} B of {b.ram[1]}")
    # harness + stand-in model: a few KB of flash; RAM is the frame buffer and the state
    assert 2000 < flash <= 4096, flash
    assert 0 < ram <= 512, ram
    assert ram + 2048 <= b.ram[1]


@pytest.mark.parametrize("family,cpu", [("stm32f4", "cortex-m4"), ("stm32f1", "cortex-m3"),
                                        ("nrf51", "cortex-m0"), ("nrf52", "cortex-m4"),
                                        ("rp2040", "cortex-m0plus")])
def test_family_sources_are_clean_under_clang(tmp_path, family, cpu):
    fam = rb.FIRMWARE / family
    for src in sorted(fam.glob("*.c")):
        subprocess.run([hb.need("clang"), "--target=arm-none-eabi", f"-mcpu={cpu}", "-mthumb",
                        "-ffreestanding", *hb.WARN, f"-I{hb.HARNESS}", f"-I{fam}", f"-I{rb.MCU}",
                        "-c", str(src), "-o", str(tmp_path / f"{src.stem}.o")], check=True)


def _vectors(elf: Path) -> tuple[int, int, int]:
    """(address, initial SP, reset vector) of the .isr_vector section."""
    out = subprocess.run([hb.need("arm-none-eabi-objdump"), "-h", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    row = next(ln.split() for ln in out.splitlines() if " .isr_vector " in ln)
    addr, offset = int(row[3], 16), int(row[5], 16)
    sp, reset = struct.unpack_from("<II", elf.read_bytes(), offset)
    return addr, sp, reset


@pytest.mark.parametrize("board,vectors,estack", [
    ("nucleo_f401re", 0x08000000, 0x20018000),
    ("bluepill_f103c8", 0x08000000, 0x20005000),
    ("bluepill_f103c8@stm32vldiscovery", 0x08000000, 0x20002000),
    ("microbit", 0x0, 0x20004000),
    ("nano33ble", 0x10000, 0x20040000),
    ("pico", 0x10000100, 0x20040000),
])
def test_memory_map_comes_from_the_board(images, board, vectors, estack):
    """Vector table at the board's flash origin (after boot2 on the Pico), stack at the top of
    its RAM: the Blue Pill's 20 KB stack top lies past the twin's 8 KB, hence the second link."""
    addr, sp, reset = _vectors(images[board])
    assert (addr, sp) == (vectors, estack)
    b = rb.BOARDS[board]
    assert reset & 1 and b.flash[0] <= reset < b.flash[0] + b.flash[1]


# ---- 2. emulated twins -------------------------------------------------------------------------

#: image -> (instructions per count of its cycle counter under -icount shift=0, as QEMU 7.2
#: clocks it: netduinoplus2 SysTick on the 168 MHz SYSCLK, stm32vldiscovery SysTick on 24 MHz,
#: the nRF51's TIMER0 at 16 MHz), reported cycle source
TWIN_COUNTS = {
    "nucleo_f401re": (1e9 / 168e6, "systick"),
    "bluepill_f103c8@stm32vldiscovery": (1e9 / 24e6, "systick"),
    "microbit": (1e9 / 16e6, "peripheral-timer"),
}


@pytest.mark.slow
@pytest.mark.parametrize("image", sorted(rb.TWINS))
def test_twin_runs_the_harness_bit_exact(images, image, tmp_path):
    """Handshake and inferences of the stand-in model on the twin equal the host computation;
    the twin's counts are calibrated against a loop of known length and reported as
    instructions per inference."""
    per_count, source = TWIN_COUNTS[image]
    rng = np.random.default_rng(7)
    with rb.run_twin(images[image], image) as port:
        client = Client(port)
        info = client.handshake()
        assert (info.input_dim, info.hidden_dim, info.num_classes) == (standin.D, standin.H,
                                                                       standin.C)
        assert info.model_sha256 == standin.SHA256 and info.max_steps_per_frame == 32
        assert info.cycle_source == source
        for T in (0, 1, 31, 32, 33, 100):
            x = rng.integers(-32768, 32768, size=(T, standin.D)).astype(np.int16)
            got = client.infer(x)
            np.testing.assert_array_equal(got.logits, standin.run(x)[0])
        x = rng.integers(-2000, 2000, size=(40, standin.D)).astype(np.int16)
        traced = client.infer(x, trace=True)
        np.testing.assert_array_equal(traced.hidden, standin.run(x)[1])
        np.testing.assert_array_equal(traced.logits, standin.run(x)[0])
        counts = client.infer(x).cycles
    cal = rb.build(tmp_path, image, app=[FIXTURES / "count_cal.c"])
    with rb.run_twin(cal, image) as port:
        port.timeout = 5
        for _ in range(2):  # the second reading runs from the translation cache
            port.write(b"x")
            line = port.readline()
    measured = 200_000 / int(line, 16)
    assert abs(measured - per_count) / per_count < 0.01, (measured, per_count)
    print(f"{image}: {counts} counts = {counts * measured:.0f} instructions per inference "
          f"(T=40, stand-in model), {measured:.3f} instructions per count")
    assert counts > 0


# ---- 3. what QEMU ignores ----------------------------------------------------------------------

ANY = None  # a RAM address (an EasyDMA buffer): any value is right

#: family -> (register seeds, expected writes in order). Seeds: "ADDR=V" a reset value from the
#: manual's register description, "ADDR:V" a status register the hardware drives.
#: Every expected value below is worked out by hand from the manual section named beside it.
MANUAL = {
    # RM0368 Rev 5, STM32F401xB/C/D/E reference manual
    "stm32f4": (
        ["40023800=83",            # 6.3.1 RCC_CR reset 0x0000 XX83 (HSION, HSIRDY, HSITRIM 16)
         "40020000=A8000000",      # 8.4.1 GPIOA_MODER reset (PA13-15 debug)
         "40020008=0C000000",      # 8.4.3 GPIOA_OSPEEDR reset
         "4002000C=64000000",      # 8.4.4 GPIOA_PUPDR reset
         "40004400:C0"],           # 19.6.1 USART_SR: TXE, TC
        [(0x40023800, 0x00000083),  # 6.3.1 RCC_CR: HSION kept on
         (0x40023C00, 0x00000700),  # 3.8.1 FLASH_ACR: LATENCY 0 WS (3.4.1: <= 30 MHz at 3.3 V),
                                    #       PRFTEN bit 8, ICEN bit 9, DCEN bit 10
         (0x40023808, 0x00000000),  # 6.3.3 RCC_CFGR: SW = HSI, HPRE = PPRE1 = PPRE2 = /1
         (0x40023830, 0x00000001),  # 6.3.9 RCC_AHB1ENR: GPIOAEN bit 0
         (0x40023840, 0x00020000),  # 6.3.11 RCC_APB1ENR: USART2EN bit 17
         (0x40020020, 0x00007700),  # 8.4.9 GPIOA_AFRL: AFRL2 = AFRL3 = AF7 (USART2, datasheet
                                    #       DS10086 table 9)
         (0x40020008, 0x0C0000A0),  # 8.4.3 OSPEEDR2/3 = 10 high speed
         (0x4002000C, 0x64000040),  # 8.4.4 PUPDR3 = 01 pull-up on RX
         (0x40020000, 0xA80000A0),  # 8.4.1 MODER2/3 = 10 alternate function
         (0x4000440C, 0x00000000),  # 19.6.4 USART_CR1: off while configuring
         (0x40004410, 0x00000000),  # 19.6.5 USART_CR2: 1 stop bit
         (0x40004414, 0x00000000),  # 19.6.6 USART_CR3: no flow control
         (0x40004408, 0x0000008B),  # 19.3.4 USARTDIV = 16 MHz / (16 x 115200) = 8.68:
                                    #       mantissa 8, fraction round(0.68 x 16) = 11
         (0x4000440C, 0x0000200C),  # 19.6.4 UE bit 13, TE bit 3, RE bit 2; M = 0: 8N1
         (0x40004404, 0x00000041)],  # 19.6.2 USART_DR: the byte sent
    ),
    # RM0008 Rev 21, STM32F101/102/103/105/107 reference manual
    "stm32f1": (
        ["40021000=83",            # 7.3.1 RCC_CR reset 0x000X XX83
         "40022000=30",            # 3.3.3 FLASH_ACR reset: PRFTBS, PRFTBE
         "40010804=44444444",      # 9.2.2 GPIOx_CRH reset: all floating inputs
         "40013800:C0"],           # 27.6.1 USART_SR: TXE, TC
        [(0x40021000, 0x00000083),  # 7.3.1 RCC_CR: HSION kept on
         (0x40022000, 0x00000010),  # 3.3.3 FLASH_ACR: LATENCY 000 (0 < SYSCLK <= 24 MHz),
                                    #       PRFTBE bit 4
         (0x40021004, 0x00000000),  # 7.3.2 RCC_CFGR: SW = HSI, all prescalers /1
         (0x40021018, 0x00004005),  # 7.3.7 RCC_APB2ENR: USART1EN bit 14, IOPAEN bit 2,
                                    #       AFIOEN bit 0
         (0x40010810, 0x00000400),  # 9.2.5 GPIOx_BSRR: BS10, ODR10 = 1 selects the pull-up
         (0x40010804, 0x444448B4),  # 9.2.2 CRH: PA9 CNF 10 MODE 11 (AF push-pull 50 MHz),
                                    #       PA10 CNF 10 MODE 00 (input pull-up), 9.1.11 table 24
         (0x4001380C, 0x00000000),  # 27.6.4 USART_CR1 off
         (0x40013810, 0x00000000),  # 27.6.5 USART_CR2: 1 stop bit
         (0x40013814, 0x00000000),  # 27.6.6 USART_CR3
         (0x40013808, 0x00000045),  # 27.3.4 USARTDIV = 8 MHz / (16 x 115200) = 4.34:
                                    #       mantissa 4, fraction round(0.34 x 16) = 5
         (0x4001380C, 0x0000200C),  # 27.6.4 UE bit 13, TE bit 3, RE bit 2
         (0x40013804, 0x00000041)],  # 27.6.2 USART_DR
    ),
    # nRF51 Series Reference Manual v3.0
    "nrf51": (
        ["4000211C:1"],            # 29 UART, EVENTS_TXDRDY: the byte went out
        [(0x40000550, 0x000000FF),  # 13 CLOCK, XTALFREQ: 0xFF = 16 MHz crystal
         (0x40000100, 0x00000000),  # 13 EVENTS_HFCLKSTARTED cleared
         (0x40000000, 0x00000001),  # 13 TASKS_HFCLKSTART
         (0x50000508, 0x01000000),  # 14 GPIO OUTSET: P0.24 high (29.2: TXD idles high)
         (0x50000760, 0x00000001),  # 14 PIN_CNF[24]: DIR output, input connected
         (0x50000764, 0x00000000),  # 14 PIN_CNF[25]: DIR input, input connected
         (0x40002508, 0xFFFFFFFF),  # 29 UART, PSELRTS: disconnected
         (0x40002510, 0xFFFFFFFF),  # 29 UART, PSELCTS: disconnected
         (0x4000250C, 0x00000018),  # 29 UART, PSELTXD = 24
         (0x40002514, 0x00000019),  # 29 UART, PSELRXD = 25
         (0x4000256C, 0x00000000),  # 29 UART, CONFIG: HWFC off, no parity
         (0x40002524, 0x01D7E000),  # 29 UART, BAUDRATE table: Baud115200
         (0x40002500, 0x00000004),  # 29 UART, ENABLE = 4: UART on
         (0x40002108, 0x00000000),  # EVENTS_RXDRDY cleared
         (0x4000211C, 0x00000000),  # EVENTS_TXDRDY cleared
         (0x40002000, 0x00000001),  # TASKS_STARTRX
         (0x40002008, 0x00000001),  # TASKS_STARTTX
         (0x40008004, 0x00000001),  # 18 TIMER, TIMER0 TASKS_STOP
         (0x40008504, 0x00000000),  # 18 TIMER, MODE = timer
         (0x40008508, 0x00000003),  # 18 TIMER, BITMODE = 32 bit
         (0x40008510, 0x00000000),  # 18 TIMER, PRESCALER 0: fTIMER = 16 MHz / 2^0
         (0x4000800C, 0x00000001),  # TASKS_CLEAR
         (0x40008000, 0x00000001),  # TASKS_START
         (0x4000251C, 0x00000041),  # 29 UART, TXD
         (0x4000211C, 0x00000000)],  # EVENTS_TXDRDY cleared after the byte
    ),
    # nRF52840 Product Specification v1.7
    "nrf52": (
        ["40002120:1"],            # 6.34 UARTE, EVENTS_ENDTX: the DMA transfer ended
        [(0x40000100, 0x00000000),  # 6.4 CLOCK, EVENTS_HFCLKSTARTED cleared
         (0x40000000, 0x00000001),  # 6.4 CLOCK, TASKS_HFCLKSTART (HFXO)
         (0x50000808, 0x00000008),  # 6.9 GPIO, P1 (0x50000300) OUTSET: P1.03 high
         (0x50000A0C, 0x00000001),  # 6.9 GPIO, P1 PIN_CNF[3]: output
         (0x50000A28, 0x00000000),  # 6.9 GPIO, P1 PIN_CNF[10]: input, buffer connected
         (0x40002508, 0xFFFFFFFF),  # 6.34 UARTE, PSEL.RTS: CONNECT = 1 disconnected
         (0x40002510, 0xFFFFFFFF),  # 6.34 UARTE, PSEL.CTS
         (0x4000250C, 0x00000023),  # 6.34 UARTE, PSEL.TXD: PIN 3, PORT 1 (bit 5), connected
         (0x40002514, 0x0000002A),  # 6.34 UARTE, PSEL.RXD: PIN 10, PORT 1
         (0x4000256C, 0x00000000),  # 6.34 UARTE, CONFIG: no HWFC, no parity, 1 stop bit
         (0x40002524, 0x01D60000),  # 6.34 UARTE, BAUDRATE table (UARTE): Baud115200
         (0x40002500, 0x00000008),  # 6.34 UARTE, ENABLE = 8: UARTE on
         (0x40002534, ANY),         # RXD.PTR: a RAM buffer
         (0x40002538, 0x00000001),  # RXD.MAXCNT = 1 byte
         (0x40002110, 0x00000000),  # EVENTS_ENDRX cleared
         (0x40002000, 0x00000001),  # TASKS_STARTRX
         (0x40002544, ANY),         # TXD.PTR
         (0x40002548, 0x00000001),  # TXD.MAXCNT: the one byte sent
         (0x40002120, 0x00000000),  # EVENTS_ENDTX cleared
         (0x40002008, 0x00000001),  # TASKS_STARTTX
         (0x40002120, 0x00000000)],  # EVENTS_ENDTX cleared after it
    ),
    # RP2040 datasheet (build 2023-06)
    "rp2040": (
        ["40034018:90"],           # 4.2.8 UARTFR reset: TXFE, RXFE (TX FIFO not full)
        [(0x40008078, 0x00000000),  # 2.15.7 CLK_SYS_RESUS_CTRL: resus off
         (0x40024000, 0x00000AA0),  # 2.16.7 XOSC CTRL: FREQ_RANGE 0xAA0 = 1-15 MHz
         (0x4002400C, 0x0000002F),  # 2.16.3 STARTUP DELAY = (12 MHz x 1 ms) / 256 = 47
         (0x40024000, 0x00FABAA0),  # 2.16.7 CTRL ENABLE (23:12) = 0xFAB
         (0x4000803C, 0x00000000),  # 2.15.7 CLK_SYS_CTRL: SRC = clk_ref
         (0x40008030, 0x00000000),  # 2.15.7 CLK_REF_CTRL: SRC = rosc
         (0x4000E000, 0x00001000),  # 2.14.3 + 2.1.2: RESET set alias, pll_sys bit 12
         (0x4000F000, 0x00001000),  # clear alias: pll_sys out of reset
         (0x40028000, 0x00000001),  # 2.18.4 PLL CS: REFDIV 1
         (0x40028008, 0x0000007D),  # 2.18.4 FBDIV_INT 125: VCO 12 MHz x 125 = 1500 MHz
         (0x40028004, 0x0000000C),  # 2.18.4 PWR reset 0x2D with PD (0), VCOPD (5) cleared
         (0x4002800C, 0x00062000),  # 2.18.4 PRIM POSTDIV1 (18:16) 6, POSTDIV2 (14:12) 2
         (0x40028004, 0x00000004),  # 2.18.4 PWR: POSTDIVPD (3) cleared too
         (0x40008034, 0x00000100),  # 2.15.7 CLK_REF_DIV: INT (31:8) = 1
         (0x40008030, 0x00000002),  # 2.15.7 CLK_REF_CTRL: SRC = xosc_clksrc
         (0x40008040, 0x00000100),  # 2.15.7 CLK_SYS_DIV: INT = 1
         (0x4000803C, 0x00000001),  # 2.15.7 CLK_SYS_CTRL: SRC = aux, AUXSRC 0 = pll_sys
         (0x40008048, 0x00000800),  # 2.15.7 CLK_PERI_CTRL: ENABLE bit 11, AUXSRC 0 = clk_sys
         (0x4000E000, 0x00400000),  # 2.14.3 uart0 (bit 22) into reset
         (0x4000F000, 0x00400120),  # out of reset: uart0 22, pads_bank0 8, io_bank0 5
         (0x4001C004, 0x00000052),  # 2.19.6.3 GPIO0 pad: IE (6), DRIVE 4 mA (01 at 5:4),
                                    #           SCHMITT (1)
         (0x4001C008, 0x0000005A),  # GPIO1 pad: the same and PUE (3): pull-up on RX
         (0x40014004, 0x00000002),  # 2.19.6.1 GPIO0_CTRL FUNCSEL 2 = UART0_TX (2.19.2 table)
         (0x4001400C, 0x00000002),  # GPIO1_CTRL FUNCSEL 2 = UART0_RX
         (0x40034030, 0x00000000),  # 4.2.8 UARTCR: off while configuring
         (0x40034024, 0x00000043),  # 4.2.7.1 divisor 125 MHz / (16 x 115200) = 67.817: IBRD 67
         (0x40034028, 0x00000034),  #         FBRD = round(0.817 x 64) = 52
         (0x4003402C, 0x00000070),  # 4.2.8 UARTLCR_H: WLEN 11 (6:5) 8 bits, FEN (4)
         (0x40034030, 0x00000301),  # 4.2.8 UARTCR: UARTEN (0), TXE (8), RXE (9)
         (0x40034000, 0x00000041)],  # UARTDR
    ),
}

#: family -> status registers the set-up must poll (bounded) before going on
POLLED = {
    "stm32f4": {0x40023800},               # RCC_CR HSIRDY
    "stm32f1": {0x40021000},               # RCC_CR HSIRDY
    "nrf51": {0x40000100},                 # EVENTS_HFCLKSTARTED
    "nrf52": {0x40000100},
    "rp2040": {0x40024004, 0x40028000, 0x4000C008, 0x40008038, 0x40008044},  # XOSC STABLE,
    # PLL LOCK, RESET_DONE, CLK_REF_SELECTED, CLK_SYS_SELECTED
}


def _record(tmp_path: Path, family: str, cc: str) -> tuple[list[tuple[int, int]], set[int]]:
    fam = rb.FIRMWARE / family
    cycles = (["-DECH_RECORD_STUB_CYCLES"] if family != "nrf51"
              else [str(fam / "ech_cycles_nrf51.c")])  # TIMER0 set-up is part of the check
    exe = tmp_path / f"record_{family}"
    subprocess.run([hb.need(cc), *hb.WARN, f"-I{hb.HARNESS}", f"-I{fam}", f"-I{rb.MCU}",
                    f"-I{FIXTURES}", '-DECH_MMIO_HEADER="mmio_record.h"',
                    "-DECH_MMIO_RD(a)=ech_test_rd((uint32_t)(a))",
                    "-DECH_MMIO_WR(a,v)=ech_test_wr((uint32_t)(a),(uint32_t)(v))",
                    "-DECH_WAIT_LIMIT=1000", str(FIXTURES / "mmio_record.c"),
                    str(fam / f"ech_hal_{family}.c"), *cycles, "-o", str(exe)], check=True)
    out = subprocess.run([str(exe), *MANUAL[family][0]], capture_output=True, text=True,
                         timeout=30, check=True).stdout.split("\n")
    writes = [(int(ln.split()[1], 16), int(ln.split()[2], 16)) for ln in out
              if ln.startswith("W ")]
    reads = {int(ln.split()[1], 16) for ln in out if ln.startswith("R ")}
    assert "INIT DONE" in out
    return writes, reads


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("family", sorted(MANUAL))
def test_setup_writes_match_the_reference_manual(tmp_path, family, cc):
    """Every register write of the clock, pin, baud (and on the nRF51 the timer) set-up and of
    one sent byte, in order, against the manual; the bounded waits poll the right flags."""
    writes, reads = _record(tmp_path, family, cc)
    expected = MANUAL[family][1]
    assert [a for a, _ in writes] == [a for a, _ in expected], [hex(a) for a, _ in writes]
    for (addr, got), (_, want) in zip(writes, expected, strict=True):
        if want is ANY:
            assert got != 0, hex(addr)
        else:
            assert got == want, f"0x{addr:08X}: wrote 0x{got:08X}, manual says 0x{want:08X}"
    assert POLLED[family] <= reads, sorted(hex(a) for a in reads)


def test_rp2040_clock_tree_gives_125_mhz_and_115200_baud(tmp_path):
    """The recorded PLL and divisor values, put through the datasheet's formulas."""
    w = dict(_record(tmp_path, "rp2040", "gcc")[0])
    refdiv, fbdiv, prim = w[0x40028000] & 0x3F, w[0x40028008] & 0xFFF, w[0x4002800C]
    vco = 12_000_000 // refdiv * fbdiv
    assert 750e6 <= vco <= 1600e6 and 16 <= fbdiv <= 320  # 2.18.2 limits
    sys_hz = vco / (((prim >> 16) & 7) * ((prim >> 12) & 7))
    assert sys_hz == 125e6
    baud = sys_hz / (16 * (w[0x40034024] + w[0x40034028] / 64))
    assert abs(baud / 115200 - 1) < 0.001


# ---- 4. RP2040 boot loader and UF2 ---------------------------------------------------------------

def pico_sdk_checksum(data: bytes) -> int:
    """The boot ROM's CRC as pico-sdk's pad_checksum script computes it with the seed its build
    passes (-s 0xffffffff): bit-reversed zlib CRC32, an independent formula for boot2.py's."""
    def rev(x: int, width: int) -> int:
        return int(f"{x:0{width}b}"[::-1], 2)
    seed = 0xFFFFFFFF
    crc = binascii.crc32(bytes(rev(b, 8) for b in data), seed ^ 0xFFFFFFFF) ^ 0xFFFFFFFF
    return rev(crc & 0xFFFFFFFF, 32)


def parse_uf2(blob: bytes) -> tuple[dict[int, bytes], list[tuple[int, ...]]]:
    """UF2 parser following the format's specification: {address: payload}, headers."""
    assert len(blob) % 512 == 0 and blob
    payload, headers = {}, []
    for i in range(0, len(blob), 512):
        blk = blob[i:i + 512]
        m0, m1, flags, addr, size, no, count, fam = struct.unpack_from("<8I", blk)
        (end,) = struct.unpack_from("<I", blk, 508)
        assert (m0, m1, end) == (0x0A324655, 0x9E5D5157, 0x0AB16F30)
        assert flags == 0x2000 and fam == 0xE48BFF56
        assert size == 256 and addr % 256 == 0 and no == i // 512
        assert blk[32 + size:508] == bytes(476 - size)
        payload[addr] = blk[32:32 + size]
        headers.append((addr, no, count))
    assert {c for _, _, c in headers} == {len(headers)}
    return payload, headers


def test_crc_is_the_boot_roms():
    boot2 = rb.load_module("boot2")
    assert boot2.crc32_boot_rom(b"123456789") == 0x0376E6E7  # CRC-32/MPEG-2 check value
    rng = np.random.default_rng(3)
    for n in (0, 1, 252):
        data = rng.integers(0, 256, n).astype(np.uint8).tobytes()
        assert boot2.crc32_boot_rom(data) == pico_sdk_checksum(data)
    with pytest.raises(ValueError, match="at most 252"):
        boot2.pad_boot2(bytes(253))


def test_pico_image_and_uf2(images, tmp_path):
    uf2 = rb.load_module("uf2")
    boot2 = rb.load_module("boot2")
    elf = images["pico"]
    flat = tmp_path / "pico.bin"
    subprocess.run([hb.need("arm-none-eabi-objcopy"), "-O", "binary", str(elf), str(flat)],
                   check=True)
    image = flat.read_bytes()
    # boot2: 256 bytes at 0x10000000, CRC32 of the first 252 in the last 4, code in between
    assert struct.unpack_from("<I", image, 252)[0] == pico_sdk_checksum(image[:252])
    assert image[:4] != bytes(4) and len(image) > 0x100
    sp, reset = struct.unpack_from("<II", image, 0x100)  # where boot2 looks for the vectors
    assert sp == 0x20040000 and reset & 1 and 0x10000100 < reset < 0x10000000 + len(image)
    assert boot2.pad_boot2(image[:252].rstrip(b"\0")) == image[:256]
    for blob in (uf2.elf_to_uf2(elf.read_bytes()), uf2.bin_to_uf2(image)):
        payload, headers = parse_uf2(blob)
        addrs = [a for a, _, _ in headers]
        assert addrs == list(range(0x10000000, 0x10000000 + 256 * len(addrs), 256))
        joined = b"".join(payload[a] for a in addrs)
        assert joined[:len(image)] == image and not any(joined[len(image):])
    out = tmp_path / "pico.uf2"
    assert uf2.main([str(elf), str(out)]) == 0
    assert out.read_bytes() == uf2.elf_to_uf2(elf.read_bytes())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 64), st.binary(min_size=1, max_size=700)),
                min_size=1, max_size=4))
def test_uf2_places_every_byte(pieces):
    """Property: for any set of non-overlapping pieces, every byte lands at its address and
    every other byte of a touched page is zero."""
    uf2 = rb.load_module("uf2")
    segs, addr = [], 0x10000000
    for gap, data in pieces:
        addr += gap
        segs.append((addr, data))
        addr += len(data)
    payload, _ = parse_uf2(uf2.uf2_from_segments(segs))
    mem = {a + i: b for a, page in payload.items() for i, b in enumerate(page)}
    want = {a + i: b for a, data in segs for i, b in enumerate(data)}
    assert all(mem[a] == b for a, b in want.items())
    assert all(v == 0 for a, v in mem.items() if a not in want)
    assert {a - a % 256 for a in want} == set(payload)


def test_uf2_rejects_what_it_cannot_place():
    uf2 = rb.load_module("uf2")
    with pytest.raises(ValueError, match="aligned"):
        uf2.bin_to_uf2(b"x", base=0x10000001)
    with pytest.raises(ValueError, match="nothing"):
        uf2.uf2_from_segments([])
    with pytest.raises(ValueError, match="ELF"):
        uf2.elf_to_uf2(b"not an elf")
