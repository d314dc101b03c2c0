"""Pure, sans-IO parsers: syslog framing, syslog headers, Pexip bodies, MN records."""
