"""What a WAV file's header declares, for catching copies that stopped early.

ffmpeg's wav demuxer takes the length of a shortened WAV from the file size, so neither ffprobe nor a full decode
notices that the header promised more. The header's own data-chunk size does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

# Writers that stream a WAV before knowing its length put one of these in the size fields.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)
_MAX_CHUNKS = 64


@dataclass(frozen=True)
class WavDeclaration:
    """The data size a WAV header declares, how much of it the file holds, and the byte rate."""

    declared_bytes: int
    present_bytes: int
    byte_rate: int

    @property
    def declared_s(self) -> float:
        """Return the length the header declares, in seconds."""
        return self.declared_bytes / self.byte_rate

    @property
    def present_s(self) -> float:
        """Return the length of the data actually in the file, in seconds."""
        return self.present_bytes / self.byte_rate


def read_wav_declaration(path: str | Path) -> WavDeclaration | None:
    """Return the WavDeclaration of a RIFF/WAVE file, or None if it is not one or declares no usable size."""
    with open(path, "rb") as handle:
        if handle.read(12)[8:12] != b"WAVE":
            return None
        handle.seek(0, 2)
        size = handle.tell()
        offset, byte_rate = 12, 0
        for _ in range(_MAX_CHUNKS):
            handle.seek(offset)
            header = handle.read(8)
            if len(header) < 8:
                return None
            kind, length = header[:4], struct.unpack("<I", header[4:])[0]
            if kind == b"fmt ":
                fmt = handle.read(16)
                if len(fmt) == 16:
                    byte_rate = struct.unpack("<HHIIHH", fmt)[3]
            elif kind == b"data":
                if length in _UNKNOWN_SIZES or byte_rate <= 0:
                    return None
                return WavDeclaration(length, max(0, size - offset - 8), byte_rate)
            offset += 8 + length + (length & 1)
        return None
