"""Cut a syslog TCP byte stream into messages (RFC 6587 octet counting or LF framing).

Sans-IO: the connection handler passes whatever bytes it read to `Framer.feed` and gets back
the frames completed so far; `Framer.close` flushes what is left at end of stream.

The framing mode is decided per frame, the way Vector does it, because senders mix modes on one
connection: a frame that starts with 1-9 digits (the first one 1-9) and SP is octet counted
(`MSG-LEN SP SYSLOG-MSG`), any other frame ends at LF. A digit run followed by anything but SP
starts an LF-framed line (a PRI-less line starting with its ISO time, `2026-03-02T10:00:00Z host
...`), not a bad count. Runs of LF, CR, NUL, SP and TAB between frames are skipped (the stray
LF loggen sends after an octet-counted frame, Cisco ASA's leading space, blank lines).

Nothing is dropped silently: a malformed frame comes out with its raw bytes and an `error`, and
an oversize frame comes out as its first `max_frame_size` bytes with `truncated=True`. Only the
tail of an oversize frame is discarded, never buffered, so memory per connection stays bounded by
about `max_frame_size`. An oversize octet-counted frame is skipped by its declared count, never by
re-synchronising inside it, because its payload may itself look like frames.
"""

from typing import NamedTuple

DEFAULT_MAX_FRAME_SIZE = 64 * 1024

# RFC 6587 sets no limit; 9 digits (< 1 GB) is far above any sane frame, and rejecting longer
# counts keeps a garbage digit run from being taken as a length.
_MAX_COUNT_DIGITS = 9
_BETWEEN_FRAMES = frozenset(b"\n\r\x00 \t")
_LF = b"\n"
_SP = b" "
_CR = 0x0D
_DIGIT_0 = 0x30
_DIGIT_1 = 0x31
_DIGIT_9 = 0x39


class Frame(NamedTuple):
    """One syslog message cut from the stream.

    A NamedTuple rather than a dataclass because one is built per message on the receiver's hot
    path, and a tuple is the cheapest object CPython can construct.
    """

    data: bytes
    """The SYSLOG-MSG bytes: no octet count, no LF/CRLF terminator.

    An octet-counted frame is exactly the counted bytes, so a sender that counts its trailing LF
    (loggen) keeps it here; the header parser strips it, not the framer.
    """
    truncated: bool = False
    """Oversize: `data` holds only the first max_frame_size bytes; the rest was discarded."""
    error: str | None = None
    """Framing problem found for this frame (the bytes are kept raw, never dropped)."""


# Senders use few distinct lengths, and a dict hit costs less than isdigit() plus int().
# Bounded so that a peer sending every possible count cannot grow it.
_COUNT_CACHE_SIZE = 4096
_counts: dict[bytes, int] = {}

# tuple.__new__ is a C call; Frame(...) goes through a Python-level __new__ and is slower.
_new = tuple.__new__


def _count_error(buf: bytes, pos: int, n: int) -> str | None:
    """Say why the digits at buf[pos] (the first one 1-9), not followed by SP within 9 digits,
    are no octet count: an error, "" for an LF-framed line, None: need more bytes to tell."""
    stop = min(n, pos + _MAX_COUNT_DIGITS + 1)
    i = pos + 1
    while i < stop and _DIGIT_0 <= buf[i] <= _DIGIT_9:
        i += 1
    if i - pos > _MAX_COUNT_DIGITS:
        return f"bad octet count: more than {_MAX_COUNT_DIGITS} digits"
    if i == n:
        return None
    return ""


def _zero_error(head: bytes) -> str | None:
    """Flag an LF-framed line starting like a zero or zero-padded octet count (`0 `, `007 `)."""
    nxt = head[1:2]
    if nxt == _SP:
        return "bad octet count: zero"
    if nxt.isdigit():
        return "bad octet count: leading zero"
    return None


