"""One concept per module: no Python module over 500 lines, no page script over 400."""

from __future__ import annotations

from conftest import REPO


def long_files(pattern: str, limit: int) -> dict[str, int]:
    lengths = {
        str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
        for path in REPO.glob(pattern)
    }
    return {name: n for name, n in lengths.items() if n > limit}


def test_python_modules_stay_small() -> None:
    assert long_files("collab/**/*.py", 500) == {}


def test_page_scripts_stay_small() -> None:
    assert long_files("frontend/*.js", 400) == {}
