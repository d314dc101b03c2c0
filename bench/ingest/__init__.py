"""Ingest benchmark: how fast cdrecon stores Pexip syslog, next to syslog-ng writing a file.

What it measures
    For each scenario (TCP with 1 connection, TCP with several connections, TLS with 1
    connection) and each receiver, the same N octet-counted RFC 5424 frames (distinct,
    realistic Pexip Infinity conference log lines, ~500 bytes) are sent over loopback by
    syslog-ng's `loggen`: one loggen process per connection, each sending its own share of
    the lines as they are (`--read-file --dont-parse`). `--distinct K` instead has one
    loggen loop over K lines on all connections.

    * syslog-ng (the reference): run in the foreground with its own config, a `syslog()`
      source on 127.0.0.1 and a `file()` destination under `flags(flow-control)`. A message
      counts once its line is in the output file.
    * cdrecon: `.venv/bin/cdrecon serve` on a fresh SQLite database. A message counts once
      `cdrecon_messages_stored_total` (summed over its transport labels) on GET /metrics
      says it is committed.

    Figures, per receiver and scenario:
    * messages/s: N / (time from starting loggen to the moment the receiver has all N),
      timed on the receiver side by polling every ~20 ms; loggen's own rate is not used.
    * delivered: messages the receiver had when it finished, or when it stalled (no progress
      for --stall-timeout seconds) or hit --run-timeout: less than N means loss or a stall.
    * peak RSS MB: VmHWM of the receiver (and any children) just before it is stopped.
    * CPU-s: the receiver's utime+stime (/proc/<pid>/stat) spent between loggen's start and
      the last message stored.
    * cdrecon only: `select count(*) from messages` with sqlite3 after SIGTERM and exit,
      which must equal delivered (durability).

How
    Each (scenario, receiver, run) gets a fresh receiver process and a fresh output file or
    database in a temporary directory; receivers alternate within a scenario. Everything
    listens on and sends to 127.0.0.1 only, and every wait is bounded.

Run:  .venv/bin/python -m bench.ingest [--messages N] [--size 500] [--connections 1,4]
                                         [--runs 1] [--skip-tls] [--receivers syslog-ng,cdrecon]
Writes bench/out/ingest-<timestamp>.json and keeps the receivers' logs next to it.
"""
