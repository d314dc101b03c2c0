"""Settings: environment names, listen addresses, TLS defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import ListenAddress, Settings, parse_listen_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:5514", ListenAddress("0.0.0.0", 5514)),
        ("127.0.0.1:0", ListenAddress("127.0.0.1", 0)),
        (":6514", ListenAddress("0.0.0.0", 6514)),
        ("[::1]:8080", ListenAddress("::1", 8080)),
        ("off", None),
        ("OFF", None),
        ("", None),
    ],
)
def test_listen_addresses(text: str, expected: ListenAddress | None) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["5514", "host:", "host:port", "h:70000"])
def test_bad_listen_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen_address(text)


def test_defaults_match_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "SYSLOG_TCP", "SYSLOG_UDP", "SYSLOG_TLS", "TLS_CERT", "HTTP"):
        monkeypatch.delenv(f"CDRECON_{name}", raising=False)
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./cdrecon.db"
    assert settings.tcp_address == ListenAddress("0.0.0.0", 5514)
    assert settings.udp_address == ListenAddress("0.0.0.0", 5514)
    assert settings.tls_address is None  # no certificate, no TLS listener
    assert settings.http_address == ListenAddress("127.0.0.1", 8080)


def test_environment_configures_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDRECON_SYSLOG_TCP", "off")
    monkeypatch.setenv("CDRECON_TLS_CERT", "/etc/cdrecon/cert.pem")
    monkeypatch.setenv("CDRECON_TLS_ALLOWED_PEERS", "Conf-1.example.com, conf-2.example.com")
    settings = Settings()
    assert settings.tcp_address is None
    assert settings.tls_address == ListenAddress("0.0.0.0", 6514)
    assert settings.allowed_peers == {"conf-1.example.com", "conf-2.example.com"}


def test_a_bad_address_in_the_environment_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDRECON_SYSLOG_UDP", "everywhere")
    with pytest.raises(ValidationError, match="HOST:PORT"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SYSLOG_TLS", "0.0.0.0:6514", "needs a certificate"),
        ("TLS_KEY", "/etc/cdrecon/key.pem", "CDRECON_TLS_CERT is not"),
        ("TLS_CLIENT_CA", "/etc/cdrecon/ca.pem", "CDRECON_TLS_CERT is not"),
        ("LOG_LEVEL", "chatty", "unknown log level"),
    ],
)
def test_settings_that_cannot_work_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.delenv("CDRECON_TLS_CERT", raising=False)
    monkeypatch.setenv(f"CDRECON_{name}", value)
    with pytest.raises(ValidationError, match=says):
        Settings()


def test_log_levels_are_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDRECON_LOG_LEVEL", "debug")
    assert Settings().log_level == "DEBUG"
