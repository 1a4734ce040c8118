"""UF2 images (https://github.com/microsoft/uf2) for boards whose boot loader shows a USB drive,
e.g. the Raspberry Pi Pico's RPI-RP2: copying the .uf2 file onto the drive flashes the chip.

Each 512-byte block carries 256 bytes of payload for one 256-byte-aligned flash address:
magic 0x0A324655, 0x9E5D5157, flags (0x2000: the family id field is set), target address,
payload size, block number, block count, family id, 476 data bytes (payload, then zeros),
magic 0x0AB16F30. All fields little-endian."""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable
from pathlib import Path

UF2_MAGIC_START0 = 0x0A324655
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_FAMILY_ID = 0x00002000
UF2_BLOCK_SIZE = 512
UF2_DATA_SIZE = 476
UF2_PAYLOAD = 256
RP2040_FAMILY_ID = 0xE48BFF56
RP2040_FLASH_BASE = 0x10000000

_HEADER = struct.Struct("<8I")


def uf2_from_segments(segments: Iterable[tuple[int, bytes]],
                      family_id: int = RP2040_FAMILY_ID) -> bytes:
    """(load address, bytes) pieces -> UF2 file: one block per touched 256-byte page, in address
    order; bytes of a page that no piece covers are zero."""
    pages: dict[int, bytearray] = {}
    for addr, data in segments:
        for i, byte in enumerate(data):
            a = addr + i
            page = pages.setdefault(a - a % UF2_PAYLOAD, bytearray(UF2_PAYLOAD))
            page[a % UF2_PAYLOAD] = byte
    if not pages:
        raise ValueError("nothing to put in the UF2 image")
    out = bytearray()
    count = len(pages)
    for no, base in enumerate(sorted(pages)):
        out += _HEADER.pack(UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_FLAG_FAMILY_ID, base,
                            UF2_PAYLOAD, no, count, family_id)
        out += bytes(pages[base]) + bytes(UF2_DATA_SIZE - UF2_PAYLOAD)
        out += struct.pack("<I", UF2_MAGIC_END)
    return bytes(out)


def bin_to_uf2(data: bytes, base: int = RP2040_FLASH_BASE,
               family_id: int = RP2040_FAMILY_ID) -> bytes:
    """A flat binary (``objcopy -O binary``) loaded at ``base`` -> UF2 file."""
    if base % UF2_PAYLOAD:
        raise ValueError(f"base 0x{base:x} is not 256-byte aligned")
    return uf2_from_segments([(base, bytes(data))], family_id)


def elf_load_segments(elf: bytes) -> list[tuple[int, bytes]]:
    """The file contents of a 32-bit little-endian ELF's PT_LOAD segments, each at its physical
    (load) address: initialised RAM data lands where the start-up code copies it from."""
    if elf[:4] != b"\x7fELF" or elf[4] != 1 or elf[5] != 1:
        raise ValueError("not a 32-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<I", elf, 28)
    phentsize, phnum = struct.unpack_from("<HH", elf, 42)
    segments = []
    for i in range(phnum):
        p_type, p_offset, _vaddr, p_paddr, p_filesz = struct.unpack_from(
            "<5I", elf, phoff + i * phentsize)
        if p_type == 1 and p_filesz:
            segments.append((p_paddr, elf[p_offset:p_offset + p_filesz]))
    return segments


def elf_to_uf2(elf: bytes, family_id: int = RP2040_FAMILY_ID) -> bytes:
    """An ELF image -> UF2 file of its loadable contents."""
    return uf2_from_segments(elf_load_segments(elf), family_id)


def main(argv: list[str]) -> int:
    """``python uf2.py firmware.elf firmware.uf2``"""
    if len(argv) != 2:
        print("usage: uf2.py IMAGE.elf OUT.uf2", file=sys.stderr)
        return 2
    Path(argv[1]).write_bytes(elf_to_uf2(Path(argv[0]).read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
