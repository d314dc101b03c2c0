"""The syslog receivers under test: syslog-ng (into a file, or parsed into SQLite), cdrecon and
the lean CPython receiver."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from contextlib import closing, suppress
from pathlib import Path
from typing import BinaryIO, Protocol

import httpx

from bench.commands import command_output, last_line, terminate, upgrade_database
from bench.floor import PRAGMAS
from bench.ingest.runs import RunResult, Scenario, Settings, add_error
from bench.loopback import TlsFiles, free_port, listening, wait_for
from bench.paths import CDRECON, ROOT

STORED_METRIC = "cdrecon_messages_stored_total"

PENDING_METRIC = "cdrecon_derive_pending_messages"


class Receiver(Protocol):
    """A syslog receiver under test, started fresh for one run."""

    name: str
    pid: int
    logdir: Path

    def start(self, scenario: Scenario) -> int:
        """Start and wait until it accepts `scenario`; return the port to send to."""
        ...

    def stored(self) -> int:
        """How many messages it has durably taken so far."""
        ...

    def stop(self) -> int | None:
        """Stop it gracefully and wait; return its exit code (None if it had to be killed)."""
        ...

    def finish(self, result: RunResult) -> None:
        """Add receiver-specific checks to the result after it stopped, then clean up."""
        ...


class LineCounter:
    """Counts the lines of a file that another process is appending to, incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._handle: BinaryIO | None = None

    def count(self) -> int:
        if self._handle is None:
            if not self.path.exists():
                return 0
            self._handle = self.path.open("rb")
        while chunk := self._handle.read(8 << 20):
            self.lines += chunk.count(b"\n")
        return self.lines

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = None


SYSLOG_NG_CONF = """\
@version: {version}
# Written by bench.ingest: a reference receiver, run in the foreground only.
options {{
    use-dns(no); use-fqdn(no); dns-cache(no); keep-hostname(yes); chain-hostnames(no);
    stats-freq(0); mark-freq(0);
}};
source s_bench {{
    syslog(ip("127.0.0.1") port({port}) transport("{transport}")
           max-connections({max_conn}) log-iw-size({iw_size}){flags}{tls});
}};
{body}"""

FILE_BODY = """\
destination d_file {{
    file("{out}" template("${{ISODATE}} ${{HOST}} ${{PROGRAM}} ${{MSG}}\\n")
         log-fifo-size({fifo}));
}};
log {{ source(s_bench); destination(d_file); flags(flow-control); }};
"""

# syslog-ng-sql's table: one row per message, with what cdrecon keeps of it (the time it
# was received, the peer, the sending host, the whole frame) and the Pexip fields cdrecon
# derives call events and CDRs from, as syslog-ng's kv-parser and date-parser give them.
# (column declaration, syslog-ng template); an empty value is stored as NULL.
PEXIP_SQL_COLUMNS = (
    ("received_us bigint", "${R_UNIXTIME}${R_USEC}"),
    ("transport varchar(8)", "{transport}"),
    ("peer_host varchar(64)", "${SOURCEIP}"),
    ("hostname varchar(255)", "${HOST}"),
    ("event_us bigint", "${S_UNIXTIME}${S_USEC}"),
    ("level varchar(16)", "${.pexip.Level}"),
    ("name varchar(64)", "${.pexip.Name}"),
    ("message text", "${.pexip.Message}"),
    ("conference text", "${.pexip.Conference}"),
    ("participant text", "${.pexip.Participant}"),
    ("participant_id varchar(64)", "${.pexip.Participant-id}"),
    ("call_id text", "${.pexip.Call-id}"),
    ("conversation_id varchar(64)", "${.pexip.Conversation-id}"),
    ("protocol varchar(16)", "${.pexip.Protocol}"),
    ("direction varchar(8)", "${.pexip.Direction}"),
    ("remote_address varchar(64)", "${.pexip.Remote-address}"),
    ("detail text", "${.pexip.Detail}"),
    ("raw text", "${RAWMSG}"),
)
PEXIP_SQL_TABLE = "pexip_messages"

SQL_BODY = """\
parser p_pexip {{
    # The body: `YYYY-MM-DD HH:MM:SS,mmm ` then key="value" pairs.
    kv-parser(prefix(".pexip.") template("${{MSG}}"));
    date-parser(format("%Y-%m-%d %H:%M:%S,%f") template("$(substr \\"${{MSG}}\\" 0 23)")
                time-zone("UTC"));
}};
destination d_sql {{
    sql(type(sqlite3) dbd-option("sqlite3_dbdir" "{dbdir}") database("{database}")
        table("{table}")
        columns({columns})
        values({values})
        indexes("event_us", "participant_id")
        null("")
        # cdrecon's pragmas (app/db/engine.py), as bench/floor.py uses them.
        session-statements({pragmas})
        flags(explicit-commits) batch-lines({batch_lines}) batch-timeout({batch_timeout_ms})
        log-fifo-size({fifo}));
}};
log {{ source(s_bench); parser(p_pexip); destination(d_sql); flags(flow-control); }};
"""


