"""The RP2040's second-stage boot loader as the boot ROM wants it: 256 bytes, the last 4 the
CRC32 of the first 252 (CRC-32/MPEG-2: polynomial 0x04C11DB7, initial value 0xFFFFFFFF, no bit
reflection, no final XOR; stored little-endian). ``boot2.S`` is the code; ``pad_boot2`` makes
the image from its assembled bytes and ``boot2_c_source`` a C file that puts it in ``.boot2``."""

from __future__ import annotations

import struct

BOOT2_SIZE = 256
BOOT2_CODE_MAX = BOOT2_SIZE - 4


def crc32_boot_rom(data: bytes) -> int:
    """CRC-32/MPEG-2 of ``data``, the checksum the RP2040 boot ROM checks."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def pad_boot2(code: bytes) -> bytes:
    """Assembled boot loader code (at most 252 bytes) -> the 256-byte image with its CRC32."""
    if len(code) > BOOT2_CODE_MAX:
        raise ValueError(f"boot2 code is {len(code)} bytes, at most {BOOT2_CODE_MAX} fit")
    body = bytes(code) + bytes(BOOT2_CODE_MAX - len(code))
    return body + struct.pack("<I", crc32_boot_rom(body))


def boot2_c_source(image: bytes) -> str:
    """A C99 file holding the 256-byte image in the ``.boot2`` section the linker script places
    at the start of flash."""
    if len(image) != BOOT2_SIZE:
        raise ValueError(f"a boot2 image is {BOOT2_SIZE} bytes, not {len(image)}")
    rows = []
    for i in range(0, BOOT2_SIZE, 12):
        rows.append("    " + ", ".join(f"0x{b:02X}u" for b in image[i:i + 12]) + ",")
    return ("/* RP2040 second-stage boot loader (firmware/rp2040/boot2.S) with its CRC32. */\n"
            "#include <stdint.h>\n\n"
            "extern const uint8_t ech_boot2_image[256];\n"
            "__attribute__((section(\".boot2\"), used))\n"
            "const uint8_t ech_boot2_image[256] = {\n" + "\n".join(rows) + "\n};\n")
