"""Tests for parsers.framing: RFC 6587 edge cases (anchors doc Part 2) and framer properties."""

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.framing import DEFAULT_MAX_FRAME_SIZE, Frame, Framer

M = b"<14>1 - h a - - -"  # the anchors doc's 17-byte RFC 5424 message
BSD = b"<13>Mar  7 19:06:53 host app: hello"
CLIENT_HELLO = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(0x20, 0x40))
PROXY = b"PROXY TCP4 192.0.2.1 192.0.2.2 51000 6514"


def oc(msg: bytes) -> bytes:
    return b"%d %s" % (len(msg), msg)


def run(chunks: Sequence[bytes], max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> list[Frame]:
    framer = Framer(max_frame_size)
    frames: list[Frame] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
    frames += framer.close()
    assert framer.buffered == 0
    return frames


def bytewise(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def split(stream: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in pairwise(bounds)]


def F(data: bytes, truncated: bool = False, error: str | None = None) -> Frame:
    return Frame(data, truncated, error)


# (stream, max_frame_size, expected frames after feed + close)
CASES: dict[str, tuple[bytes, int, list[Frame]]] = {
    "octet-happy-back-to-back": (oc(M) + oc(M), 1024, [F(M), F(M)]),
    "octet-single": (b"17 " + M, 1024, [F(M)]),
    "octet-one-byte": (b"1 x", 1024, [F(b"x")]),
    # One too many: the frame swallows the next frame's "1"; "7 " then cuts 7 bytes, and the
    # remainder " h a - - -" becomes an LF-framed last line.
    "octet-count-one-too-many": (
        b"18 " + M + b"17 " + M,
        1024,
        [F(M + b"1"), F(b"<14>1 -"), F(b"h a - - -")],
    ),
    "octet-count-one-too-few": (
        b"16 " + M + b"17 " + M,
        1024,
        [F(M[:-1]), F(b"-17 " + M)],
    ),
    "octet-count-larger-than-data-then-close": (
        b"50 <14>1 - - - - - -",
        1024,
        [F(b"<14>1 - - - - - -", error="incomplete frame at end of stream: got 17 of 50 bytes")],
    ),
    "octet-header-only-then-close": (
        b"50 ",
        1024,
        [F(b"", error="incomplete frame at end of stream: got 0 of 50 bytes")],
    ),
    "octet-partial-digits-then-close": (
        b"17",
        1024,
        [F(b"17", error="incomplete octet count at end of stream: b'17' with no SP")],
    ),
    "octet-count-equals-max": (b"16 " + b"a" * 16, 16, [F(b"a" * 16)]),
    "octet-count-over-max": (
        b"100 " + b"A" * 100 + oc(b"<14>next"),
        64,
        [
            F(b"A" * 64, True, "oversize frame: declared 100 bytes, kept 64"),
            F(b"<14>next"),
        ],
    ),
    # The discarded tail looks like frames: it must be skipped by count, not re-synced inside.
    "octet-over-max-tail-looks-like-frames": (
        b"40 " + b"<1>head " + b"3 abc\n" * 5 + b"12\n" + oc(b"<14>next"),
        8,
        [
            F(b"<1>head ", True, "oversize frame: declared 40 bytes, kept 8"),
            F(b"<14>next"),
        ],
    ),
    "octet-over-max-cut-short-then-close": (
        b"99999999 " + b"A" * 100,
        64,
        [F(b"A" * 64, True, "oversize frame: declared 99999999 bytes, kept 64")],
    ),
    "octet-over-max-head-incomplete-then-close": (
        b"99999999 " + b"A" * 10,
        64,
        [F(b"A" * 10, error="incomplete frame at end of stream: got 10 of 99999999 bytes")],
    ),
    "octet-9-digit-count-over-max": (
        b"999999999 " + b"A" * 8,
        4,
        [F(b"AAAA", True, "oversize frame: declared 999999999 bytes, kept 4")],
    ),
    "octet-20-digit-count": (
        b"99999999999999999999 " + M + b"\n" + oc(M),
        1024,
        [F(b"99999999999999999999 " + M, error="bad octet count: more than 9 digits"), F(M)],
    ),
    "octet-10-digit-count-no-lf-then-close": (
        b"1234567890",
        1024,
        [F(b"1234567890", error="bad octet count: more than 9 digits")],
    ),
    "octet-leading-zero": (
        b"007 <14>1 -\n" + oc(M),
        1024,
        [F(b"007 <14>1 -", error="bad octet count: leading zero"), F(M)],
    ),
    "octet-zero": (b"0 \n" + oc(M), 1024, [F(b"0 ", error="bad octet count: zero"), F(M)]),
    "octet-zero-count-no-lf-swallows-frames": (
        b"0 " + oc(M),
        1024,
        [F(b"0 17 " + M, error="bad octet count: zero")],
    ),
    "lf-line-starting-with-zero-is-fine": (b"0abc\n0\n", 1024, [F(b"0abc"), F(b"0")]),
    "octet-missing-space": (
        b"17" + M + b"\n" + oc(M),
        1024,
        [F(b"17" + M), F(M)],
    ),
    "digits-then-letter-is-an-lf-line": (
        b"17x\n" + oc(M),
        1024,
        [F(b"17x"), F(M)],
    ),
    "digit-then-lf-is-an-lf-line": (
        b"7\n" + oc(M),
        1024,
        [F(b"7"), F(M)],
    ),
    "digits-then-letter-crlf": (
        b"17x\r\n",
        1024,
        [F(b"17x")],
    ),
    "digits-then-letter-no-lf-then-close": (
        b"17x abc",
        1024,
        [F(b"17x abc")],
    ),
    "digits-then-letter-over-max": (
        b"17x" + b"y" * 40 + b"\n" + oc(b"<1>ok"),
        16,
        [F(b"17x" + b"y" * 13, True), F(b"<1>ok")],
    ),
    # A message without PRI whose text starts with digits (an ISO time, a Cisco counter) is an
    # LF-framed line like any other, not a bad octet count.
    "digit-that-is-message-text": (
        b"2026-03-02T10:00:00Z host m\n123: Mar  7 19:06:53: %SYS-5-CONFIG_I: x\n",
        1024,
        [F(b"2026-03-02T10:00:00Z host m"), F(b"123: Mar  7 19:06:53: %SYS-5-CONFIG_I: x")],
    ),
    "iso-line-split-inside-its-year-then-close": (
        b"2026-03-02T10:00:00Z host last line",
        1024,
        [F(b"2026-03-02T10:00:00Z host last line")],
    ),
    # Per-frame detection cannot tell "1 2 3" from octet counting; this pins what happens.
    "digit-space-at-line-start-is-read-as-count": (
        b"<13>a\n1 2 3\n",
        1024,
        [
            F(b"<13>a"),
            F(b"2"),
            F(b"3"),
        ],
    ),
    "cisco-asa-leading-space": (
        b" <166>%ASA-6-302013: Built\n <166>%ASA-6-302014: Teardown\n",
        1024,
        [F(b"<166>%ASA-6-302013: Built"), F(b"<166>%ASA-6-302014: Teardown")],
    ),
    "leading-whitespace-before-octet-frame": (b" \t\x00\r\n" + oc(M), 1024, [F(M)]),
    "octet-stray-lf-after-frame": (oc(M) + b"\n" + oc(M) + b"\n", 1024, [F(M), F(M)]),
    "octet-crlf-after-frame": (oc(M) + b"\r\n" + oc(M), 1024, [F(M), F(M)]),
    # loggen counts the LF: it is part of SYSLOG-MSG, kept exactly as counted.
    "octet-count-includes-lf": (b"18 " + M + b"\n" + b"18 " + M + b"\n", 1024, [F(M + b"\n")] * 2),
    "lf-happy": (b"<14>a\n<14>b\n", 1024, [F(b"<14>a"), F(b"<14>b")]),
    "lf-crlf": (b"<14>a\r\n<14>b\r\n", 1024, [F(b"<14>a"), F(b"<14>b")]),
    "lf-only-one-cr-stripped": (b"<14>a\r\r\n", 1024, [F(b"<14>a\r")]),
    "lf-nul-inside-message": (b"<14>a\x00b\n", 1024, [F(b"<14>a\x00b")]),
    # NUL is not a terminator (RFC 5424 allows it in MSG): a NUL-terminated sender's messages
    # run together until an LF or close, but no byte is lost.
    "lf-nul-is-not-a-terminator": (b"<14>a\x00<14>b\x00", 1024, [F(b"<14>a\x00<14>b\x00")]),
    "lf-nul-after-lf-is-skipped": (b"<14>a\n\x00<14>b\n\x00", 1024, [F(b"<14>a"), F(b"<14>b")]),
    "octet-nul-inside-message": (b"5 a\x00b\x00c", 1024, [F(b"a\x00b\x00c")]),
    "lf-empty-lines": (b"\n<14>a\n\n\r\n\n<14>b\n\n", 1024, [F(b"<14>a"), F(b"<14>b")]),
    "only-whitespace": (b"\n\r\n \t\x00\n", 1024, []),
    "empty-stream": (b"", 1024, []),
    "lf-last-line-without-lf-at-close": (b"<14>a\n<14>b", 1024, [F(b"<14>a"), F(b"<14>b")]),
    "lf-last-line-cr-without-lf-at-close": (b"<14>a\r", 1024, [F(b"<14>a")]),
    "lf-very-long-line-without-lf": (
        b"<14>" + b"x" * 200,
        64,
        [F(b"<14>" + b"x" * 60, True)],
    ),
    "lf-very-long-line-tail-is-not-a-message": (
        b"<14>" + b"x" * 100 + b" 17 <1>looks-like-a-frame\n<14>b\n",
        64,
        [F(b"<14>" + b"x" * 60, True), F(b"<14>b")],
    ),
    "lf-line-exactly-max": (b"a" * 16 + b"\n", 16, [F(b"a" * 16)]),
    "lf-line-exactly-max-crlf": (b"a" * 16 + b"\r\n", 16, [F(b"a" * 16)]),
    "lf-line-max-plus-one": (b"a" * 17 + b"\n<1>b\n", 16, [F(b"a" * 16, True), F(b"<1>b")]),
    "lf-line-exactly-max-at-close": (b"a" * 16 + b"\r", 16, [F(b"a" * 16)]),
    "lf-line-max-plus-one-at-close": (b"a" * 17, 16, [F(b"a" * 16, True)]),
    "mixed-octet-lf-octet": (
        oc(M) + BSD + b"\n" + oc(M) + b"<14>last\r\n",
        1024,
        [F(M), F(BSD), F(M), F(b"<14>last")],
    ),
    "rfc3164-inside-octet-counting": (oc(BSD) + oc(BSD), 1024, [F(BSD), F(BSD)]),
    "tls-client-hello": (CLIENT_HELLO, 1024, [F(CLIENT_HELLO)]),
    "tls-client-hello-then-syslog": (CLIENT_HELLO + b"\n" + oc(M), 1024, [F(CLIENT_HELLO), F(M)]),
    "http-request": (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        1024,
        [F(b"GET / HTTP/1.1"), F(b"Host: x")],
    ),
    "proxy-v1-line": (PROXY + b"\r\n" + oc(M), 1024, [F(PROXY), F(M)]),
}


@pytest.mark.parametrize(("stream", "max_size", "expected"), CASES.values(), ids=CASES.keys())
def test_whole(stream: bytes, max_size: int, expected: list[Frame]) -> None:
    assert run([stream], max_size) == expected


@pytest.mark.parametrize(("stream", "max_size", "expected"), CASES.values(), ids=CASES.keys())
def test_one_byte_at_a_time(stream: bytes, max_size: int, expected: list[Frame]) -> None:
    assert run(bytewise(stream), max_size) == expected


@pytest.mark.parametrize(("stream", "max_size", "expected"), CASES.values(), ids=CASES.keys())
def test_split_at_every_position(stream: bytes, max_size: int, expected: list[Frame]) -> None:
    for cut in range(len(stream) + 1):
        assert run(split(stream, [cut]), max_size) == expected, f"split at {cut}"


def test_octet_happy_split_at_every_pair_of_positions() -> None:
    stream = oc(M) + oc(M) + oc(M)
    for a in range(len(stream) + 1):
        for b in range(a, len(stream) + 1):
            assert run(split(stream, [a, b])) == [F(M)] * 3, f"split at {a}, {b}"


def test_frames_come_out_as_soon_as_complete() -> None:
    framer = Framer()
    assert framer.feed(b"17 " + M[:5]) == []
    assert framer.buffered == 8
    assert framer.feed(M[5:] + b"1") == [F(M)]
    assert framer.buffered == 1
    assert framer.feed(b"7 " + M + b"<14>lf") == [F(M)]
    assert framer.feed(b"\n") == [F(b"<14>lf")]
    assert framer.buffered == 0
    assert framer.close() == []


def test_oversize_octet_tail_is_discarded_across_feeds_without_buffering() -> None:
    framer = Framer(16)
    frames = framer.feed(b"1000 " + b"h" * 20)
    assert frames == [F(b"h" * 16, True, "oversize frame: declared 1000 bytes, kept 16")]
    # The tail looks like frames; it must be skipped by count, never re-synced inside.
    tail = (b"3 abc\n<1>x\n" * 100)[: 1000 - 20]
    for i in range(0, len(tail), 7):
        assert framer.feed(tail[i : i + 7]) == []
        assert framer.buffered == 0
    assert framer.feed(b"\n" + oc(b"<1>next")) == [F(b"<1>next")]
    assert framer.close() == []


def test_oversize_lf_tail_is_discarded_across_feeds() -> None:
    framer = Framer(16)
    assert framer.feed(b"<1>" + b"x" * 20) == [F(b"<1>" + b"x" * 13, True)]
    for _ in range(100):
        assert framer.feed(b"17 <1>not-a-frame ") == []
        assert framer.buffered == 0
    assert framer.feed(b"end\n<1>next\n") == [F(b"<1>next")]


def test_close_empties_the_framer_and_it_can_be_reused() -> None:
    framer = Framer(16)
    framer.feed(b"1000 " + b"h" * 20)  # now skipping an oversize tail
    assert framer.close() == []
    assert framer.feed(oc(b"<1>a")) == [F(b"<1>a")]
    framer.feed(b"<1>" + b"x" * 20)  # now discarding an oversize line
    assert framer.close() == []
    assert framer.feed(b"<1>b\n") == [F(b"<1>b")]
    framer.feed(b"17 <1>")
    assert framer.close() == [
        F(b"<1>", error="incomplete frame at end of stream: got 3 of 17 bytes"),
    ]
    assert framer.buffered == 0
    assert framer.close() == []


def test_feed_accepts_bytearray_and_memoryview() -> None:
    framer = Framer()
    frames = framer.feed(bytearray(oc(M))) + framer.feed(memoryview(b"<1>a\n"))  # type: ignore[arg-type]
    assert frames == [F(M), F(b"<1>a")]
    assert all(type(f.data) is bytes for f in frames)


def test_feed_empty_is_a_no_op() -> None:
    framer = Framer()
    framer.feed(b"17 <1")
    assert framer.feed(b"") == []
    assert framer.buffered == 5


def test_max_frame_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        Framer(0)


def test_frame_defaults() -> None:
    assert Frame(b"x") == (b"x", False, None)
    assert Frame(b"x").truncated is False
    assert Frame(b"x").error is None


# --- properties --------------------------------------------------------------------------------

_NOT_LF_START = b"\n\r\x00 \t0123456789"
PROP_MAX = 128


def _lf_ok(msg: bytes) -> bool:
    return b"\n" not in msg and msg[0] not in _NOT_LF_START and not msg.endswith(b"\r")


@st.composite
def valid_streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    msgs = draw(st.lists(st.binary(min_size=1, max_size=PROP_MAX), max_size=12))
    parts: list[bytes] = []
    for msg in msgs:
        parts.append(draw(st.sampled_from([b"", b"", b"\n", b"\r\n", b" ", b"\x00\t"])))
        if _lf_ok(msg) and draw(st.booleans()):
            parts.append(msg + draw(st.sampled_from([b"\n", b"\r\n"])))
        else:
            parts.append(oc(msg))
    return b"".join(parts), msgs


def chunkings(stream: bytes) -> st.SearchStrategy[list[bytes]]:
    cuts = st.lists(st.integers(0, len(stream)), max_size=8)
    return cuts.map(lambda c: split(stream, c))


# Biased towards the bytes the framer branches on, so the fuzzer reaches every state.
TOKENS = [
    b"1", b"7", b"9", b"0", b" ", b"\n", b"\r", b"\x00", b"\t", b"<", b"x", b"\xff",
    b"17 ", b"3 ", b"99 ", b"007 ", b"1234567890", b"<14>1 - h a - - -", b"\r\n",
]  # fmt: skip
fuzz_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(TOKENS), max_size=80).map(b"".join),
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_valid_stream_round_trips_in_any_chunking(data: st.DataObject) -> None:
    stream, msgs = data.draw(valid_streams())
    chunks = data.draw(chunkings(stream))
    whole = run([stream], PROP_MAX)
    assert whole == [F(m) for m in msgs]
    assert run(chunks, PROP_MAX) == whole


@settings(max_examples=400, deadline=None)
@given(stream=fuzz_bytes, max_size=st.integers(1, 32), data=st.data())
def test_arbitrary_bytes_never_raise_and_chunking_does_not_matter(
    stream: bytes, max_size: int, data: st.DataObject
) -> None:
    whole = run([stream], max_size)
    assert run(data.draw(chunkings(stream)), max_size) == whole
    assert sum(len(f.data) for f in whole) <= len(stream)
    assert all(len(f.data) <= max_size for f in whole)
    assert all(f.data or f.error for f in whole)


@settings(max_examples=300, deadline=None)
@given(stream=fuzz_bytes, data=st.data())
def test_buffered_stays_bounded(stream: bytes, data: st.DataObject) -> None:
    max_size = 64
    framer = Framer(max_size)
    for chunk in data.draw(chunkings(stream + stream + stream)):
        framer.feed(chunk)
        assert framer.buffered <= max_size + 16
    framer.close()
    assert framer.buffered == 0


@settings(max_examples=200, deadline=None)
@given(stream=fuzz_bytes)
def test_only_whitespace_and_counts_are_left_out_when_nothing_is_truncated(stream: bytes) -> None:
    # Without truncation, the only input bytes in no frame are whitespace between frames,
    # octet-count headers (digits and SP) and the CR of a CRLF.
    frames = run([stream], 10_000)
    assert not any(f.truncated for f in frames)
    left_out = Counter(stream) - Counter(b"".join(f.data for f in frames))
    assert set(left_out) <= set(_NOT_LF_START)


def _reference(stream: bytes, max_size: int) -> list[Frame]:
    """The framing rules applied to a whole stream at once, written for clarity, not speed."""
    out: list[Frame] = []
    i, n = 0, len(stream)
    while i < n:
        c = stream[i]
        if c in b"\n\r\x00 \t":
            i += 1
            continue
        error = None
        if c in b"123456789":
            j = i
            while j < n and j - i < 10 and stream[j] in b"0123456789":
                j += 1
            ndigits = j - i
            if ndigits <= 9 and j < n and stream[j] == ord(" "):
                count, start = int(stream[i:j]), j + 1
                if start + min(count, max_size) > n:
                    got = n - start
                    error = f"incomplete frame at end of stream: got {got} of {count} bytes"
                    out.append(F(stream[start:], False, error))
                    break
                if count <= max_size:
                    out.append(F(stream[start : start + count]))
                else:
                    note = f"oversize frame: declared {count} bytes, kept {max_size}"
                    out.append(F(stream[start : start + max_size], True, note))
                i = start + count
                continue
            if ndigits > 9:
                error = "bad octet count: more than 9 digits"
            elif j == n:
                error = f"incomplete octet count at end of stream: {stream[i:]!r} with no SP"
            # Else the digits start an LF-framed line.
        elif c == ord("0") and stream[i + 1 : i + 2] == b" ":
            error = "bad octet count: zero"
        elif c == ord("0") and stream[i + 1 : i + 2].isdigit():
            error = "bad octet count: leading zero"
        nl = stream.find(b"\n", i)
        line, i = (stream[i:], n) if nl < 0 else (stream[i:nl], nl + 1)
        line = line.removesuffix(b"\r")
        out.append(F(line[:max_size], len(line) > max_size, error))
    return out


@settings(max_examples=300, deadline=None)
@given(stream=fuzz_bytes, max_size=st.integers(1, 40), data=st.data())
def test_matches_reference_model(stream: bytes, max_size: int, data: st.DataObject) -> None:
    assert run(data.draw(chunkings(stream)), max_size) == _reference(stream, max_size)
