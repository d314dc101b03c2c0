"""A scripted conference as Pexip administrator-log lines, with the CDRs it must produce."""

from __future__ import annotations

from dataclasses import dataclass

DAY = "2026-11-26"


@dataclass(frozen=True)
class Line:
    """One administrator-log line of one node."""

    node: str
    time: str  # hh:mm:ss,mmm on DAY
    body_fields: str

    @property
    def body(self) -> str:
        return f"{DAY} {self.time} {self.body_fields}"

    def rsyslog(self) -> str:
        """As rsyslog writes it to /var/log (RSYSLOG_FileFormat)."""
        iso = self.time.replace(",", ".")
        return f"{DAY}T{iso}+00:00 {self.node} pexip: {self.body}"

    def rfc5424(self) -> bytes:
        iso = self.time.replace(",", ".")
        return f"<134>1 {DAY}T{iso}Z {self.node} pexip - - - {self.body}".encode()


def admin(message: str, pid: str, extra: str) -> str:
    return (
        f'Level="INFO" Name="administrator.conference" Message="{message}" '
        f'Conference="Weekly sync" Participant-id="{pid}" {extra}'
    )


JOIN, LEAVE, ATTEMPT = (
    "Participant has joined.",
    "Participant has disconnected.",
    "Participant attempting to join conference.",
)
SIP = 'Protocol="SIP" Direction="in" Call-id="c1@10.0.0.5" Remote-address="10.0.0.5"'
ALICE = f'Participant="Alice <sip:alice@example.com>" {SIP} Signaling-node="10.0.1.11"'
BOB_API = 'Participant="Bob" Protocol="API" Conversation-id="conv-bob" Call-id="bob-api"'
BOB_MEDIA = 'Participant="Bob" Protocol="WebRTC" Conversation-id="conv-bob" Call-id="bob-api"'
BACKPLANE = 'Participant="conf-b" Protocol="BACKPLANE" Direction="out"'
EVE = 'Participant="Eve" Protocol="SIP" ConferenceAlias="meet.weekly"'
CAROL = 'Participant="Carol" Protocol="H323" Direction="in" Vendor="Polycom \\"HDX\\""'
DAVE = 'Participant="Dave Ørsted" Protocol="WebRTC" Location="London"'

LINES = [
    Line("conf-a", "10:00:00,000", admin(JOIN, "p-alice", ALICE)),
    Line("conf-a", "10:01:00,000", admin(JOIN, "p-bob-api", BOB_API)),
    Line("conf-a", "10:01:00,250", admin(JOIN, "p-bob-media", BOB_MEDIA)),
    Line("conf-a", "10:02:00,000", admin(JOIN, "p-backplane", BACKPLANE)),
    Line("conf-a", "10:03:00,000", admin(ATTEMPT, "p-eve", EVE)),
    # Carol's disconnect is sent before her join (out of order).
    Line("conf-b", "10:25:00,999", admin(LEAVE, "p-carol", CAROL + ' Detail="Call disconnected"')),
    Line("conf-b", "10:05:00,000", admin(JOIN, "p-carol", CAROL)),
    Line("conf-a", "10:20:00,500", admin(LEAVE, "p-bob-api", BOB_API + ' Detail="API hangup"')),
    Line("conf-a", "10:20:00,700", admin(LEAVE, "p-bob-media", BOB_MEDIA + ' Detail="API hangup"')),
    Line("conf-a", "10:30:00,500", admin(LEAVE, "p-alice", ALICE + ' Detail="Call disconnected"')),
    Line("conf-a", "10:31:00,000", admin(LEAVE, "p-backplane", BACKPLANE)),
    Line("conf-b", "10:40:00,000", admin(JOIN, "p-dave", DAVE)),
    # Not a call event: stored raw, no event.
    Line("conf-a", "10:41:00,000", 'Level="INFO" Name="support.externalpolicy" Message="x"'),
]
CALL_EVENTS = len(LINES) - 1

# participant id -> (state, duration, disconnect_reason, protocol)
EXPECTED = {
    "p-alice": ("closed", 1800, "Call disconnected", "SIP"),
    "p-bob-api": ("closed", 1140, "API hangup", "API"),
    "p-bob-media": ("closed", 1140, "API hangup", "WebRTC"),
    "p-backplane": ("excluded", 1740, None, "BACKPLANE"),
    "p-eve": ("failed", None, None, "SIP"),
    "p-carol": ("closed", 1200, "Call disconnected", "H323"),
    "p-dave": ("open", None, None, "WebRTC"),
}
