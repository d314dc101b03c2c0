"""Helpers shared by the benchmarks: realistic Pexip syslog frames, /proc readings, ports, TLS.

Nothing here talks to anything but 127.0.0.1 and the local /proc.
"""

from __future__ import annotations

import itertools
import os
import platform
import random
import resource
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

# --------------------------------------------------------------------------------------------
# Pexip Infinity syslog lines
# --------------------------------------------------------------------------------------------

FIRST_NAMES = (
    "Alice",
    "Bob",
    "Carol",
    "Dave",
    "Erin",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Mallory",
    "Niaj",
    "Olivia",
    "Peggy",
    "Rupert",
    "Sybil",
    "Trent",
    "Victor",
    "Walter",
    "Yasmin",
    "Zoe",
    "Ahmed",
    "Bjorn",
    "Chiara",
    "Dmitri",
    "Elif",
    "Fatima",
    "Goran",
    "Hiro",
    "Ingrid",
)
LAST_NAMES = (
    "Example",
    "Smith",
    "Jones",
    "Nakamura",
    "Olsen",
    "Garcia",
    "Muller",
    "Rossi",
    "Kowalski",
    "Nguyen",
    "Haddad",
    "Berg",
    "Dubois",
    "Fischer",
    "Silva",
    "Novak",
    "Larsen",
    "Patel",
    "Okafor",
    "Lindqvist",
)
DOMAINS = ("example.com", "example.org", "corp.example.net", "partner.example.co.uk")
CONFERENCES = (
    "Weekly sync",
    "Board meeting",
    "Sales EMEA",
    "Helpdesk VMR",
    "All hands",
    "meet.alice",
    "Project Falcon standup",
    "Customer escalation bridge",
    "Training room 3",
    "Oslo office huddle",
)
PROTOCOLS = ("SIP", "H323", "WebRTC", "MSSIP", "RTMP")
VENDORS = (
    "Cisco TelePresence",
    "Cisco Webex Room Kit",
    "Polycom RealPresence Group 500",
    "Lifesize Icon 600",
    "Pexip Infinity Connect",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
    "Microsoft Teams Room",
)
LOCATIONS = ("London", "Oslo", "New York", "Singapore", "Frankfurt")
NODES = tuple(f"10.0.1.{n}" for n in range(11, 19))
HOSTS = tuple(f"conf-node-{n:02d}" for n in range(1, 9))
DISCONNECT_DETAILS = (
    "Call disconnected",
    "Remote disconnect",
    "Timer expired awaiting token refresh",
    "Media process disconnected",
)


@dataclass(frozen=True, slots=True)
class Call:
    """One participant's call: the ids that stay the same across its log lines."""

    conference: str
    participant: str
    protocol: str
    call_id: str
    participant_id: str
    conversation_id: str
    remote_address: str
    remote_port: int
    signaling_node: str
    media_node: str
    location: str
    vendor: str
    host: str


def _random_call(rng: random.Random) -> Call:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    user = f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"
    protocol = rng.choice(PROTOCOLS)
    scheme = "h323" if protocol == "H323" else "sip"
    remote = f"10.{rng.randrange(2, 250)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"
    node = rng.randrange(len(NODES))
    return Call(
        conference=rng.choice(CONFERENCES),
        participant=f"{first} {last} <{scheme}:{user}>",
        protocol=protocol,
        call_id=f"{uuid.UUID(int=rng.getrandbits(128)).hex}@{remote}",
        participant_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        conversation_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        remote_address=remote,
        remote_port=rng.choice((5060, 5061, 1720, 443, rng.randrange(40000, 60000))),
        signaling_node=NODES[node],
        media_node=NODES[(node + rng.randrange(0, 3)) % len(NODES)],
        location=rng.choice(LOCATIONS),
        vendor=rng.choice(VENDORS),
        host=HOSTS[node],
    )