class Framer:
    """Incremental RFC 6587 framer for one TCP connection; see the module docstring."""

    __slots__ = ("_chunks", "_discard_line", "_held", "_lf_wait", "_max", "_need", "_skip")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 1:
            raise ValueError(f"max_frame_size must be at least 1, got {max_frame_size}")
        self._max = max_frame_size
        # The incomplete frame at the end of the stream so far, kept as a list of chunks so that
        # a frame arriving in many small reads is joined once, not re-copied on every read.
        self._chunks: list[bytes] = []
        self._held = 0
        # Re-parse only once this many bytes are held (or, in LF mode, once an LF arrives):
        # re-parsing earlier could not complete the frame.
        self._need = 0
        self._lf_wait = False
        # Bytes still to discard from the tail of an oversize octet-counted frame.
        self._skip = 0
        # Discarding the tail of an oversize LF-framed line, up to and including its LF.
        self._discard_line = False

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return self._held

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Take the next bytes of the stream; return every frame they complete, in order."""
        if type(data) is not bytes:
            # A bytearray would make every Frame.data a bytearray too. (Said in the signature:
            # compiled by mypyc, a `bytes` parameter refuses anything else.)
            data = bytes(data)
        if not data:
            return []
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        if self._discard_line:
            nl = data.find(_LF)
            if nl < 0:
                return []
            data = data[nl + 1 :]
            self._discard_line = False
            if not data:
                return []
        if self._held:
            self._chunks.append(data)
            self._held += len(data)
            if self._held < self._need and not (self._lf_wait and _LF in data):
                return []
            data = b"".join(self._chunks)
            self._release()
        frames: list[Frame] = []
        self._parse(data, frames)
        return frames

    def close(self) -> list[Frame]:
        """End of stream: return the incomplete frame left over, if any, and empty the framer.

        A last LF-framed line without its LF is a complete message (logger sends like that). An
        incomplete octet-counted frame comes out with the bytes received and an error.
        """
        frames: list[Frame] = []
        if self._held:
            buf = b"".join(self._chunks)
            self._release()
            self._parse(buf, frames)
        if self._held:
            rest = b"".join(self._chunks)
            self._release()
            frames.append(self._flush(rest))
        # The head of a cut-short oversize frame was already emitted with truncated=True.
        self._skip = 0
        self._discard_line = False
        return frames

    def _release(self) -> None:
        self._chunks = []
        self._held = 0
        self._need = 0
        self._lf_wait = False

    def _hold(self, rest: bytes, need: int, lf_wait: bool) -> None:
        self._chunks = [rest]
        self._held = len(rest)
        self._need = need
        self._lf_wait = lf_wait

    def _parse(self, buf: bytes, frames: list[Frame]) -> None:
        """Cut every complete frame out of buf (which starts between frames); hold the rest."""
        # Hot loop: module constants are inlined as literals and globals bound to locals, since
        # each global lookup costs about as much as a bytes comparison here.
        # 0x31-0x39: digits 1-9; 0x30: digit 0; 0x0D: CR; b" " and b"\n": SP and LF.
        limit = self._max
        n = len(buf)
        find = buf.find
        append = frames.append
        counts = _counts
        new = _new
        frame = Frame
        between = _BETWEEN_FRAMES
        pos = 0
        while pos < n:
            c = buf[pos]
            if 0x31 <= c <= 0x39:
                sp = find(b" ", pos + 1, pos + 10)  # at most 9 digits, then SP
                if sp >= 0:
                    digits = buf[pos:sp]
                    count = counts.get(digits)
                    # isdigit() first: int() alone would accept b"1_0" and b"1\t".
                    if count is None and digits.isdigit():
                        count = int(digits)
                        if len(counts) < _COUNT_CACHE_SIZE:
                            counts[digits] = count
                    if count is not None:
                        start = sp + 1
                        end = start + count
                        if count <= limit:
                            if end > n:
                                self._hold(buf[pos:], end - pos, False)
                                return
                            append(new(frame, (buf[start:end], False, None)))
                            pos = end
                            continue
                        head_end = start + limit
                        if head_end > n:
                            self._hold(buf[pos:], head_end - pos, False)
                            return
                        note = f"oversize frame: declared {count} bytes, kept {limit}"
                        append(new(frame, (buf[start:head_end], True, note)))
                        if end >= n:
                            self._skip = end - n
                            return
                        pos = end
                        continue
                reason = _count_error(buf, pos, n)
                if reason is None:
                    # Only digits so far: the count's SP or its 10th digit has not arrived.
                    self._hold(buf[pos:], 0, False)
                    return
                # No count: an LF-framed line, flagged if it looks like a malformed count (after
                # LF is the only place to re-sync).
                error = reason or None
            elif c in between:
                pos += 1
                continue
            elif c == 0x30:
                error = _zero_error(buf[pos : pos + 2])
            else:
                error = None
            nl = find(b"\n", pos)
            if nl < 0:
                # limit + 1: a line of exactly `limit` bytes may still end in CRLF.
                if n - pos <= limit + 1:
                    self._hold(buf[pos:], limit + 2, True)
                    return
                append(new(frame, (buf[pos : pos + limit], True, error)))
                self._discard_line = True
                return
            # nl > pos since buf[pos] is neither LF nor CR, so the line is never empty.
            end = nl - 1 if buf[nl - 1] == 0x0D else nl
            if end - pos > limit:
                append(new(frame, (buf[pos : pos + limit], True, error)))
            else:
                append(new(frame, (buf[pos:end], False, error)))
            pos = nl + 1

    def _flush(self, rest: bytes) -> Frame:
        """Turn the incomplete frame held at end of stream into a Frame."""
        c = rest[0]
        error: str | None = None
        if _DIGIT_1 <= c <= _DIGIT_9:
            sp = rest.find(_SP, 1, _MAX_COUNT_DIGITS + 1)
            if sp >= 0 and rest[:sp].isdigit():
                count = int(rest[:sp])
                body = rest[sp + 1 : sp + 1 + self._max]
                error = f"incomplete frame at end of stream: got {len(body)} of {count} bytes"
                return _new(Frame, (body, False, error))
            reason = _count_error(rest, 0, len(rest))
            if reason is None:
                error = f"incomplete octet count at end of stream: {rest!r} with no SP"
            else:
                error = reason or None
        elif c == _DIGIT_0:
            error = _zero_error(rest[:2])
        # An LF-framed last line without its LF is a complete message; a bad or cut-short count
        # is kept the same way, flagged.
        end = len(rest) - 1 if rest[-1] == _CR else len(rest)
        if end > self._max:
            return _new(Frame, (rest[: self._max], True, error))
        return _new(Frame, (rest[:end], False, error))
