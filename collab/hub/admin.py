"""The operators' document commands: `collab list`, `export`, `import`, `delete`, `backup`,
`restore` (docs/operations.md), on the file store or PostgreSQL alike.

With PostgreSQL they work while servers run: changes go through a `Hub` like any server's,
and with `--bus` the servers hear of them (a delete or restore closes their peers). The
file store belongs to one process (a lock on its directory): while `collab serve` holds it,
`list`, `export` and `backup` read its files without the lock, and `import`, `delete` and
`restore` take `--server URL` (and a token) to go through that server's HTTP API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from collab.access.names import InvalidNameError
from collab.config import Settings
from collab.hub import lifecycle
from collab.hub.lifecycle import DocumentExistsError, DocumentNotFoundError
from collab.hub.registry import Hub
from collab.session.revision import ChangeRefused
from collab.storage import backup
from collab.storage.backends import bus_for, is_database_url, store_for
from collab.storage.dirlock import DataDirectoryError
from collab.storage.files import FileStore

IN_USE = (
    "a running server holds the data directory: add --server http://HOST:PORT "
    "(with --token, or COLLAB_TOKEN, when it has --auth-secret), or stop it first"
)


class CommandError(Exception):
    """A command that cannot be done: the message for the operator (exit status 1)."""


def add_arguments(commands: Any) -> None:
    """The subcommands, on the `collab` parser's subparsers."""
    parsers = {
        "list": commands.add_parser("list", help="list the documents of a store"),
        "export": commands.add_parser("export", help="print a document's text or Yjs update"),
        "import": commands.add_parser("import", help="make a document from a file"),
        "delete": commands.add_parser("delete", help="delete a document and its history"),
        "backup": commands.add_parser("backup", help="copy the whole store into DEST"),
        "restore": commands.add_parser("restore", help="load a backup into the store"),
    }
    for command in ("export", "import", "delete"):
        parsers[command].add_argument("name", help="the document's name")
    parsers["import"].add_argument("file", type=Path, help="the file to import ('-': stdin)")
    parsers["import"].add_argument("--replace", action="store_true", help="replace it if it exists")
    for command in ("export", "import"):
        parsers[command].add_argument(
            "--format", choices=("text", "yjs"), default="text", help="UTF-8 text or a Yjs update"
        )
    parsers["export"].add_argument("--output", "-o", type=Path, help="write here, not stdout")
    parsers["backup"].add_argument("dest", type=Path, help="a new directory for the backup")
    parsers["restore"].add_argument("src", type=Path, help="a directory `collab backup` wrote")
    for command in ("import", "delete", "restore"):
        parsers[command].add_argument(
            "--server", metavar="URL", help="through this running server's HTTP API"
        )
        parsers[command].add_argument(
            "--token",
            default=os.environ.get("COLLAB_TOKEN"),
            help="a token for --server (default: env COLLAB_TOKEN)",
        )
    for parser in parsers.values():
        parser.add_argument(
            "--data-dir", type=Path, default=Settings().data_dir, help="the file store's directory"
        )
        parser.add_argument(
            "--store", metavar="URL", help="a store instead: postgresql://USER@HOST:PORT/DB"
        )
        parser.add_argument(
            "--bus", metavar="URL", help="redis://HOST:PORT/N: tell the running servers"
        )


def run(args: argparse.Namespace) -> int:
    """Run one subcommand; its exit status."""
    command: Callable[[argparse.Namespace], Awaitable[int]] = COMMANDS[args.command]
    try:
        return asyncio.run(command(args))
    except (CommandError, backup.BackupError, DataDirectoryError, InvalidNameError) as error:
        print(f"collab {args.command}: {error}", file=sys.stderr)
        return 1


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(data_dir=args.data_dir, store=args.store, bus=args.bus)


def _reader(args: argparse.Namespace) -> Any:
    """A store to read: the file store without its lock (a server may be running)."""
    if is_database_url(args.store):
        return store_for(_settings(args))
    return FileStore(Path(args.store or args.data_dir), fsync=False, exclusive=False)


