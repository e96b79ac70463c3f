"""Document names: what is accepted, and that no name can escape or share a storage key."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab.access.names import InvalidNameError, name_from_key, storage_key, validate_name

SAFE_KEY = re.compile(r"[A-Za-z0-9_%-]+")

# Every code point a name may hold: anything but NUL and surrogates.
name_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
names = st.text(name_chars, min_size=1, max_size=300)

TRICKY = [
    ".",
    "..",
    "../etc/passwd",
    "a/b",
    "a\\b",
    "%2F",
    "%2e%2e",
    "CON",
    "con",
    "nul.txt",
    "a.",
    " a ",
    "😀",
    "👨‍👩‍👧",
    "👍🏽",
    "🇫🇷",
    "中文",
    "é",
    "e\u0301",
    "A",
    "a",
    "line\r\nbreak",
    "x" * 400,
]


def assert_safe(key: str) -> None:
    assert SAFE_KEY.fullmatch(key), key
    assert key not in (".", "..")
    assert len(key.encode()) <= 200


@given(names)
def test_key_is_one_safe_path_component(name: str) -> None:
    assert_safe(storage_key(name))


@given(names, names)
def test_keys_are_injective_even_on_case_insensitive_filesystems(a: str, b: str) -> None:
    if a != b:
        assert storage_key(a) != storage_key(b)
        assert storage_key(a).lower() != storage_key(b).lower()


@given(names)
def test_short_keys_decode_back_to_the_name(name: str) -> None:
    key = storage_key(name)
    decoded = name_from_key(key)
    assert decoded in (name, None)
    if decoded is not None:
        assert name_from_key(key.lower()) == name  # what a case-folding filesystem shows


def test_tricky_names_get_distinct_safe_keys() -> None:
    keys = [storage_key(name) for name in TRICKY]
    for key in keys:
        assert_safe(key)
    assert len({key.lower() for key in keys}) == len(TRICKY)


def test_escapes_use_uppercase_hex_and_keep_lowercase_ascii() -> None:
    assert storage_key("..") == "n-%2E%2E"
    assert storage_key("a/b") == "n-a%2Fb"
    assert storage_key("A") == "n-%41"
    assert storage_key("%2F") == "n-%252%46"
    assert storage_key("my-doc_1") == "n-my-doc_1"


def test_nfc_and_nfd_are_different_documents() -> None:
    nfc, nfd = "café", unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    assert validate_name(nfc, 256) == nfc
    assert validate_name(nfd, 256) == nfd  # not normalised
    assert storage_key(nfc) != storage_key(nfd)


def test_long_names_are_hashed_and_stay_distinct() -> None:
    a, b = "😀" * 200, "😀" * 199 + "😁"
    assert storage_key(a) != storage_key(b)
    assert storage_key(a).startswith("h-%F0%9F%98%80")
    assert name_from_key(storage_key(a)) is None
    for key in (storage_key(a), storage_key(b), storage_key("x" * 10_000)):
        assert_safe(key)


@pytest.mark.parametrize("name", ["a", "..", "😀", "👨‍👩‍👧", "中文", "e\u0301", "CON", "x" * 256])
def test_valid_names_are_accepted_unchanged(name: str) -> None:
    assert validate_name(name, 256) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("NUL\x00", "NUL"),
        ("x" * 10_000, "longer than 256"),
        ("x" * 257, "longer than 256"),
        ("a\ud800b", "lone surrogate"),
        ("\udfff", "lone surrogate"),
    ],
)
def test_invalid_names_are_refused_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(InvalidNameError, match=reason) as caught:
        validate_name(name, 256)
    assert isinstance(caught.value, ValueError)
    assert reason in caught.value.reason


def test_length_counts_code_points_not_bytes() -> None:
    assert validate_name("😀" * 256, 256)  # 1024 UTF-8 bytes, 512 UTF-16 units
    with pytest.raises(InvalidNameError):
        validate_name("😀" * 257, 256)


@pytest.mark.parametrize("name", ["", "a\x00", "\ud83d"])
def test_storage_key_refuses_unstorable_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        storage_key(name)


@pytest.mark.parametrize("key", ["", "x", "..", "n-a/b", "n-%2", "n-%ZZ", "n-A", "n-%FF"])
def test_name_from_key_refuses_what_storage_key_cannot_produce(key: str) -> None:
    with pytest.raises(ValueError):
        name_from_key(key)
