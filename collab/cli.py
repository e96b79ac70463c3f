"""The `collab` command: `collab serve`, `collab replay`, ..."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from collab.config import Settings

log = logging.getLogger("collab")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(name: str) -> str:
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
    for field in dataclasses.fields(Settings):
        annotation = hints[field.name]
        convert = _converter(annotation)
        env = os.environ.get(_env(field.name))
        default = convert(env) if env is not None else field.default
        help_text = field.metadata.get("help", "")
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "type": convert,
            "default": default,
            "help": f"{help_text} (default: %(default)s; env {_env(field.name)})",
        }
        if typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = typing.get_args(annotation)
        parser.add_argument(_flag(field.name), **kwargs)


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})


def serve(settings: Settings) -> int:
    """Run the server until SIGINT/SIGTERM; returns the exit code."""
    import uvicorn

    from collab.engine import Collab

    engine = Collab(settings=settings)
    config = uvicorn.Config(
        engine.app(),
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=settings.max_message_bytes + 1024,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        log_level=settings.log_level,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            # Close our peers with 1001 and save before uvicorn closes sockets its own way.
            await engine.close()
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM after a graceful shutdown; we exit 0 instead.
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    server = Server(config)
    log.info(
        "collab listening on http://%s:%d, data in %s (fsync %s)",
        settings.host,
        settings.port,
        settings.data_dir.resolve(),
        settings.fsync,
    )
    server.run()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="collab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the server")
    add_settings_arguments(serve_parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        sys.exit(serve(settings_from(args)))
