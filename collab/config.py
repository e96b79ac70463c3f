"""Every setting and limit of the server, with its default.

Each field becomes a `collab serve` flag (`--max-message-bytes`) and an environment variable
(`COLLAB_MAX_MESSAGE_BYTES`): `add_settings_arguments` and `settings_from` below.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=8000, metadata={"help": "port to listen on"})
    data_dir: Path = field(
        default=Path("collab-data"), metadata={"help": "where documents are stored"}
    )
    store: str | None = field(
        default=None,
        metadata={
            "help": "where documents are stored: a directory (the file store; default "
            "--data-dir) or postgresql://USER@HOST:PORT/DB, shared by several processes"
        },
    )
    bus: str | None = field(
        default=None,
        metadata={
            "help": "redis://HOST:PORT/N: serve the same documents as other collab processes "
            "(needs a postgresql:// store)"
        },
    )
    workers: int = field(
        default=1,
        metadata={"help": "processes serving on this port (above 1: needs --store and --bus)"},
    )
    fsync: Literal["always", "never"] = field(
        default="always",
        metadata={"help": "fsync each write batch before anyone sees it ('never': tests only)"},
    )
    text_name: str = field(
        default="text", metadata={"help": "name of the shared Y.Text inside each document"}
    )
    max_name_length: int = field(
        default=256, metadata={"help": "longest document name, in characters"}
    )
    max_message_bytes: int = field(
        default=8 * MiB, metadata={"help": "largest WebSocket message accepted (close 1009)"}
    )
    max_document_bytes: int = field(
        default=64 * MiB, metadata={"help": "largest document state accepted"}
    )
    detach_from_bytes: int = field(
        default=4 * MiB,
        metadata={
            "help": "a document this big (bytes of state) that no text client follows keeps "
            "no CRDT in memory: Yjs text updates are checked, logged and relayed without "
            "it, and it is rebuilt when a reader needs it (pycrdt's calls on a big text "
            "hold the event loop tens of ms); 0: never"
        },
    )
    max_op_components: int = field(
        default=500,
        metadata={"help": "most components in one text operation (error bad-op)"},
    )
    max_catch_up_steps: int = field(
        default=10_000,
        metadata={
            "help": "most work an op or presence made on an old revision may cost to catch up "
            "(components walked over the revisions it missed, ~1 us each; beyond: error too-old)"
        },
    )
    max_remembered_clients: int = field(
        default=100_000,
        metadata={
            "help": "text clients whose last op each document remembers (~190 bytes each in "
            "memory, ~32 in snapshots); a client forgotten since its revision is told "
            "acked-unknown, never acked 0"
        },
    )
    send_queue_bytes: int = field(
        default=4 * MiB,
        metadata={"help": "bytes queued for one peer before it is resynced or dropped"},
    )
    close_timeout: float = field(
        default=10.0,
        metadata={
            "help": "seconds a peer being closed may take to receive its close frame (or a "
            "stuck send to finish) before its connection is aborted"
        },
    )
    batch_window: float = field(
        default=0.0,
        metadata={
            "help": "seconds: a minimum gap between two batches of one document; 0 (the "
            "default): a batch goes out as soon as the previous one is written, so a lone "
            "edit is sent at once and what arrives during a write (fsync) shares the next"
        },
    )
    batch_work: float = field(
        default=0.005,
        metadata={
            "help": "seconds of work a batch of one document takes from what waits (at "
            "least one message): the rest waits for its next batch, and other documents "
            "run in between, so a flood of costly messages to one document (each big "
            "update on a big document costs pycrdt milliseconds) does not hold the others"
        },
    )
    idle_unload_seconds: float = field(
        default=30.0, metadata={"help": "keep an unused document in memory this long"}
    )
    ping_interval: float = field(default=30.0, metadata={"help": "seconds between WebSocket pings"})
    ping_timeout: float = field(
        default=30.0, metadata={"help": "drop a peer that does not answer a ping in this time"}
    )
    awareness_renew_seconds: float = field(
        default=15.0,
        metadata={
            "help": "send text clients' awareness states to Yjs peers again this often "
            "(y-protocols drops a state not renewed for 30 s)"
        },
    )
    compact_log_bytes: int = field(
        default=8 * MiB, metadata={"help": "write a snapshot when the log passes this size"}
    )
    compact_log_records: int = field(
        default=10_000, metadata={"help": "write a snapshot when the log passes this count"}
    )
    compaction_memory_bytes: int = field(
        default=0,
        metadata={
            "help": "most memory (address space) a compaction's worker process may take; "
            "0: no limit. One that needs more fails, keeps the log and is tried again later"
        },
    )
    keep_history: bool = field(
        default=True,
        metadata={"help": "keep old log segments after compaction (history and replay)"},
    )
    history_in_memory: int = field(
        default=10_000,
        metadata={"help": "revisions kept in memory for text clients to catch up"},
    )
    record: Path | None = field(
        default=None, metadata={"help": "write every inbound message to this file"}
    )
    # --- who may connect (docs/security.md) ---------------------------------------------
    allowed_origins: str = field(
        default="",
        metadata={
            "help": "comma-separated browser origins allowed to open WebSockets besides the "
            "server's own (https://app.example); '*' allows every origin (403 otherwise)"
        },
    )
    allowed_hosts: str = field(
        default="",
        metadata={
            "help": "comma-separated host names the server answers to (the Host header); "
            "empty: loopback names and --host; '*' answers any (HTTP 421 otherwise)"
        },
    )
    auth_secret: str = field(
        default="",
        metadata={
            "help": "sign and check tokens with this secret (HS256): every WebSocket and "
            "API request then needs one (`collab token`); prefer the environment variable"
        },
    )
    webhooks: str = field(
        default="",
        metadata={
            "help": "POST signed JSON to this URL when a document is created, changed or "
            "deleted (docs/webhooks.md); repeat the flag for several (env: comma-separated)",
            "flag": "--webhook",
        },
    )
    webhook_secret: str = field(
        default="",
        metadata={
            "help": "sign webhook calls with this secret (HMAC-SHA256): needed with --webhook"
        },
    )
    webhook_retry_seconds: float = field(
        default=600.0,
        metadata={
            "help": "how long a webhook call that fails is retried (backoff) before it is dropped"
        },
    )
    webhook_queue: int = field(
        default=10_000,
        metadata={"help": "webhook calls waiting at most (sent or retried); more are dropped"},
    )
    metrics_token: str = field(
        default="",
        metadata={"help": "a bearer token for GET /metrics alone (else a '*' token)"},
    )
    frame_ancestors: str = field(
        default="'self'",
        metadata={"help": "CSP frame-ancestors of the pages: who may frame the editor"},
    )
    # --- caps for clients that have not proven anything yet -----------------------------
    max_connections: int = field(
        default=10_000,
        metadata={
            "help": "open connections in total (kept below the file-descriptor limit); "
            "more are refused with HTTP 503"
        },
    )
    max_connections_per_address: int = field(
        default=256,
        metadata={"help": "open connections from one client address (HTTP 503 beyond)"},
    )
    head_timeout: float = field(
        default=10.0,
        metadata={
            "help": "seconds a client has to send a whole request head and its body (HTTP "
            "408, or the connection closed if the response went out)"
        },
    )
    upgrade_timeout: float = field(
        default=10.0,
        metadata={
            "help": "seconds to decide on a WebSocket upgrade (token, authenticate hook) "
            "(HTTP 503 beyond)"
        },
    )
    first_message_timeout: float = field(
        default=30.0,
        metadata={
            "help": "seconds a new WebSocket has to send its first valid message "
            "(sync step 1, awareness, hello) (close 4408)"
        },
    )
    preauth_max_bytes: int = field(
        default=1 * MiB,
        metadata={"help": "bytes a WebSocket may send before its first valid message (1008)"},
    )
    preauth_max_messages: int = field(
        default=100,
        metadata={"help": "messages a WebSocket may send before its first valid one (1008)"},
    )
    max_messages_per_second: float = field(
        default=200.0,
        metadata={"help": "messages per second one WebSocket may keep up (close 1008)"},
    )
    message_burst: int = field(
        default=1_000,
        metadata={"help": "messages one WebSocket may send at once above that rate"},
    )
    max_documents_per_socket: int = field(
        default=100,
        metadata={
            "help": "documents one Hocuspocus WebSocket may have open or being "
            "authenticated at once (more: PermissionDenied)"
        },
    )
    max_new_documents_per_minute: int = field(
        default=300,
        metadata={"help": "new documents one client address may create per minute (1013)"},
    )
    max_new_documents_per_minute_total: int = field(
        default=3_000,
        metadata={"help": "new documents all clients together may create per minute (1013)"},
    )
    max_awareness_bytes_per_peer: int = field(
        default=64 * 1024,
        metadata={"help": "bytes of awareness state one connection may hold (close 1008)"},
    )
    max_awareness_bytes_per_document: int = field(
        default=1 * MiB,
        metadata={"help": "bytes of awareness state one document may hold (close 1008)"},
    )
    max_history_requests: int = field(
        default=2,
        metadata={"help": "history requests served at once; more get HTTP 503 (CPU bound)"},
    )
    text_door_max_bytes: int = field(
        default=2 * MiB,
        metadata={
            "help": "the biggest document (bytes of state) text clients (the built-in page, "
            "JSON ops over WebSocket or HTTP) may open; those there go on up to twice it. "
            "Their work runs pycrdt's text on the event loop, which costs with the text's "
            "size (a join ~7 ms at 2 MiB, ~30 ms at 8); bigger documents are for Yjs "
            "clients (close 1009, HTTP 413). 0: no limit"
        },
    )
    text_worker_bytes: int = field(
        default=2 * MiB,
        metadata={
            "help": "a document this big (bytes of state) has its text for HTTP (current, "
            "at a revision, one revision's change) and its whole state (/update) built by "
            "a worker process that reads the store, and its length for the document list "
            "counted there: pycrdt's calls on a big text hold the event loop, the worker "
            "costs ~70 ms of latency; counted as history requests; from "
            "--detach-from-bytes when that is smaller. 0: never"
        },
    )
    text_worker_timeout: float = field(
        default=120.0,
        metadata={
            "help": "seconds such a worker process may take; one that takes longer (hung, "
            "starved) is killed and its request answers HTTP 500"
        },
    )
    max_big_responses: int = field(
        default=8,
        metadata={
            "help": "HTTP responses of 1 MiB or more (a document's state or text) sent at "
            "once, each held in memory until its client took it; more get HTTP 503"
        },
    )
    send_timeout: float = field(
        default=30.0,
        metadata={
            "help": "seconds an HTTP client has to take a big response, or to take anything "
            "of a response while the server's buffer for it is full (connection dropped)"
        },
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning, error"})
    connection_log: bool = field(
        default=False,
        metadata={
            "help": "log every WebSocket connection at INFO (uvicorn's accepted, open and "
            "closed lines; always at --log-level debug)"
        },
    )
    ws_compression: bool = field(
        default=False,
        metadata={
            "help": "negotiate permessage-deflate with clients that offer it (browsers "
            "do): costs CPU per message per peer and a compressor per connection, for "
            "Yjs updates of a few bytes"
        },
    )

    def replace(self, **changes: object) -> Settings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- flags and environment


def flag_name(name: str) -> str:
    """The flag of a setting: `max_message_bytes` ⇔ `--max-message-bytes`."""
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    """The environment variable of a setting: `max_message_bytes` ⇔ `COLLAB_MAX_MESSAGE_BYTES`."""
    return "COLLAB_" + name.upper()


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _converter(annotation: Any) -> Any:
    """The argparse `type` for a Settings field annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str
    if origin in (typing.Union, types.UnionType) and args:
        return _converter(args[0])
    return {bool: _parse_bool, int: int, float: float, Path: Path}.get(annotation, str)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field; its default comes from the COLLAB_* environment."""
    hints = typing.get_type_hints(Settings)
    for setting in dataclasses.fields(Settings):
        annotation = hints[setting.name]
        convert = _converter(annotation)
        env = os.environ.get(env_name(setting.name))
        default = convert(env) if env is not None else setting.default
        help_text = setting.metadata.get("help", "")
        kwargs: dict[str, Any] = {
            "dest": setting.name,
            "type": convert,
            "default": default,
            "help": f"{help_text} (default: %(default)s; env {env_name(setting.name)})",
        }
        if typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = typing.get_args(annotation)
        if "flag" in setting.metadata:  # repeatable: the values join with commas
            kwargs.update(action="append", default=None)
        parser.add_argument(setting.metadata.get("flag", flag_name(setting.name)), **kwargs)


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings the parsed flags (and, where a flag is absent, the environment) say."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
    for setting in dataclasses.fields(Settings):
        if "flag" in setting.metadata:  # a repeatable flag: given, else the environment's
            given = values[setting.name]
            env = os.environ.get(env_name(setting.name), setting.default)
            values[setting.name] = ",".join(given) if given is not None else env
    return Settings(**values)


def settings_from_environment() -> Settings:
    """The settings the COLLAB_* environment says (how `--workers` children get theirs)."""
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return settings_from(parser.parse_args([]))
