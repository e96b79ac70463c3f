"""The `collab` command: `collab serve`, `collab replay`, ..."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import time
import typing
from pathlib import Path
from typing import Any

from collab.config import add_settings_arguments, env_name, settings_from

log = logging.getLogger("collab")


# ---------------------------------------------------------------------- collab replay


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        help="the document's name (with --data-dir or --store), else a path: a document's "
        "directory, one .ylog file, or with --recording the document to print",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", type=Path, help="the data directory of `collab serve`")
    source.add_argument(
        "--store",
        metavar="URL",
        help="the store of `collab serve --store`: postgresql://USER@HOST:PORT/DB",
    )
    parser.add_argument(
        "--recording", type=Path, help="replay a `collab serve --record` file instead of a log"
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--at", type=int, metavar="REV", help="the text as it was at this revision")
    when.add_argument("--time", metavar="ISO-8601", help="the text as it was at this time (UTC)")
    parser.add_argument(
        "--steps",
        action="store_true",
        help="print every revision in turn, one JSON object a line: rev, time, origin, user, "
        "size, text",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check checksums, revisions, and that a replay from the start equals the snapshots",
    )
    parser.add_argument("--text-name", default="text", help="name of the shared Y.Text")


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, label: str, stream: typing.TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = max(total, 1)
        self.label = label
        self.active = self.stream.isatty() and total >= 1000
        self._drawn = -1

    def __call__(self, done: int) -> None:
        if not self.active:
            return
        percent = min(100, done * 100 // self.total)
        if percent == self._drawn:
            return
        self._drawn = percent
        bar = "#" * (percent * 30 // 100)
        self.stream.write(f"\r{self.label} [{bar:<30}] {percent:3d}% {done}/{self.total}")
        self.stream.flush()

    def done(self) -> None:
        if self.active and self._drawn >= 0:
            self.stream.write("\r" + " " * (len(self.label) + 60) + "\r")
            self.stream.flush()


def _write(text: str) -> None:
    """Print exactly the text (no newline added, \\r\\n kept)."""
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.flush()


def replay(args: argparse.Namespace) -> int:
    """`collab replay`: print a document's text, its revisions, or what is wrong with it."""
    from collab.storage import logs

    try:
        if args.recording is not None:
            return _replay_recording(args)
        if args.store is not None:
            import asyncio

            return asyncio.run(_replay_store(args))
        if args.data_dir is not None:
            segments = logs.document_segments(args.data_dir, args.target)
        else:
            segments = logs.segments_at(Path(args.target))
        if not segments:
            print(f"collab replay: no document {args.target!r} in {args.data_dir}", file=sys.stderr)
            return 2
        if args.verify:
            return _verify(segments, args.text_name)
        return _print_history(logs.read_history(segments), args)
    except BrokenPipeError:  # `collab replay ... | head`
        sys.stderr.close()
        return 0
    except (logs.RevisionNotFoundError, ValueError, OSError) as error:
        print(f"collab replay: {error}", file=sys.stderr)
        return 1


def _print_history(log: Any, args: argparse.Namespace) -> int:
    """Print the text at --at/--time (default: the last), or every step with --steps."""
    from collab.replay.history import parse_time
    from collab.replay.rebuild import replay_text

    if args.steps:
        _print_steps(log, args.text_name)
        return 0
    rev = args.at
    if args.time is not None:
        rev = log.rev_at_time(parse_time(args.time))
    count = (log.last_rev if rev is None else min(rev, log.last_rev)) - log.base_rev
    progress = Progress(count, "replaying")
    try:
        text = replay_text(log, rev, args.text_name, progress)
    finally:
        progress.done()
    _write(text)
    return 0


async def _replay_store(args: argparse.Namespace) -> int:
    """`collab replay --store URL NAME`: the same answers, read from a database."""
    from collab.storage.logs import read_store_history
    from collab.storage.postgres import PostgresStore
    from collab.storage.postgres_schema import SchemaError

    store = PostgresStore.from_url(args.store, min_size=1, max_size=2)
    try:
        if args.verify:
            return await _verify_store(store, args.target, args.text_name)
        log = await read_store_history(store, args.target)
        if log is None:
            print(f"collab replay: no document {args.target!r} in the store", file=sys.stderr)
            return 2
        return _print_history(log, args)
    except (ConnectionError, SchemaError, LookupError) as error:
        print(f"collab replay: {error}", file=sys.stderr)
        return 1
    finally:
        await store.close()


