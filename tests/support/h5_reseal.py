#!/usr/bin/python3
"""Re-seal the checksum block of a mobilellm.c HDF5 file after a test edited it with h5py.

    h5_reseal.py FILE

Our files start with a 512-byte user block (formats/h5.c): magic "MLH5CRC1", u64 LE file size, u32 LE
CRC-32C of bytes [512, size), u32 LE CRC-32C of the block without that field. h5py keeps the block but
not its checksums, and the reader refuses such a file; tests that simulate older or foreign checkpoints
edit with h5py and then call this, as a writer of ours would have sealed the file."""
import struct
import sys

TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    TABLE.append(c)


def crc32c(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    t = TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def main() -> int:
    path = sys.argv[1]
    with open(path, "r+b") as f:
        data = f.read()
        if data[:8] != b"MLH5CRC1":
            print(f"h5_reseal.py: {path}: not a mobilellm.c HDF5 file (no checksum block)", file=sys.stderr)
            return 2
        block = bytearray(data[:512])
        block[8:16] = struct.pack("<Q", len(data))
        block[16:20] = struct.pack("<I", crc32c(data[512:]) ^ 0xFFFFFFFF)
        self_crc = crc32c(bytes(block[24:512]), crc32c(bytes(block[:20]))) ^ 0xFFFFFFFF
        block[20:24] = struct.pack("<I", self_crc)
        f.seek(0)
        f.write(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
