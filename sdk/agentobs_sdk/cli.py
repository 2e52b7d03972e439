"""`agentobs-audit`: verify and query an audit trail from the command line.

    agentobs-audit verify DIR [--json]
    agentobs-audit query DIR [--agent A] [--action X] [--user U] [--result R]
                             [--since T] [--until T] [--limit N]

T is an ISO 8601 time (`2025-01-31T12:00:00Z`) or an age before now (`90s`, `15m`, `2h`, `7d`).
Exit codes: verify 0 = chain intact (warnings allowed), 1 = tampering or loss found;
query 0 = records printed (JSON lines), 1 = nothing matched; 2 = usage error or unreadable trail.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from .audit import AuditError, query, verify
from .audit.chain import parse_ts

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str, now: datetime | None = None) -> datetime:
    m = _AGE.match(value.strip())
    if m:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    try:
        return parse_ts(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither an ISO 8601 time nor an age like 15m, 2h, 7d") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agentobs-audit", description="Verify or query an agentobs audit trail.")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check the hash chain; exit 1 when records were altered or lost")
    v.add_argument("directory")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    q = sub.add_parser("query", help="print matching records as JSON lines")
    q.add_argument("directory")
    q.add_argument("--agent")
    q.add_argument("--action")
    q.add_argument("--user")
    q.add_argument("--result")
    q.add_argument("--since", type=parse_time, help="ISO 8601 time or age (15m, 2h, 7d)")
    q.add_argument("--until", type=parse_time, help="ISO 8601 time or age (15m, 2h, 7d)")
    q.add_argument("--limit", type=int)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "verify":
            return _verify(args.directory, as_json=args.json)
        return _query(args)
    except (OSError, AuditError, ValueError) as exc:
        print(f"agentobs-audit: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _verify(directory: str, *, as_json: bool) -> int:
    report = verify(directory)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for problem in report.problems:
            print(problem.describe())
        span = f"seq {report.first_seq}..{report.last_seq}" if report.records else "no records"
        verdict = "OK" if report.ok else f"FAILED ({len(report.errors)} problem(s))"
        print(f"{verdict}: {report.records} record(s), {span}, {len(report.files)} file(s), "
              f"HEAD seq {report.head_seq}")
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _query(args: argparse.Namespace) -> int:
    records = query(args.directory, agent=args.agent, action=args.action, user=args.user,
                    result=args.result, since=args.since, until=args.until, limit=args.limit)
    for rec in records:
        print(json.dumps(rec, sort_keys=True, ensure_ascii=False))
    return EXIT_OK if records else EXIT_FINDINGS


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