async def _verify_store(store: Any, name: str, text_name: str) -> int:
    from collab.replay.verify import verify_store

    report = await verify_store(store, name, text_name)
    if report is None:
        print(f"collab replay: no document {name!r} in the store", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(problem)
    verdict = "OK" if report.ok else "DAMAGED"
    print(
        f"{verdict}: {report.records} revisions (last {report.last_rev}), "
        f"{report.snapshots} snapshots checked, {len(report.problems)} problems"
    )
    return 0 if report.ok else 1


def _print_steps(log: Any, text_name: str) -> None:
    import json

    from collab.replay.history import RevisionInfo
    from collab.replay.rebuild import texts

    for record, text in texts(log, text_name):
        info = RevisionInfo(record.rev, record.time, record.origin, record.user, len(record.update))
        _write(json.dumps({**info.as_json(), "text": text}, ensure_ascii=False) + "\n")


def _verify(segments: list[Any], text_name: str) -> int:
    from collab.replay.verify import verify

    progress = Progress(_estimate_revisions(segments), "verifying")
    try:
        report = verify(segments, text_name, progress)
    finally:
        progress.done()
    for problem in report.problems:
        print(problem)
    verdict = "OK" if report.ok else "DAMAGED"
    print(
        f"{verdict}: {report.records} revisions (last {report.last_rev}) in "
        f"{report.segments} segments, {report.snapshots} snapshots checked, "
        f"{len(report.problems)} problems"
    )
    return 0 if report.ok else 1


def _estimate_revisions(segments: list[Any]) -> int:
    """How many revisions verify will go through, from the file names and sizes (~64 B each)."""
    if not segments:
        return 0
    try:
        return segments[-1].start_rev + max(1, segments[-1].log.stat().st_size // 64)
    except OSError:
        return 0


def _replay_recording(args: argparse.Namespace) -> int:
    from collab.replay.rebuild import replay_recording

    sessions = replay_recording(args.recording)
    session = sessions.get(args.target)
    if session is None:
        known = ", ".join(repr(name) for name in sorted(sessions)) or "none"
        print(
            f"collab replay: no document {args.target!r} in the recording ({known})",
            file=sys.stderr,
        )
        return 2
    _write(session.mirror)
    return 0


# ---------------------------------------------------------------------- collab token


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", help="the document's name, or a pattern ending in * (team/*; * for all)"
    )
    parser.add_argument("--user", help="the user the token speaks for (shown in the history)")
    parser.add_argument("--readonly", action="store_true", help="may read, may not edit")
    parser.add_argument(
        "--admin", action="store_true", help="may also delete the documents it covers"
    )
    parser.add_argument(
        "--ttl", type=float, default=3600.0, help="seconds until it expires (default: 3600)"
    )
    parser.add_argument(
        "--auth-secret",
        default=os.environ.get(env_name("auth_secret"), ""),
        help=f"the server's secret (default: env {env_name('auth_secret')})",
    )


def token(args: argparse.Namespace) -> int:
    """`collab token`: print a token signed with the server's secret."""
    from collab.access import tokens

    if not args.auth_secret:
        print("collab token: set COLLAB_AUTH_SECRET (or --auth-secret)", file=sys.stderr)
        return 2
    if args.ttl <= 0:
        print("collab token: --ttl must be positive", file=sys.stderr)
        return 2
    secret, readonly = args.auth_secret, args.readonly
    try:
        token = tokens.mint(
            secret, args.name, user=args.user, readonly=readonly, admin=args.admin, ttl=args.ttl
        )
    except ValueError as error:
        print(f"collab token: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


def revoke_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collab token revoke",
        description="Revoke tokens on every server using this store, within 5 s: open "
        "connections are closed with 4401, new ones refused. Stored: survives restarts.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="token_id", help="one token, by its id (its jti claim)")
    which.add_argument("--token", help="one token, given whole (its jti is revoked)")
    which.add_argument("--user", help="the tokens of this user (sub) issued before --before")
    which.add_argument("--all", action="store_true", help="every token issued before --before")
    parser.add_argument(
        "--before",
        help="with --user or --all: issued before this time, unix seconds or ISO 8601 "
        "(2026-12-07T17:00:00Z); default: now (tokens minted later still work)",
    )
    data_dir = os.environ.get(env_name("data_dir"), "collab-data")
    parser.add_argument("--data-dir", default=data_dir, help="the file store's directory")
    parser.add_argument(
        "--store",
        default=os.environ.get(env_name("store")),
        help="a postgresql:// URL or a directory (default --data-dir), as for serve",
    )
    return parser


def _moment(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        return float(text)
    except ValueError:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError(f"--before {text!r}: say the time zone (Z or +01:00)") from None
        return moment.timestamp()


def revoke(argv: list[str]) -> int:
    """`collab token revoke`: store a revocation where every server reads it."""
    import asyncio

    import jwt

    from collab.access.revocations import Revocation
    from collab.storage import revocations
    from collab.storage.backends import is_database_url

    args = revoke_parser().parse_args(argv)
    try:
        token_id = args.token_id
        if args.token is not None:
            token_id = jwt.decode(args.token, options={"verify_signature": False}).get("jti")
            if not isinstance(token_id, str) or not token_id:
                raise ValueError("the token has no id (jti): revoke its --user instead")
        rule = Revocation(_moment(args.before), token_id, args.user)
    except (ValueError, jwt.InvalidTokenError) as error:
        print(f"collab token revoke: {error}", file=sys.stderr)
        return 2
    if is_database_url(args.store):
        source = revocations.PostgresRevocations(args.store)

        async def add() -> None:
            try:
                await source.add(rule)
            finally:
                await source.close()

        asyncio.run(add())
    else:
        revocations.FileRevocations(Path(args.store or args.data_dir)).add(rule)
    print(f"revoked: {rule.describe()}")
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["token", "revoke"]:
        sys.exit(revoke(argv[2:]))
    parser = argparse.ArgumentParser(prog="collab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the server")
    add_settings_arguments(serve_parser)
    replay_parser = commands.add_parser("replay", help="replay a document's log or a recording")
    add_replay_arguments(replay_parser)
    token_parser = commands.add_parser("token", help="print a signed access token")
    add_token_arguments(token_parser)
    from collab.hub import admin

    admin.add_arguments(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        from collab.server.serve import serve

        sys.exit(serve(settings_from(args)))
    if args.command == "replay":
        sys.exit(replay(args))
    if args.command == "token":
        sys.exit(token(args))
    if args.command in admin.COMMANDS:
        sys.exit(admin.run(args))
