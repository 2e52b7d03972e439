"""`agentobs-audit`: verify and query an audit trail from the command line.

    agentobs-audit verify DIR [--key-file F ...] [--anchor FILE ...] [--json]
    agentobs-audit query DIR [--agent A] [--agent-id I] [--action X] [--user U] [--result R]
                             [--since T] [--until T] [--limit N]

`--key-file` is the audit key (the Secret `<resource>-audit-key`, key `key`; default: the file
AGENTOBS_AUDIT_KEY_FILE names, when set, and the `previous-key` file beside it, if any). A trail
whose key was rotated is checked with every key it was written with: `--key-file` repeated, in any
order. `--anchor` is a file of chain heads shipped out of the
pod: log lines, an Elasticsearch search response, or head objects, one per line (`-` is stdin).

T is an ISO 8601 time (`2025-01-31T12:00:00Z`) or an age before now (`90s`, `15m`, `2h`, `7d`); the
window is since <= ts < until, and one that is empty (--since 2h --until 3h) is a usage error.
`--limit N` prints the first N matching records (the oldest). An `--anchor` file without a single
chain-head line is a usage error too.
Exit codes: verify 0 = chain intact (warnings allowed), 1 = tampering or loss found, 3 = nothing
found but a keyed trail's records were not checked for lack of its key;
query 0 = records printed (JSON lines), 1 = nothing matched; 2 = usage error, a directory that is
not an audit trail (no TRAIL file), or an unreadable trail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime

from .audit import AuditError, VerifyReport, load_key, parse_anchor_lines, query, verify
from .audit.anchor import AnchoredHead
from .audit.keys import previous_key_for
from .audit.query import parse_when

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
# A keyed trail verified without its key: nothing found, but record content was not checked, so
# a scheduled job must not count it as a pass.
EXIT_UNCHECKED = 3


def parse_time(value: str, now: datetime | None = None) -> datetime:
    try:
        return parse_when(value, now)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:  # 0 or -1 printed nothing and exited 1, "nothing matched", whatever the trail held
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of records")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agentobs-audit", description="Verify or query an agentobs audit trail.")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check the hash chain; exit 1 when records were altered or lost, "
                                      "3 when a keyed trail could not be checked for lack of its key")
    v.add_argument("directory")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.add_argument("--key-file", action="append", default=[],
                   help="an audit key file; repeatable, for a trail whose key was rotated (default: "
                        "$AGENTOBS_AUDIT_KEY_FILE and the previous-key file beside it)")
    v.add_argument("--anchor", action="append", default=[],
                   help="file of chain heads anchored outside the pod (log lines or ES hits); repeatable")
    q = sub.add_parser("query", help="print matching records as JSON lines")
    q.add_argument("directory")
    q.add_argument("--agent", help="agent name or agent instance id")
    q.add_argument("--agent-id", help="agent instance id (AGENTOBS_AGENT_ID) only")
    q.add_argument("--action")
    q.add_argument("--user")
    q.add_argument("--result")
    q.add_argument("--since", type=parse_time, help="ISO 8601 time or age (15m, 2h, 7d)")
    q.add_argument("--until", type=parse_time, help="ISO 8601 time or age (15m, 2h, 7d)")
    q.add_argument("--limit", type=positive, metavar="N",
                   help="print at most N records: the first N that match, oldest first")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "verify":
            return _verify(args)
        return _query(args)
    except (OSError, AuditError, ValueError) as exc:
        print(f"agentobs-audit: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _read_anchors(paths: list[str]) -> list[AnchoredHead] | None:
    if not paths:
        return None
    heads: list[AnchoredHead] = []
    for path in paths:
        if path == "-":
            found = parse_anchor_lines(sys.stdin)
        else:
            with open(path, encoding="utf-8", errors="replace") as fh:
                found = parse_anchor_lines(fh)
        if not found:
            # Most likely the wrong file (or stderr was not captured): checking against no heads
            # would quietly check nothing.
            raise ValueError(f"no chain-head lines found in {'stdin' if path == '-' else path}")
        heads += found
    return heads


def _verify(args: argparse.Namespace) -> int:
    keys = [load_key(path) for path in args.key_file]
    if not keys and (key_file := os.environ.get("AGENTOBS_AUDIT_KEY_FILE")):
        previous = previous_key_for(key_file)
        keys = [load_key(key_file)] + ([previous] if previous is not None else [])
    report = verify(args.directory, keys=keys, anchors=_read_anchors(args.anchor))
    unchecked = any(p.kind == "keyed_unchecked" for p in report.warnings)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for problem in report.problems:
            print(problem.describe())
        span = f"seq {report.first_seq}..{report.last_seq}" if report.records else "no records"
        verdict = _verdict(report, unchecked)
        keyed = _keying(report, bool(keys))
        anchors = f", {report.anchors_checked} anchored head(s) checked" if args.anchor else ", no anchors"
        print(f"{verdict}: {report.records} record(s), {span}, {len(report.files)} file(s), "
              f"HEAD seq {report.head_seq}; {keyed}{anchors}")
    if not report.ok:
        return EXIT_FINDINGS
    return EXIT_UNCHECKED if unchecked else EXIT_OK


def _verdict(report: VerifyReport, unchecked: bool) -> str:
    if not report.ok:
        return f"FAILED ({len(report.errors)} problem(s))"
    return "UNCHECKED (integrity not checked: no key, or not every key the trail was written with)" \
        if unchecked else "OK"


def _keying(report: VerifyReport, key_given: bool) -> str:
    if not report.keyed:
        return "UNKEYED (the chain shows damage, not a deliberate rewrite)"
    if any(p.kind == "key" for p in report.problems):
        return "keyed, MACs NOT checked (not the trail's key)"
    return "keyed, MACs checked" if key_given else "keyed, MACs NOT checked (no key)"


def _query(args: argparse.Namespace) -> int:
    records = query(args.directory, agent=args.agent, agent_id=args.agent_id, action=args.action, user=args.user,
                    result=args.result, since=args.since, until=args.until, limit=args.limit)
    for rec in records:
        print(json.dumps(rec, sort_keys=True, ensure_ascii=False))
    return EXIT_OK if records else EXIT_FINDINGS


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