class SyslogNgReceiver:
    """syslog-ng -F with a syslog() source and a file() destination under flow control."""

    name = "syslog-ng"
    max_connections = 64
    window_per_connection = 10_000
    source_flags = ""  # syslog() flags(), if any

    def __init__(self, workdir: Path, logdir: Path, tls: TlsFiles, version: str) -> None:
        self.workdir = workdir
        self.logdir = logdir
        self.tls = tls
        self.version = version
        self.out = workdir / "syslog-ng-out.log"
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._counter = LineCounter(self.out)
        self._log = logdir / f"{self.name}.log"

    @property
    def fifo(self) -> int:
        """The destination's queue: twice what all sources' windows can hold."""
        return 2 * self.max_connections * self.window_per_connection

    def body(self, scenario: Scenario) -> str:
        """The config after the source: parsers, the destination and the log path."""
        return FILE_BODY.format(out=self.out, fifo=self.fifo)

    def config(self, scenario: Scenario, port: int) -> str:
        tls = ""
        if scenario.transport == "tls":
            tls = (
                f'\n           tls(key-file("{self.tls.key}") cert-file("{self.tls.cert}")'
                " peer-verify(optional-untrusted))"
            )
        return SYSLOG_NG_CONF.format(
            version=self.version,
            port=port,
            transport=scenario.transport,
            max_conn=self.max_connections,
            iw_size=self.max_connections * self.window_per_connection,
            flags=f" flags({self.source_flags})" if self.source_flags else "",
            tls=tls,
            body=self.body(scenario),
        )

    def command(self, conf: Path) -> list[str]:
        return [
            "syslog-ng",
            "-F",  # foreground: never a service
            "-e",  # its own messages to stderr (our log file)
            "--no-caps",
            "-f",
            str(conf),
            "--pidfile",
            str(self.workdir / "syslog-ng.pid"),
            "--persist-file",
            str(self.workdir / "syslog-ng.persist"),
            "--control",
            str(self.workdir / "syslog-ng.ctl"),
        ]

    def start(self, scenario: Scenario) -> int:
        port = free_port()
        conf = self.workdir / "syslog-ng.conf"
        conf.write_text(self.config(scenario, port))
        shutil.copy(conf, self.logdir / "syslog-ng.conf")
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(conf), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        self.pid = self._proc.pid
        proc = self._proc
        if not wait_for(lambda: proc.poll() is not None or listening(port), timeout=20):
            raise RuntimeError(f"{self.name} did not open its port in 20 s")
        if proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited {proc.returncode}: {last_line(self._log)}")
        return port

    def stored(self) -> int:
        return self._counter.count()

    def stop(self) -> int | None:
        return terminate(self._proc, timeout=30) if self._proc else None

    def finish(self, result: RunResult) -> None:
        self._counter.close()
        result.extra["output_lines_after_stop"] = LineCounter(self.out).count()
        self.out.unlink(missing_ok=True)


class SyslogNgSqlReceiver(SyslogNgReceiver):
    """syslog-ng -F parsing the Pexip body with kv-parser() into sql(type(sqlite3)): the
    stored, parsed rows syslog-ng's own C code gets into SQLite, in batched transactions."""

    name = "syslog-ng-sql"
    source_flags = "store-raw-message"  # ${RAWMSG}: the whole frame, as cdrecon keeps it
    batch_lines = 5000  # rows per transaction: bench/floor.py's batch
    # A partial batch is committed once no message came for this long (ms).
    batch_timeout_ms = 20

    def __init__(self, workdir: Path, logdir: Path, tls: TlsFiles, version: str) -> None:
        super().__init__(workdir, logdir, tls, version)
        self.db = workdir / "syslog-ng.db"
        self._conn: sqlite3.Connection | None = None
        self._last = 0

    def body(self, scenario: Scenario) -> str:
        def quoted(items: Iterable[str]) -> str:
            return f",\n{' ' * 16}".join('"' + item.replace('"', '\\"') + '"' for item in items)

        values = (
            value.replace("{transport}", scenario.transport) for _, value in PEXIP_SQL_COLUMNS
        )
        return SQL_BODY.format(
            dbdir=self.db.parent,
            database=self.db.name,
            table=PEXIP_SQL_TABLE,
            columns=quoted(column for column, _ in PEXIP_SQL_COLUMNS),
            values=quoted(values),
            pragmas=quoted(PRAGMAS),
            batch_lines=self.batch_lines,
            batch_timeout_ms=self.batch_timeout_ms,
            fifo=self.fifo,
        )

    def stored(self) -> int:
        # Committed rows only; rowids are contiguous from 1 in one writer's table.
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            query = f"SELECT max(rowid) FROM {PEXIP_SQL_TABLE}"
            self._last = int(self._conn.execute(query).fetchone()[0] or 0)
        except sqlite3.Error:
            pass  # no database or no table yet
        return self._last

    def stop(self) -> int | None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return super().stop()

    def finish(self, result: RunResult) -> None:
        if self.db.exists():
            with closing(sqlite3.connect(self.db)) as conn:
                rows, named = conn.execute(
                    f"SELECT count(*), count(name) FROM {PEXIP_SQL_TABLE}"
                ).fetchone()
                events = conn.execute(
                    f"SELECT count(participant_id) FROM {PEXIP_SQL_TABLE}"
                ).fetchone()[0]
            result.db_count = int(rows)
            result.extra["rows_with_participant_id"] = int(events)
            if named != rows:
                add_error(result, f"kv-parser gave {rows - named:,} of {rows:,} rows no Name")
        result.extra["db_bytes"] = sum(
            p.stat().st_size for p in self.workdir.glob("syslog-ng.db*") if p.is_file()
        )
        for path in self.workdir.glob("syslog-ng.db*"):
            path.unlink(missing_ok=True)