def _event_fields(
    call: Call, step: int, rng: random.Random
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The fields of one of the three lines a call logs: attempting, joined, disconnected.

    Returns the fields every line has and, in order, the ones added while the line is short.
    """
    messages = (
        "Participant attempting to join conference.",
        "Participant has joined.",
        "Participant has disconnected.",
    )
    core = [
        ("Level", "INFO"),
        ("Name", "administrator.conference"),
        ("Message", messages[step]),
        ("Conference", call.conference),
        ("Participant", call.participant),
        ("Protocol", call.protocol),
        ("Call-id", call.call_id),
        ("Participant-id", call.participant_id),
    ]
    if step == 2:
        core.append(("Detail", rng.choice(DISCONNECT_DETAILS)))
    optional = [
        ("Direction", rng.choice(("in", "out")) if step == 0 else "in"),
        ("Remote-address", call.remote_address),
        ("Signaling-node", call.signaling_node),
        ("Media-node", call.media_node),
        ("Location", call.location),
        ("Conversation-id", call.conversation_id),
        ("Remote-port", str(call.remote_port)),
        ("Service-type", "conference"),
        ("Vendor", call.vendor),
        ("Duration", str(rng.randrange(5, 7200))),
        ("Role", "chair"),
        ("Encryption", "On"),
        ("Bandwidth", "2048"),
        ("Service-tag", "vmr-standard"),
        ("Call-tag", "bench"),
        ("Presentation-allowed", "True"),
    ]
    return core, optional


def _rfc5424_frame(
    host: str,
    when: datetime,
    fields: tuple[list[tuple[str, str]], list[tuple[str, str]]],
    size: int,
) -> bytes:
    """One octet-counted RFC 5424 frame (RFC 6587): `LEN SP <134>1 TS HOST pexip - - - BODY LF`.

    Optional fields are added while the frame stays within `size` bytes. The trailing LF is
    inside the counted octets, so that the frame file can be read line by line (loggen
    --read-file); receivers strip it as trailing whitespace.
    """
    stamp = when.strftime("%Y-%m-%d %H:%M:%S,") + f"{when.microsecond // 1000:03d}"
    iso = when.isoformat(timespec="milliseconds")
    head = f"<134>1 {iso} {host} pexip - - - {stamp}"
    core, optional = fields
    body = " ".join(f'{key}="{value}"' for key, value in core)
    for key, value in optional:
        extra = f' {key}="{value}"'
        # 5 bytes: the length prefix ("NNN ") and the trailing LF.
        if len(head) + 1 + len(body) + len(extra) + 5 > size:
            continue
        body += extra
    msg = f"{head} {body}\n".encode()
    return str(len(msg)).encode() + b" " + msg


def pexip_frames(size: int = 500, seed: int = 5424) -> Iterator[bytes]:
    """Endless distinct, framed Pexip conference log lines of roughly `size` bytes each.

    Calls go through attempting / joined / disconnected, interleaved as on a busy node. The
    same seed gives the same lines.
    """
    rng = random.Random(seed)
    clock = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    live: list[tuple[Call, int]] = []
    while True:
        if len(live) < 40 or rng.random() < 0.3:
            live.append((_random_call(rng), 0))
        index = rng.randrange(len(live))
        call, step = live[index]
        clock += timedelta(microseconds=rng.randrange(1000, 250_000))
        yield _rfc5424_frame(call.host, clock, _event_fields(call, step, rng), size)
        if step == 2:
            live.pop(index)
        else:
            live[index] = (call, step + 1)


def write_frames(paths: list[Path], per_file: int, frames: Iterator[bytes]) -> tuple[int, int]:
    """Write `per_file` frames from `frames` into each file; return (frames, bytes) written."""
    count = size = 0
    for path in paths:
        with path.open("wb") as out:
            for frame in itertools.islice(frames, per_file):
                out.write(frame)
                count += 1
                size += len(frame)
    return count, size


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and all its live descendants (via /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process (all its threads), 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    # After the ")" the fields start at `state` (field 3): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of the process in MiB, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its live descendants."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def tree_peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM of the process and its live descendants, in MiB."""
    return sum(peak_rss_mb(p) for p in process_tree(pid))


TCP_COUNTERS = ("TcpExt:TCPAbortOnClose", "TcpExt:TCPAbortOnData", "Tcp:EstabResets", "Tcp:OutRsts")


def tcp_counters() -> dict[str, int]:
    """Kernel TCP counters of this network namespace that reveal connections reset.

    TCPAbortOnClose counts sockets closed with unread received data: Linux then sends a RST
    instead of a FIN, and the peer's kernel drops whatever it had not yet handed to its
    application.
    """
    values: dict[str, int] = {}
    for table in ("/proc/net/netstat", "/proc/net/snmp"):
        rows = Path(table).read_text().splitlines()
        for names, numbers in zip(rows[::2], rows[1::2], strict=False):
            prefix, *keys = names.split()
            for key, number in zip(keys, numbers.split()[1:], strict=False):
                if f"{prefix}{key}" in TCP_COUNTERS:
                    values[f"{prefix}{key}"] = int(number)
    return values


def system_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy (not idle or waiting for I/O) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def wait_until_quiet(max_wait: float, threshold: float = 0.15, window: float = 1.0) -> float:
    """Wait until the machine is nearly idle (under `threshold` CPU-s busy per `window`), at
    most `max_wait` seconds. Returns the busy CPU fraction of the last window."""
    deadline = time.monotonic() + max_wait
    while True:
        before = system_busy_seconds()
        time.sleep(window)
        busy = (system_busy_seconds() - before) / window
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_seconds() -> float:
    """CPU seconds of this process (the benchmark driver itself)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    """Whether a TCP socket listens on `port` (read from /proc/net/tcp*, without connecting,
    so that a receiver logs no empty or failed TLS connection)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[1].endswith(wanted) and fields[3] == "0A":  # 0A: LISTEN
                return True
    return False


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Call `predicate()` until it is true or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a text file ('' if missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Machine and TLS
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, object]:
    """What the figures were measured on."""
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def command_output(*argv: str) -> str:
    """stdout+stderr of a short command, or '' if it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A self-signed CA and a server certificate for 127.0.0.1 / localhost."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a throw-away CA and server certificate with trustme."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.key))
    with files.cert.open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    return files
