"""Ingest benchmark: how fast cdrecon stores Pexip syslog, next to syslog-ng and SQLite alone.

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
    * syslog-ng-sql: the same source, the Pexip body parsed by syslog-ng's `kv-parser()`
      and `date-parser()`, and an `sql(type(sqlite3))` destination writing one row per
      message (received time, peer, host, the frame, the Pexip fields) in transactions of
      5,000 rows, with cdrecon's pragmas. A message counts once `max(rowid)` includes it.
    * cdrecon: `.venv/bin/cdrecon serve` on a fresh SQLite database, deriving in its one
      process (cdrecon-2proc: in a second one, `serve`'s default). A message counts once
      `cdrecon_messages_stored_total` (summed over its transport labels) on GET /metrics
      says it is committed; CDR-ready (`+CDRs`) once its call events and CDRs are derived.
    * sqlite alone (the floor, bench/floor.py): SQLite writing the rows cdrecon keeps for N
      messages, nothing received; timed once per scenario and run, the median of all used.

    Figures, per receiver and scenario:
    * messages/s: N / (time from starting loggen to the moment the receiver has all N),
      timed on the receiver side by polling every ~20 ms; loggen's own rate is not used.
    * delivered: messages the receiver had when it finished, or when it stalled (no progress
      for --stall-timeout seconds) or hit --run-timeout: less than N means loss or a stall.
    * peak RSS MB: VmHWM of the receiver (and any children) just before it is stopped.
    * CPU-s: the receiver's utime+stime (/proc/<pid>/stat) spent between loggen's start and
      the last message stored.
    * cdrecon, syslog-ng-sql: the row count after SIGTERM and exit, which must equal
      delivered (durability).
    * ratios: CDR-ready against the floor and against syslog-ng-sql, raw against the floor,
      and TLS against plain TCP.

How
    Each (scenario, receiver, run) gets a fresh receiver process and a fresh output file or
    database in a temporary directory; receivers alternate within a scenario. Everything
    listens on and sends to 127.0.0.1 only, and every wait is bounded.

Run:  .venv/bin/python -m bench.ingest [--messages N] [--size 500] [--connections 1,4]
                                         [--runs 1] [--skip-tls] [--receivers LIST]
Writes bench/out/ingest-<timestamp>.json and keeps the receivers' logs next to it.
"""
