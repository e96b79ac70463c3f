"""`collab serve` settings: every Settings field is a flag and a COLLAB_* variable."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from collab.config import Settings, add_settings_arguments, settings_from


def parse(*argv: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return settings_from(parser.parse_args(argv))


def test_defaults_are_the_settings_defaults() -> None:
    assert parse() == Settings()


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAB_PORT", "9001")
    monkeypatch.setenv("COLLAB_KEEP_HISTORY", "false")
    settings = parse("--data-dir", "/srv/collab", "--fsync", "never", "--batch-window", "0")
    assert settings.port == 9001 and settings.keep_history is False
    assert settings.data_dir == Path("/srv/collab") and settings.fsync == "never"
    assert settings.batch_window == 0.0
    assert parse("--port", "9002").port == 9002  # a flag beats the environment


def test_every_setting_has_a_flag_with_help() -> None:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions if a.dest != "help"}
    for field in dataclasses.fields(Settings):
        assert f"COLLAB_{field.name.upper()}" in helps[field.name]


def test_bad_values_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--fsync", "sometimes")
    assert "invalid choice" in capsys.readouterr().err
