"""The wire contract has one source, collab/wire.py: the page's generated constants and the
documented tables must list exactly its codes."""

from __future__ import annotations

import re
from pathlib import Path

from collab.wire import CloseCode, ErrorCode, javascript_module

REPO = Path(__file__).resolve().parent.parent


def table_under(markdown: str, heading: str) -> list[str]:
    """The first cells of the first table after `heading` (a line of `#`s and the title)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"#+ {heading}", line))
    cells: list[str] = []
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            in_table = True
            cells.append(line.split("|")[1].strip())
        elif in_table or line.startswith("#"):
            break
    return [cell for cell in cells[1:] if not set(cell) <= {"-", ":"}]  # no header, rule


def test_the_page_constants_are_generated_from_the_enums() -> None:
    generated = (REPO / "frontend/wire.js").read_text(encoding="utf-8")
    assert generated == javascript_module(), "run: python -m collab.wire > frontend/wire.js"


def test_the_http_page_lists_exactly_the_close_codes() -> None:
    rows = table_under((REPO / "docs/http.md").read_text(encoding="utf-8"), "WebSocket close codes")
    documented = [int(code) for row in rows for code in row.split("/")]
    assert sorted(documented) == sorted(code.value for code in CloseCode)


def test_the_protocol_lists_exactly_the_error_codes() -> None:
    text = (REPO / "docs/text-protocol.md").read_text(encoding="utf-8")
    documented = [cell.strip("`") for cell in table_under(text, "Error codes")]
    assert sorted(documented) == sorted(code.value for code in ErrorCode)


def test_the_table_reader_finds_tables_and_stops_at_their_end() -> None:
    markdown = "# A\n\nintro\n\n| x | y |\n|---|---|\n| 1 / 2 | a |\n| 3 | b |\n\n| 9 | c |\n"
    assert table_under(markdown, "A") == ["1 / 2", "3"]
