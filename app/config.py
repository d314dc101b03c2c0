"""Service settings: one `Settings` object built from `CDRECON_*` variables and CLI flags."""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.startup import StartupError as StartupError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./cdrecon.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DatabaseUnavailableError(StartupError):
    """The database URL is sound but the database refuses us (not running, wrong role)."""

    exit_code = 4


class AddressInUseError(StartupError):
    """Another program already listens where we were told to listen."""

    exit_code = 5


def cannot_listen(what: str, setting: str, address: ListenAddress, exc: OSError) -> StartupError:
    """The start-up error for a listener that could not bind `address`."""
    flag = "--" + setting.removeprefix("CDRECON_").lower().replace("_", "-")
    if exc.errno == errno.EADDRINUSE:
        return AddressInUseError(
            f"cannot listen for {what} on {address} ({setting}): address already in use; "
            f"stop the program using it or choose another address with {flag}"
        )
    return StartupError(
        f"cannot listen for {what} on {address} ({setting}): {exc.strerror or exc}; "
        f"choose another address with {flag}"
    )


def read_secret_file(path: Path, setting: str, what: str) -> str:
    """A secret kept in a file (its surrounding whitespace dropped), read before a command
    starts: a wrong path or an empty file is a start-up error naming the setting."""
    try:
        secret = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StartupError(f"cannot read the {what} {path} ({setting}): {reason}") from exc
    if not secret:
        raise StartupError(f"the {what} file {path} ({setting}) is empty")
    return secret


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A host and port to listen on."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_networks(text: str) -> tuple[Network, ...]:
    """Parse comma-separated networks (`10.0.0.0/8,192.0.2.7`; a bare address is one host)."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ValueError(f"not a network (such as 10.0.0.0/8): {exc}") from None
    return tuple(networks)


def parse_listen_address(text: str) -> ListenAddress | None:
    """Parse `host:port`, `[v6]:port` or `:port`; `off` (or empty) disables the listener."""
    text = text.strip()
    if text.lower() in ("", "off", "none", "disabled"):
        return None
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT or 'off', got {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return ListenAddress(host, port)


class Settings(BaseSettings):
    """Everything the service can be told. Each field is `CDRECON_<NAME>` or `--<name>`."""

    model_config = SettingsConfigDict(env_prefix="CDRECON_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # SQLite durability: NORMAL survives a process crash (WAL); FULL also survives power loss.
    sqlite_synchronous: str = Field(default="NORMAL", pattern="^(OFF|NORMAL|FULL|EXTRA)$")

    syslog_tcp: str = "0.0.0.0:5514"
    syslog_udp: str = "0.0.0.0:5514"
    # Empty means: 0.0.0.0:6514 when a certificate is configured, otherwise off.
    syslog_tls: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # Comma-separated certificate names (CN or DNS SAN) allowed to send; empty allows any
    # certificate that the client CA verified.
    tls_allowed_peers: str = ""
    # TLS handshakes in progress at once (each costs some 300 KB until it ends; at the cap
    # the oldest is given up), and how long one may take.
    tls_max_handshakes: int = Field(default=32, ge=1)
    tls_handshake_timeout: float = Field(default=10.0, gt=0)
    # Comma-separated source networks allowed to send plain TCP and UDP syslog; empty allows
    # everyone. Not authentication (source addresses are easy to forge over UDP): TLS with
    # client certificates is.
    syslog_allow: str = ""
    # The UDP socket's receive buffer (SO_RCVBUF) in bytes; the kernel caps it at
    # net.core.rmem_max. 0 keeps the kernel's default.
    udp_receive_buffer: int = Field(default=8 * 1024 * 1024, ge=0)
    http: str = "127.0.0.1:8080"
    # Comma-separated proxy addresses or networks whose X-Forwarded-For / X-Forwarded-Proto
    # are believed; empty (the default) believes none, so the audit log records the peer.
    trusted_proxies: str = ""
    # /metrics without a token (Prometheus scrapers usually have none); false: admin only.
    metrics_public: bool = True

    max_frame_size: int = Field(default=64 * 1024, ge=256)
    max_connections: int = Field(default=1000, ge=1)
    max_connections_per_host: int = Field(default=200, ge=1)
    # Seconds to keep reading open connections after SIGTERM before giving up on them.
    drain_timeout: float = Field(default=10.0, ge=0)

    # The loss window after a hard kill: at most this many messages, or this long.
    batch_size: int = Field(default=5000, ge=1)
    batch_linger: float = Field(default=0.02, ge=0)
    # Messages waiting for the database above which the receivers stop reading.
    queue_high_water: int = Field(default=20000, ge=1)
    queue_low_water: int = Field(default=5000, ge=0)
    # UDP cannot be paused; past this many waiting messages datagrams are dropped and counted.
    queue_udp_limit: int = Field(default=200000, ge=1)
    # The same marks in bytes of queued frames (whichever is passed first stops reading):
    # what bounds memory when frames are large.
    queue_high_water_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    queue_low_water_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    queue_udp_limit_bytes: int = Field(default=128 * 1024 * 1024, ge=1)
    # Messages waiting above which batches are stored raw and their events and CDRs derived
    # once the senders pause (-1: always defer, a test setting). One batch: a burst.
    defer_backlog: int = Field(default=5000, ge=-1)
    # Derive events and CDRs in a second process while this one stores (app/cdr/worker.py):
    # CDRs ready 1.2-1.5x sooner on two free cores (bench/README.md, "Sixth round").
    derive_process: bool = True

    # Scheduled MN history pulls inside `serve` (off unless a URL is set).
    mn_url: str = ""
    mn_user: str = ""
    mn_password_file: Path | None = None
    mn_ca_bundle: Path | None = None
    mn_pull_interval: float = Field(default=900.0, ge=1)

    # History uploads over HTTP larger than this are refused (413) before they are read whole.
    history_upload_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # Seconds an HTTP request waits for a database connection or lock before answering 503
    # (`database_busy`, with Retry-After): the ingest writer keeps priority.
    request_database_wait: float = Field(default=2.0, gt=0, le=60)

    log_level: str = "INFO"

    # Retention (app/retention): days to keep, 0 keeps forever. Raw messages that carry no
    # call event are most of a support log and no bill depends on them: two weeks is time
    # to notice and investigate a problem. Everything billing may ask about (the messages
    # behind CDRs, CDRs, MN records, runs, batches, the audit log) stays past a yearly
    # billing cycle and its disputes. Unexported lost records are never pruned.
    retain_messages_days: float = Field(default=14.0, ge=0)
    retain_billing_days: float = Field(default=400.0, ge=0)
    # Seconds between pruning passes inside `serve`; 0 turns pruning off there.
    prune_interval: float = Field(default=3600.0, ge=0)
    # The disk budget: crossing either is a warning on /healthz, /metrics and the console
    # before anything stops. 2 GiB leaves a day of a busy estate's messages and SQLite room
    # for its log; the database size limit is off (0) unless set.
    disk_min_free_bytes: int = Field(default=2 * 1024**3, ge=0)
    database_max_bytes: int = Field(default=0, ge=0)

    # Continuous reconciliation inside `serve` (app/watch): after each scheduled pull, look
    # for records the MN lost. Off by default; needs CDRECON_MN_URL.
    watch: bool = False
    # Seconds between the watch's reconciliation runs (each over the whole window); 0: after
    # every pull. The restore check runs after every pull whatever this says.
    watch_interval: float = Field(default=3600.0, ge=0)
    # Legs that ended less than this before the history's "as of" are not judged yet: the
    # MN writes a record when the call ends, sometimes a little later.
    watch_settle: float = Field(default=900.0, ge=0)
    # How far back each watch run (and the restore check) looks, in seconds.
    watch_window: float = Field(default=86400.0, gt=0)
    watch_webhook_url: str = ""
    watch_webhook_secret_file: Path | None = None

    @field_validator("syslog_tcp", "syslog_udp", "syslog_tls", "http")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        if value.strip():
            parse_listen_address(value)
        return value

    @field_validator("syslog_allow", "trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.strip().upper() not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}: use one of {', '.join(LOG_LEVELS)}")
        return value.strip().upper()

    @model_validator(mode="after")
    def _tls_needs_a_certificate(self) -> Settings:
        # Nodes configured for TLS would lose everything they send to a listener that is
        # silently not started: refuse instead.
        if self.tls_cert is None:
            if parse_listen_address(self.syslog_tls) is not None:
                raise ValueError(
                    f"a TLS listener ({self.syslog_tls}) needs a certificate: "
                    "set CDRECON_TLS_CERT and CDRECON_TLS_KEY (--tls-cert, --tls-key), "
                    "or CDRECON_SYSLOG_TLS=off"
                )
            for name, value in (("KEY", self.tls_key), ("CLIENT_CA", self.tls_client_ca)):
                if value is not None:
                    raise ValueError(f"CDRECON_TLS_{name} is set but CDRECON_TLS_CERT is not")
        return self

    @model_validator(mode="after")
    def _watch_needs_a_pull(self) -> Settings:
        # A watch with nothing to pull would reconcile stale history and stay silent.
        if self.watch and not self.mn_url:
            raise ValueError(
                "CDRECON_WATCH needs the MN history it watches: set CDRECON_MN_URL "
                "(and CDRECON_MN_USER, CDRECON_MN_PASSWORD_FILE)"
            )
        url = self.watch_webhook_url.strip()
        if url and not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"CDRECON_WATCH_WEBHOOK_URL must be http(s)://..., got {url!r}")
        if self.watch_webhook_secret_file is not None and not url:
            raise ValueError(
                "CDRECON_WATCH_WEBHOOK_SECRET_FILE is set but CDRECON_WATCH_WEBHOOK_URL is not"
            )
        return self

    @property
    def tcp_address(self) -> ListenAddress | None:
        """Where plain TCP syslog is received, if anywhere."""
        return parse_listen_address(self.syslog_tcp)

    @property
    def udp_address(self) -> ListenAddress | None:
        """Where UDP syslog is received, if anywhere."""
        return parse_listen_address(self.syslog_udp)

    @property
    def tls_address(self) -> ListenAddress | None:
        """Where TLS syslog is received: only when a certificate is configured."""
        if self.tls_cert is None:
            return None
        return parse_listen_address(self.syslog_tls or "0.0.0.0:6514")

    @property
    def http_address(self) -> ListenAddress:
        """Where the HTTP API listens."""
        address = parse_listen_address(self.http)
        if address is None:
            raise ValueError("CDRECON_HTTP cannot be off")
        return address

    @property
    def allowed_peers(self) -> frozenset[str]:
        """Certificate names allowed to send over TLS (empty: any verified certificate)."""
        return frozenset(p.strip().lower() for p in self.tls_allowed_peers.split(",") if p.strip())

    @property
    def syslog_allow_networks(self) -> tuple[Network, ...]:
        """Source networks allowed to send TCP and UDP syslog (empty: everyone)."""
        return parse_networks(self.syslog_allow)

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        """Proxies whose forwarding headers name the client (empty: none)."""
        return parse_networks(self.trusted_proxies)