class CdreconReceiver:
    """`.venv/bin/cdrecon serve` on a fresh SQLite database, watched by reading it, as the
    other receivers are; /metrics is read once, at the end. (Until 2026-12-07 progress was
    /metrics every poll: half a core of `serve`'s event loop at 50 polls a second.)"""

    name = "cdrecon"

    def __init__(
        self,
        workdir: Path,
        logdir: Path,
        tls: TlsFiles,
        start_timeout: float,
        derive_process: bool = False,
        checkout: Path | None = None,
    ) -> None:
        self.derive_process = derive_process
        if derive_process:
            self.name = "cdrecon-2proc"
        # Another checkout's cdrecon (`--reference`), or this tree's.
        self.executable = CDRECON
        if checkout is not None:
            self.name += "-ref"
            self.executable = str(checkout / ".venv" / "bin" / "cdrecon")
        self.workdir = workdir
        self.logdir = logdir
        self.tls = tls
        self.start_timeout = start_timeout
        self.db = workdir / "bench.db"
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None
        self._conn: sqlite3.Connection | None = None
        self._log = logdir / "cdrecon.log"
        self._last = 0
        self.metric_errors = 0
        self.final_metrics: dict[str, float] = {}

    def environment(self, scenario: Scenario, port: int, http_port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDRECON_")}
        env |= {
            "CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{self.db}",
            "CDRECON_SYSLOG_TCP": f"127.0.0.1:{port}" if scenario.transport == "tcp" else "off",
            "CDRECON_SYSLOG_UDP": "off",
            "CDRECON_HTTP": f"127.0.0.1:{http_port}",
            "CDRECON_DERIVE_PROCESS": "true" if self.derive_process else "false",
        }
        if scenario.transport == "tls":
            env |= {
                "CDRECON_SYSLOG_TLS": f"127.0.0.1:{port}",
                "CDRECON_TLS_CERT": str(self.tls.cert),
                "CDRECON_TLS_KEY": str(self.tls.key),
            }
        return env

    def start(self, scenario: Scenario) -> int:
        port, http_port = free_port(), free_port()
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.executable, "serve"],
                env=self.environment(scenario, port, http_port),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self.pid = self._proc.pid
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=5)
        proc = self._proc
        if not wait_for(lambda: proc.poll() is not None or self._healthy(), self.start_timeout):
            raise RuntimeError(f"cdrecon /healthz not 200 in {self.start_timeout:.0f} s")
        if proc.poll() is not None:
            raise RuntimeError(f"cdrecon exited {proc.returncode}: {last_line(self._log)}")
        if not wait_for(lambda: listening(port), timeout=10):
            raise RuntimeError(f"cdrecon healthy but nothing listens on {port}")
        return port

    def _healthy(self) -> bool:
        assert self._http is not None
        try:
            return self._http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> dict[str, float]:
        """The plain counters and gauges of /metrics, by sample name with labels."""
        assert self._http is not None
        response = self._http.get("/metrics")
        response.raise_for_status()
        return parse_prometheus(response.text)

    def _read(self) -> tuple[int, int]:
        """(messages stored, messages of them listed for deriving), committed, in one read:
        ids are contiguous from 1 in one writer's SQLite file (nothing is deleted here)."""
        if self._conn is None:
            self._conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        stored, listed = self._conn.execute(
            "SELECT (SELECT max(id) FROM messages), "
            "(SELECT sum(last_id - first_id + 1) FROM pending_derivations)"
        ).fetchone()
        return int(stored or 0), int(listed or 0)

    def stored(self) -> int:
        with suppress(sqlite3.Error):  # no database or no table yet
            self._last = self._read()[0]
        return self._last

    def derived(self) -> int:
        """Stored messages whose call events and CDRs are derived too."""
        try:
            stored, listed = self._read()
        except sqlite3.Error:
            return 0
        return stored - listed

    def stop(self) -> int | None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            self.final_metrics = self.metrics()
        except httpx.HTTPError:
            self.metric_errors += 1
        if self._http is not None:
            self._http.close()
        return terminate(self._proc, timeout=90) if self._proc else None

    def finish(self, result: RunResult) -> None:
        result.db_count = sqlite_count(self.db)
        result.extra["metric_errors"] = self.metric_errors
        result.extra["final_metrics"] = {
            k: v
            for k, v in self.final_metrics.items()
            if k.startswith("cdrecon_") and "_created" not in k and "_bucket" not in k
        }
        result.extra["db_bytes"] = sum(
            p.stat().st_size for p in self.workdir.glob("bench.db*") if p.is_file()
        )
        for path in self.workdir.glob("bench.db*"):
            path.unlink(missing_ok=True)


