"""Start-up and configuration mistakes: the real `cdrecon` command ends each with a line that
names the thing and says what to do, a documented exit status, and no traceback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from tests.conftest import CDRECON, POSTGRES_URL, postgres_available

ROOT = Path(__file__).resolve().parent.parent
# The exit statuses the README documents under "Exit status".
FAILED, USAGE, SETUP, DATABASE, ADDRESS_IN_USE = 1, 2, 3, 4, 5


@dataclass
class Place:
    """A working directory with certificates and sockets that a case can take."""

    root: Path
    sockets: list[socket.socket] = field(default_factory=list)

    def path(self, name: str) -> str:
        return str(self.root / name)

    def taken(self, kind: int = socket.SOCK_STREAM) -> str:
        """A loopback address another socket holds."""
        holder = socket.socket(socket.AF_INET, kind)
        holder.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            holder.listen()
        self.sockets.append(holder)
        return f"127.0.0.1:{holder.getsockname()[1]}"


@pytest.fixture
def place(tmp_path: Path) -> Iterator[Place]:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.issue_cert("other.example").private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "not-pem.pem").write_text("this is not a certificate\n")
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "conferences.json").write_text('{"objects": [{"colour": "blue"}]}')
    (tmp_path / "mn.pass").write_text("secret\n")
    (tmp_path / "empty.pass").write_text("\n")
    (tmp_path / "no-such-file").unlink(missing_ok=True)
    found = Place(tmp_path)
    yield found
    for holder in found.sockets:
        holder.close()


@dataclass(frozen=True)
class Case:
    """A mistake: the command, its exit status, and what its last line must say."""

    name: str
    args: Callable[[Place], list[str]]
    status: int
    says: tuple[str, ...]
    postgres: bool = False


def serve(*extra: str) -> Callable[[Place], list[str]]:
    """`serve` on free loopback ports, the given flags on top ({name} is a file in place)."""

    def args(place: Place) -> list[str]:
        flags = [
            *("--syslog-tcp", "127.0.0.1:0", "--syslog-udp", "127.0.0.1:0"),
            *("--http", "127.0.0.1:0"),
        ]
        return ["serve", *flags, *(_fill(arg, place) for arg in extra)]

    return args


def command(*words: str) -> Callable[[Place], list[str]]:
    return lambda place: [_fill(word, place) for word in words]


def _fill(word: str, place: Place) -> str:
    if word == "{tcp}":
        return place.taken()
    if word == "{udp}":
        return place.taken(socket.SOCK_DGRAM)
    return re.sub(r"\{([\w.-]+)\}", lambda m: place.path(m.group(1)), word)


TLS = ("--tls-cert", "{cert.pem}", "--tls-key", "{key.pem}", "--syslog-tls", "127.0.0.1:0")
CASES = [
    Case("tcp port taken", serve("--syslog-tcp", "{tcp}"), ADDRESS_IN_USE,
         ("CDRECON_SYSLOG_TCP", "already in use", "--syslog-tcp")),
    Case("udp port taken", serve("--syslog-udp", "{udp}"), ADDRESS_IN_USE,
         ("CDRECON_SYSLOG_UDP", "already in use")),
    Case("tls port taken", serve(*TLS, "--syslog-tls", "{tcp}"), ADDRESS_IN_USE,
         ("CDRECON_SYSLOG_TLS", "already in use")),
    Case("http port taken", serve("--http", "{tcp}"), ADDRESS_IN_USE,
         ("CDRECON_HTTP", "already in use", "--http")),
    Case("certificate missing", serve(*TLS, "--tls-cert", "{no-such-file}"), SETUP,
         ("no-such-file", "CDRECON_TLS_CERT", "No such file")),
    Case("certificate unreadable", serve(*TLS, "--tls-cert", "{a-directory}"), SETUP,
         ("a-directory", "CDRECON_TLS_CERT")),
    Case("certificate not PEM", serve(*TLS, "--tls-cert", "{not-pem.pem}"), SETUP,
         ("not-pem.pem", "CDRECON_TLS_CERT", "not PEM")),
    Case("key missing", serve(*TLS, "--tls-key", "{no-such-file}"), SETUP,
         ("no-such-file", "CDRECON_TLS_KEY")),
    Case("key not PEM", serve(*TLS, "--tls-key", "{not-pem.pem}"), SETUP,
         ("not-pem.pem", "CDRECON_TLS_KEY", "not PEM")),
    Case("key of another certificate", serve(*TLS, "--tls-key", "{other-key.pem}"), SETUP,
         ("other-key.pem", "does not match", "cert.pem")),
    Case("client CA missing", serve(*TLS, "--tls-client-ca", "{no-such-file}"), SETUP,
         ("no-such-file", "CDRECON_TLS_CLIENT_CA")),
    Case("tls listener without certificate", serve("--syslog-tls", "127.0.0.1:0"), SETUP,
         ("needs a certificate", "CDRECON_TLS_CERT", "CDRECON_SYSLOG_TLS=off")),
    Case("database url unparsable", command("token", "list", "--database-url", "cdrecon.db"),
         SETUP, ("cannot parse", "CDRECON_DATABASE_URL", "sqlite+aiosqlite:///")),
    Case("database driver not installed",
         command("token", "list", "--database-url", "postgresql+psycopg://u@localhost/db"),
         SETUP, ("not installed", "sqlite+aiosqlite:///", "postgresql+asyncpg://")),
    Case("database directory missing",
         command("token", "list", "--database-url", "sqlite+aiosqlite:///{no-such-file}/x.db"),
         SETUP, ("no-such-file", "does not exist", "CDRECON_DATABASE_URL")),
    Case("postgresql refuses the connection",
         command("token", "list", "--database-url", "postgresql+asyncpg://u@127.0.0.1:1/db"),
         DATABASE, ("127.0.0.1:1", "CDRECON_DATABASE_URL", "check that the server runs")),
    Case("postgresql refuses the role",
         command("token", "list", "--database-url",
                 POSTGRES_URL.replace("postgres@", "no_such_role@")),
         DATABASE, ("no_such_role", "does not exist"), postgres=True),
    Case("unknown log level", serve("--log-level", "LOUD"), SETUP,
         ("CDRECON_LOG_LEVEL", "--log-level", "LOUD", "WARNING")),
    Case("syslog import file missing", command("import-syslog", "{no-such-file}"), USAGE,
         ("no-such-file", "does not exist")),
    Case("syslog import file unreadable", command("import-syslog", "{a-directory}"), USAGE,
         ("a-directory", "is a directory")),
    Case("history import file missing", command("import-history", "{no-such-file}"), USAGE,
         ("no-such-file", "does not exist")),
    Case("history import file unreadable", command("import-history", "{a-directory}"), USAGE,
         ("a-directory", "is a directory")),
    Case("history password file missing",
         command("pull-history", "--url", "https://mn.invalid", "--user", "admin",
                 "--password-file", "{no-such-file}"),
         USAGE, ("no-such-file", "does not exist")),
    Case("serve's MN password file missing",
         serve("--mn-url", "https://mn.invalid", "--mn-password-file", "{no-such-file}"),
         SETUP, ("cannot read the MN password", "no-such-file", "CDRECON_MN_PASSWORD_FILE")),
    Case("serve's MN password file empty",
         serve("--mn-url", "https://mn.invalid", "--mn-password-file", "{empty.pass}"),
         SETUP, ("empty.pass", "CDRECON_MN_PASSWORD_FILE", "is empty")),
    Case("history password file empty",
         command("pull-history", "--url", "https://mn.invalid", "--user", "admin",
                 "--password-file", "{empty.pass}"),
         SETUP, ("empty.pass", "--password-file", "is empty")),
    Case("not MN history", command("import-history", "{cert.pem}"), FAILED,
         ("cert.pem", "not MN history")),
]  # fmt: skip


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CDRECON_")}
    env["CDRECON_DATABASE_URL"] = f"sqlite+aiosqlite:///{cwd / 'cdrecon.db'}"
    return subprocess.run(
        [CDRECON, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_mistake_ends_with_one_clear_line(case: Case, place: Place) -> None:
    if case.postgres and (reason := postgres_available()):
        pytest.skip(reason)
    done = run(case.args(place), place.root)
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == case.status, done.stderr
    for part in case.says:
        assert part in last, f"{part!r} not in the last line {last!r}"


def test_debug_shows_the_traceback(place: Place) -> None:
    done = run(["--debug", "serve", "--syslog-tls", "127.0.0.1:0"], place.root)
    assert done.returncode != 0
    assert "Traceback" in done.stderr


def _readme_settings() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| setting | default | meaning |", 1)[1].split("\n\n", 1)[0]
    return {name.lower() for name in re.findall(r"`CDRECON_(\w+)`", table)}


def test_every_setting_of_the_readme_is_a_serve_flag() -> None:
    from app.config import Settings

    documented = _readme_settings()
    assert "log_level" in documented
    assert documented <= set(Settings.model_fields)
    helptext = subprocess.run(
        [CDRECON, "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    missing = {n for n in documented if f"--{n.replace('_', '-')}" not in helptext}
    assert not missing
