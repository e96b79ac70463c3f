"""An embed whose value is a string, put in the shared text while text clients follow it.

pycrdt reports such an embed (``insert_embed(i, "中")``: not characters in Yjs, left out of
its text) in the text event's delta as ``{"insert": "中"}``, the same as characters. While
the text was followed (a text client connected), only that delta was checked, so the embed
was taken as text: the text clients' copy said "a中😀b", Yjs and the HTTP text "a😀b", and
every later op landed at byte offsets pycrdt does not have.
"""

from __future__ import annotations

from conftest import ServerProcess
from pyclient import YClient
from text_tab import Tab

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