class LeanReceiver:
    """`python -m bench.lean_receiver`: the leanest CPython receiver that stores every message,
    parsed, in cdrecon's raw store (no events, no CDRs): what Python itself allows."""

    name = "python-lean"

    def __init__(self, workdir: Path, logdir: Path, tls: TlsFiles) -> None:
        self.workdir = workdir
        self.logdir = logdir
        self.tls = tls
        self.db = workdir / "bench.db"
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: sqlite3.Connection | None = None
        self._log = logdir / "python-lean.log"
        self._last = 0

    def start(self, scenario: Scenario) -> int:
        upgrade_database(self.db)
        port = free_port()
        argv = [sys.executable, "-m", "bench.lean_receiver", "--db", str(self.db)]
        argv += ["--port", str(port)]
        if scenario.transport == "tls":
            argv += ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)]
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.pid = self._proc.pid
        proc = self._proc
        if not wait_for(lambda: proc.poll() is not None or listening(port), timeout=20):
            raise RuntimeError("the lean receiver did not open its port in 20 s")
        if proc.poll() is not None:
            raise RuntimeError(f"lean receiver exited {proc.returncode}: {last_line(self._log)}")
        return port

    def stored(self) -> int:
        # Committed rows only: ids are contiguous from 1 in one writer's SQLite file.
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            self._last = int(self._conn.execute("SELECT max(id) FROM messages").fetchone()[0] or 0)
        except sqlite3.Error:
            pass
        return self._last

    def stop(self) -> int | None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return terminate(self._proc, timeout=60) if self._proc else None

    def finish(self, result: RunResult) -> None:
        result.db_count = sqlite_count(self.db)
        for path in self.workdir.glob("bench.db*"):
            path.unlink(missing_ok=True)


def parse_prometheus(text: str) -> dict[str, float]:
    """Sample name (with its label set) -> value, from Prometheus text exposition."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


def sum_metric(samples: dict[str, float], metric: str) -> float:
    """Sum of all samples of one metric, whatever their labels."""
    return sum(v for k, v in samples.items() if k == metric or k.startswith(metric + "{"))


def sqlite_count(db: Path) -> int | None:
    """`select count(*) from messages`, with the sqlite3 CLI if present, else the module."""
    if not db.exists():
        return None
    query = "select count(*) from messages"
    if shutil.which("sqlite3"):
        done = subprocess.run(
            ["sqlite3", str(db), query], capture_output=True, text=True, timeout=300, check=False
        )
        return int(done.stdout.strip()) if done.returncode == 0 else None
    with sqlite3.connect(db) as conn:
        return int(conn.execute(query).fetchone()[0])


def syslog_ng_config_version() -> str:
    """`@version:` for the config: major.minor of the installed syslog-ng."""
    found = re.search(r"(\d+\.\d+)\.\d+", command_output("syslog-ng", "--version"))
    return found.group(1) if found else "3.38"


def make_receiver(name: str, workdir: Path, logdir: Path, tls: TlsFiles, s: Settings) -> Receiver:
    logdir.mkdir(parents=True, exist_ok=True)
    if name == "syslog-ng":
        return SyslogNgReceiver(workdir, logdir, tls, syslog_ng_config_version())
    if name == "syslog-ng-sql":
        return SyslogNgSqlReceiver(workdir, logdir, tls, syslog_ng_config_version())
    if name == "python-lean":
        return LeanReceiver(workdir, logdir, tls)
    two = name.removesuffix("-ref") == "cdrecon-2proc"
    checkout = s.reference if name.endswith("-ref") else None
    return CdreconReceiver(workdir, logdir, tls, s.start_timeout, two, checkout)
