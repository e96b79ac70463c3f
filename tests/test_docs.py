"""The docs stay true to the code where a machine can tell: the settings page is generated
from `Settings`, the architecture page names every module, and every link leads somewhere."""

from __future__ import annotations

import dataclasses
import re
import runpy
from pathlib import Path

from conftest import REPO

from collab.config import Settings

GENERATOR = REPO / "docs/generate_settings.py"


def generated_settings() -> str:
    return runpy.run_path(str(GENERATOR))["markdown"]()


def test_the_settings_page_is_generated_from_settings() -> None:
    page = (REPO / "docs/settings.md").read_text(encoding="utf-8")
    assert page == generated_settings(), "run: python docs/generate_settings.py > docs/settings.md"


def test_the_settings_page_has_a_row_per_setting_with_its_flag_env_and_help() -> None:
    rows = [line for line in generated_settings().splitlines() if line.startswith("| `--")]
    assert len(rows) == len(dataclasses.fields(Settings))
    for row, field in zip(rows, dataclasses.fields(Settings), strict=True):
        flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))  # --webhook
        assert row.startswith(f"| `{flag}` | `COLLAB_{field.name.upper()}` |"), row
        assert field.metadata["help"] in row


def test_defaults_are_shown_as_typed_with_byte_sizes_readable() -> None:
    rows = {
        line.split("`")[1]: line for line in generated_settings().splitlines() if "| `--" in line
    }
    assert "| `8388608` (8 MiB) | integer |" in rows["--max-message-bytes"]
    assert "| `65536` (64 KiB) | integer |" in rows["--max-awareness-bytes-per-peer"]
    assert "| `always` | `always` or `never` |" in rows["--fsync"]
    assert "| `true` | true/false |" in rows["--keep-history"]
    assert "| (none) | path |" in rows["--record"]


def python_modules() -> list[str]:
    return sorted(str(path.relative_to(REPO)) for path in (REPO / "collab").rglob("*.py"))


def test_the_architecture_page_names_every_module() -> None:
    page = (REPO / "docs/architecture.md").read_text(encoding="utf-8")
    missing = [module for module in python_modules() if f"`{module}`" not in page]
    assert missing == [], f"docs/architecture.md's module table lacks {missing}"


def test_the_architecture_page_names_no_module_that_is_gone() -> None:
    page = (REPO / "docs/architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(collab/[\w/]+\.py)`", page))
    assert named - set(python_modules()) == set()


MARKDOWN = [REPO / "README.md", REPO / "bench/README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_relative_link_leads_to_a_file_and_heading_that_exist() -> None:
    broken = []
    for page in MARKDOWN:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert broken == []


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lowercase, punctuation dropped, - for spaces."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_readme_stays_a_newcomers_page() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines: move details to docs/"
