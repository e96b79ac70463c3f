"""An embed whose value is a string, put in the shared text while text clients follow it.

pycrdt reports such an embed (``insert_embed(i, "中")``: not characters in Yjs, left out of
its text) in the text event's delta as ``{"insert": "中"}``, the same as characters. While
the text was followed (a text client connected), only that delta was checked, so the embed
was taken as text: the text clients' copy said "a中😀b", Yjs and the HTTP text "a😀b", and
every later op landed at byte offsets pycrdt does not have.
"""

from __future__ import annotations

import pytest
from conftest import ServerProcess
from pyclient import YClient
from pycrdt import Doc, Map, Text
from text_tab import Tab

from collab.config import Settings
from collab.session.document import Document
from collab.session.revision import ChangeRefused
from collab.wire import CloseCode


async def test_a_string_embed_beside_a_text_client_is_refused(server: ServerProcess) -> None:
    name = "embed 中文"
    tab = await Tab.join(f"{server.ws_url}/ot/{name}", "writer")
    await tab.type("a😀b")
    async with await YClient.connect(f"{server.ws_url}/yjs/{name}") as attacker:
        await attacker.wait_text("a😀b")
        attacker.ytext.insert_embed(1, "中")  # one Yjs unit, no characters
        code, reason = await attacker.wait_closed()
        assert code == CloseCode.PROTOCOL_ERROR and "embeds" in reason
    await tab.type("👍🏽e\u0301\r\n")
    expected = "a😀b👍🏽e\u0301\r\n"
    assert tab.client.text == expected
    async with await YClient.connect(f"{server.ws_url}/yjs/{name}") as reader:
        await reader.wait_text(expected)
        assert len(reader.ytext) == len(expected.encode())  # no embed left in the text
    await tab.close()


