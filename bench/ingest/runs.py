"""What the ingest benchmark runs and what each run gave: scenarios, settings, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.floor import Floor


@dataclass(frozen=True, slots=True)
class Scenario:
    """One way of sending: transport and number of parallel connections."""

    transport: str  # "tcp" or "tls"
    connections: int

    @property
    def name(self) -> str:
        return f"{self.transport.upper()} x{self.connections}"


@dataclass(slots=True)
class RunResult:
    """What one receiver did with one scenario's stream."""

    scenario: str
    receiver: str
    run: int
    target: int
    delivered: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    complete: bool = False
    stop_reason: str = ""
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    cpu_seconds_total: float = 0.0
    sender_seconds: float | None = None
    sender_reported_count: int | None = None
    sender_reported_seconds: float | None = None
    sender_exit: int | None = None
    db_count: int | None = None
    exit_code: int | None = None
    error: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    # cdrecon only: until every stored message's events and CDRs were derived as well
    # (later than `seconds` when the writer deferred deriving during the burst).
    derived_seconds: float | None = None
    derived_cpu_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The command line, resolved."""

    messages: int
    size: int
    distinct: int
    scenarios: tuple[Scenario, ...]
    receivers: tuple[str, ...]
    runs: int
    poll: float
    stall_timeout: float
    run_timeout: float
    start_timeout: float
    quiet_wait: float
    floor: bool = True  # also time SQLite alone writing the rows (bench/floor.py)
    event_every: int = 1  # one call-event line in K, the rest support-log lines
    # Another checkout (with its own .venv) whose cdrecon the `-ref` receivers run.
    reference: Path | None = None


@dataclass(frozen=True, slots=True)
class ScenarioFloor:
    """SQLite alone writing the rows (bench/floor.py), timed in one scenario's run."""

    scenario: str
    run: int
    floor: Floor


def add_error(result: RunResult, text: str) -> None:
    result.error = f"{result.error}; {text}" if result.error else text
