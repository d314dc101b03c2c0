"""How a raw message is stored in `messages.raw`: packed with zstd and a frozen dictionary, or
plain; and back to the bytes received.

`messages.packed` says which: PLAIN (0), or the number of the dictionary the bytes were
packed with. A message that packing would not make smaller is stored plain. Every reader
of `messages.raw` selects `packed` beside it and calls `unpack`.

A dictionary is what makes a 500-byte line pack to a quarter of its size (without one, zstd
leaves 70%): it holds what every Pexip line repeats, so a message refers back to it from
its first byte. Pure: bytes in, bytes out; each thread has its own (de)compressors, which
zstandard does not share between threads.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import resources
from typing import Final

import zstandard

PLAIN: Final = 0
# The dictionaries by the `packed` value that names them. Frozen: a row packed with one is
# read with it for ever, so a new dictionary takes the next number and the old one stays.
# bench/raw_dictionary.py says how each was made.
DICTIONARIES: Final = {1: "raw-1.zdict"}
CURRENT: Final = 1
# Level 1: the dictionary does the work (level 3 packed 0.5% smaller, 30% slower). No
# checksum (the database keeps its pages whole), no dictionary id (`packed` names it), no
# magic number (every frame is zstd): 9 bytes fewer per message than zstd's defaults.
_FORMAT: Final = zstandard.FORMAT_ZSTD1_MAGICLESS
_PARAMETERS: Final = zstandard.ZstdCompressionParameters.from_level(
    1, format=_FORMAT, write_checksum=0, write_dict_id=0, write_content_size=1
)


class Unreadable(ValueError):
    """A stored raw message cannot be unpacked: a dictionary this version does not know, or
    bytes that are not what it packed."""


@cache
def _dictionary(version: int) -> bytes:
    name = DICTIONARIES.get(version)
    if name is None:
        raise Unreadable(
            f"a message is packed with dictionary {version}, which this version of cdrecon "
            "does not know: read the database with the version that wrote it"
        )
    return resources.files(__package__).joinpath(name).read_bytes()


class _Codecs(threading.local):
    """This thread's compressor (for CURRENT) and decompressors (by version)."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(
            dict_data=zstandard.ZstdCompressionDict(_dictionary(CURRENT)),
            compression_params=_PARAMETERS,
        )
        self.decompressors: dict[int, zstandard.ZstdDecompressor] = {}

    def decompressor(self, version: int) -> zstandard.ZstdDecompressor:
        found = self.decompressors.get(version)
        if found is None:
            found = self.decompressors[version] = zstandard.ZstdDecompressor(
                dict_data=zstandard.ZstdCompressionDict(_dictionary(version)), format=_FORMAT
            )
        return found


_codecs = _Codecs()


def pack(raw: bytes) -> tuple[bytes, int]:
    """`raw` as stored, and its `packed` value: packed with the CURRENT dictionary, or plain
    when that is not smaller."""
    packed = _codecs.compressor.compress(raw)
    if len(packed) < len(raw):
        return packed, CURRENT
    return raw, PLAIN


def unpack(stored: bytes, packed: int) -> bytes:
    """The message as received, from its stored bytes and `packed` value."""
    if packed == PLAIN:
        return stored
    decompressor = _codecs.decompressor(packed)
    try:
        return decompressor.decompress(stored)
    except zstandard.ZstdError as exc:
        raise Unreadable(f"a stored message does not unpack: {exc}") from exc