# A state of concurrent edits (emoji, flags, combining marks, \r\n) from a fuzz of pycrdt
# peers: pycrdt 0.14.13 says its text is 61 bytes long, its str is 62 (Yjs agrees with the
# str: 35 UTF-16 units). Not an embed: the text is characters only.
LENGTH_OFF = bytes.fromhex(
    "2102a4bb80c0d1babb0e00c1a2f7c4f7c998fe0503a4ad9098e7d4a7090201e4a2f7c4f7c998fe0501a2f7c4"
    "f7c998fe0502016102c9e29fd5e4dce90d0041a2f7c4f7c998fe05030181a2f7c4f7c998fe0501010391a0ef"
    "8483aad10d00a1bfb48cc28fd8d70c020100012801016d0132017c3f80000002b6b1affed99ec10d00e1e18d"
    "a5fdb8ef9e0801e18da5fdb8ef9e080202e1ee85d7dda9acf90803a4bb80c0d1babb0e0102018dd6a7eb8af2"
    "880d00c4cdce9da8eadaf70b00e5c5afe3d3c36e0003e4b8ad04bfb48cc28fd8d70c0046f78add99cfc7f706"
    "0004626f6c64047472756581c9e29fd5e4dce90d0101a1e18da5fdb8ef9e080201000101cdce9da8eadaf70b"
    "0041bfb48cc28fd8d70c000101d99ad5e9b99aba0b00c481bce0f5df80f2050381bce0f5df80f20504016101"
    "b2a4af9beff19a0b00e1e18da5fdb8ef9e0801e18da5fdb8ef9e08020101f384f2ecc4e1a70a00c4dcdb9efc"
    "d2b09b0401a4bb80c0d1babb0e000365cc8102898091e3999cad0900c4ab9895a2ffc7f7050098aa87f9c7dc"
    "8701000161c4bddae8e0c3908e0903bddae8e0c3908e09040365cc8102a4ad9098e7d4a70900c4f78add99cf"
    "c7f7060081bce0f5df80f20503020d0ac1a2f7c4f7c998fe050390d5e2b495c7c607000102bddae8e0c3908e"
    "0900c4a2f7c4f7c998fe0500a2f7c4f7c998fe050108f09f87abf09f87b7c181bce0f5df80f20504c9e29fd5"
    "e4dce90d000102ee85d7dda9acf90800e1bfb48cc28fd8d70c01a4bb80c0d1babb0e0104a881bce0f5df80f2"
    "05000175027c3f8000007c4000000003e18da5fdb8ef9e0800c4a2f7c4f7c998fe0504a2f7c4f7c998fe0500"
    "04f09f9880a190d5e2b495c7c607010100010390d5e2b495c7c60700c1a2f7c4f7c998fe050381bce0f5df80"
    "f2050101a1a6ccfe87abbfab050001000102c6abe6a5a6e9f80600a7a8edb4ddabefc70504012800c6abe6a5"
    "a6e9f80600016b017b3fe56eea85703e7001f78add99cfc7f706004481bce0f5df80f2050303e4b8ad01b7c3"
    "94c1a2d5950600c1a2f7c4f7c998fe0503dcdb9efcd2b09b04000105a2f7c4f7c998fe050001010474657874"
    "0181a2f7c4f7c998fe0500012101016d01310144a2f7c4f7c998fe0500010dc4a2f7c4f7c998fe0503a2f7c4"
    "f7c998fe0500010a01ab9895a2ffc7f70500c4cdce9da8eadaf70b0098aa87f9c7dc87010003e4b8ad0581bc"
    "e0f5df80f20500a1a2f7c4f7c998fe050201c4a2f7c4f7c998fe0503a2f7c4f7c998fe0504010dc481bce0f5"
    "df80f20501a2f7c4f7c998fe0504010a44c9e29fd5e4dce90d000165c481bce0f5df80f20503c9e29fd5e4dc"
    "e90d0002cc81029e99d2818c95cb0500a191a0ef8483aad10d0001000103a8edb4ddabefc70500c481bce0f5"
    "df80f2050181bce0f5df80f2050208f09f87abf09f87b7a19e99d2818c95cb050001000102a6ccfe87abbfab"
    "05002101016d066e65737465640100010189bdcea2d9f4a50500c190d5e2b495c7c6070081bce0f5df80f205"
    "010201e7a39ac988f7fc040041bfb48cc28fd8d70c000201b0abfba2d2f1e004002801016d0133017c3f8000"
    "0002dcdb9efcd2b09b0400c4a2f7c4f7c998fe0503a4bb80c0d1babb0e0006e4b8ade69687c181bce0f5df80"
    "f20504bddae8e0c3908e0904010198aa87f9c7dc870100c4cdce9da8eadaf70b00bfb48cc28fd8d70c0003e4"
    "b8ad01e5c5afe3d3c36e00c4cdce9da8eadaf70b00ab9895a2ffc7f7050003e4b8ad02bc9780f4bbf26600c4"
    "a2f7c4f7c998fe0504e18da5fdb8ef9e08000161c4bddae8e0c3908e0903accd93bd8eda5e01016103accd93"
    "bd8eda5e00c181bce0f5df80f20502a2f7c4f7c998fe050401c4bddae8e0c3908e0903bddae8e0c3908e0904"
    "0161e1e18da5fdb8ef9e0801e18da5fdb8ef9e08020216accd93bd8eda5e0200010202dcdb9efcd2b09b0401"
    "0201e7a39ac988f7fc0401000289bdcea2d9f4a505010002a6ccfe87abbfab05010002a8edb4ddabefc70501"
    "04029e99d2818c95cb0501000281bce0f5df80f205010001a2f7c4f7c998fe05010003b7c394c1a2d5950601"
    "000190d5e2b495c7c607010003e18da5fdb8ef9e08010202ee85d7dda9acf908010004bddae8e0c3908e0901"
    "0401a4ad9098e7d4a709010201b2a4af9beff19a0b010001cdce9da8eadaf70b010001bfb48cc28fd8d70c01"
    "0103b6b1affed99ec10d01000491a0ef8483aad10d010002c9e29fd5e4dce90d010002a4bb80c0d1babb0e01"
    "0001"
)


@pytest.mark.xfail(strict=True, reason="pycrdt 0.14.13: its text's length is off from its str")
def test_an_honest_update_is_not_taken_for_an_embed_where_pycrdts_length_is_off() -> None:
    """The embed check compares pycrdt's length with its str's: here they differ without
    any embed, so every update changing the text beside other content (a map key) is
    refused as an embed (the peer closed, again at each retry). Not fixed: `Text.diff` is
    no better signal (on a replica it can miss an embed `len` counts, see
    test_detached's map key set test); this fails until pycrdt's length is right."""
    for follow in (False, True):
        document = Document(Settings(detach_from_bytes=0), track_text=follow)
        document.apply_update(LENGTH_OFF, "yjs:0", None)
        text = str(document.text)
        peer = Doc()
        peer.apply_update(document.state)
        known = peer.get_state()
        with peer.transaction():
            peer.get("m", type=Map)["k"] = "中"
            peer.get("text", type=Text).insert(0, "😀")
        document.apply_update(peer.get_update(known), "yjs:1", None)
        assert str(document.text) == "😀" + text
        assert not follow or document.mirror == "😀" + text
    embed = Doc()
    embed.apply_update(document.state)
    known = embed.get_state()
    embed.get("text", type=Text).insert_embed(0, "中")  # still refused
    with pytest.raises(ChangeRefused):
        document.apply_update(embed.get_update(known), "yjs:2", None)
    assert document.mirror == "😀" + text