async def _hub(args: argparse.Namespace) -> Hub:
    """A hub on the store, to change it as a server would."""
    settings = _settings(args)
    try:
        store = store_for(settings)
    except DataDirectoryError:
        raise CommandError(IN_USE) from None
    hub = Hub(store, settings, bus=bus_for(settings))
    await hub.start()
    return hub


async def list_documents(args: argparse.Namespace) -> int:
    store = _reader(args)
    try:
        for info in sorted(await store.list(), key=lambda info: info.name):
            print(
                json.dumps(
                    {"name": info.name, "rev": info.rev, "bytes": info.size_bytes},
                    ensure_ascii=False,
                )
            )
    finally:
        await store.close()
    return 0


async def export(args: argparse.Namespace) -> int:
    store = _reader(args)
    try:
        found = await backup.document(store, args.name)
    finally:
        await store.close()
    if found is None:
        raise CommandError(f"no document {args.name!r}")
    state = found.state
    if args.format == "text":
        text = lifecycle.text_of(state, args.name, Settings())
        data = text.encode("utf-8")
    else:
        data = state
    if args.output is not None:
        args.output.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


async def import_document(args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read() if str(args.file) == "-" else _read(args.file)
    try:
        content: str | bytes = raw.decode("utf-8") if args.format == "text" else raw
    except UnicodeDecodeError as error:
        raise CommandError(f"{args.file} is not UTF-8 text: {error.reason}") from None
    if args.server:
        kind = "text/plain; charset=utf-8" if args.format == "text" else "application/octet-stream"
        query = "?replace=1" if args.replace else ""
        answer = _call(args, "PUT", args.name, query, raw, kind)
        print(f"imported {args.name!r} at revision {answer['rev']}")
        return 0
    hub = await _hub(args)
    try:
        rev, created, _ = await lifecycle.put(hub, args.name, content, replace=args.replace)
    except DocumentExistsError:
        raise CommandError(f"{args.name!r} exists: --replace to replace it") from None
    except ChangeRefused as error:
        raise CommandError(f"refused: {error.message}") from None
    finally:
        await hub.close()
    print(f"{'made' if created else 'replaced'} {args.name!r} at revision {rev}")
    return 0


async def delete(args: argparse.Namespace) -> int:
    if args.server:
        _call(args, "DELETE", args.name)
        print(f"deleted {args.name!r}")
        return 0
    hub = await _hub(args)
    try:
        await hub.delete(args.name)
    except DocumentNotFoundError:
        raise CommandError(f"no document {args.name!r}") from None
    finally:
        await hub.close()
    print(f"deleted {args.name!r}")
    return 0


async def make_backup(args: argparse.Namespace) -> int:
    store = _reader(args)
    try:
        written = await backup.write(store, args.dest)
    finally:
        await store.close()
    print(f"backed up {len(written)} documents into {args.dest}")
    return 0


async def restore(args: argparse.Namespace) -> int:
    documents = await asyncio.to_thread(backup.read, args.src)  # all checked first
    if args.server:
        for document in documents:
            kind = "application/octet-stream"
            await asyncio.to_thread(
                _call, args, "POST", document.name, "/restore", document.state, kind
            )
        print(f"restored {len(documents)} documents from {args.src}")
        return 0
    hub = await _hub(args)
    try:
        for document in documents:
            await hub.restore(document.name, document.state)
    finally:
        await hub.close()
    print(f"restored {len(documents)} documents from {args.src}")
    return 0


def _call(
    args: argparse.Namespace,
    method: str,
    name: str,
    tail: str = "",
    body: bytes | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """One request to the server's HTTP API; its JSON answer, or a CommandError."""
    url = f"{args.server.rstrip('/')}/api/docs/{quote(name, safe='')}{tail}"
    request = urllib.request.Request(url, data=body, method=method)
    if kind is not None:
        request.add_header("Content-Type", kind)
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        try:
            reason = json.loads(error.read()).get("error", error.reason)
        except ValueError:
            reason = error.reason
        raise CommandError(f"{name!r}: HTTP {error.code}: {reason}") from None
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot reach {args.server}: {error}") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from None


COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "list": list_documents,
    "export": export,
    "import": import_document,
    "delete": delete,
    "backup": make_backup,
    "restore": restore,
}
