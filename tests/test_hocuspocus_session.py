"""SyncStatus in the session: a Hocuspocus peer's sync message or update is answered in the
very output that holds its record, so a driver that commits before it sends (the runner)
sends SyncStatus only once the change is durable."""

from __future__ import annotations

from pycrdt import Doc, Text

from collab.session import Session
from collab.yjs import protocol
from collab.yjs.hocuspocus import SYNC_STATUS_APPLIED, SYNC_STATUS_REFUSED

TEXT = "zoë 😀 👨‍👩‍👧 中文 e\u0301\r\n"


def update_with(text: str) -> bytes:
    doc = Doc()
    doc.get("text", type=Text).insert(0, text)
    return doc.get_update()


def messages_to(output, peer: str) -> list[bytes | str]:
    return [data for peer_id, data in output.messages if peer_id == peer]


def test_an_update_is_answered_in_the_output_that_holds_its_record() -> None:
    session = Session("doc")
    session.connect_yjs("h", sync_status=True)
    session.connect_yjs("y")
    session.take_output()
    session.receive("h", protocol.encode_sync_update(update_with(TEXT)))
    output = session.take_output()
    assert len(output.records) == 1
    assert messages_to(output, "h") == [SYNC_STATUS_APPLIED]  # its own update: not echoed
    assert all(data != SYNC_STATUS_APPLIED for data in messages_to(output, "y"))
    assert session.mirror == TEXT


def test_a_sync_step_2_that_adds_nothing_is_acknowledged_too() -> None:
    """The provider counts one pending change from its connect until this answer."""
    session = Session("doc")
    session.connect_yjs("h", sync_status=True)
    session.take_output()
    session.receive("h", protocol.encode_sync_step2(Doc().get_update()))
    output = session.take_output()
    assert output.records == []
    assert messages_to(output, "h") == [SYNC_STATUS_APPLIED]


def test_each_step_1_is_answered_with_step_2_then_a_step_1_of_ours() -> None:
    """The provider counts one pending change per step 1 it sends (on connect, and every
    forceSyncInterval); our step 1 brings the step 2 whose SyncStatus settles it. So
    exactly one step 1 per step 1 it sent: none on connect."""
    session = Session("doc")
    session.connect_yjs("h", sync_status=True)
    assert messages_to(session.take_output(), "h") == []
    session.apply_update(update_with(TEXT), "server:test")
    session.take_output()
    for _ in range(2):
        session.receive("h", protocol.encode_sync_step1(Doc().get_state()))
        sent = [protocol.decode(data) for data in messages_to(session.take_output(), "h")]
        assert [type(message) for message in sent] == [protocol.SyncStep2, protocol.SyncStep1]
        assert sent[1].state_vector == session.document.doc.get_state()


def test_a_readonly_peers_update_is_answered_not_applied() -> None:
    session = Session("doc")
    session.connect_yjs("h", readonly=True, sync_status=True)
    session.take_output()
    session.receive("h", protocol.encode_sync_update(update_with(TEXT)))
    output = session.take_output()
    assert output.records == [] and session.mirror == ""
    assert messages_to(output, "h") == [SYNC_STATUS_REFUSED]


def test_a_refused_update_closes_the_peer_without_sync_status() -> None:
    session = Session("doc")
    session.connect_yjs("h", sync_status=True)
    session.take_output()
    session.receive("h", protocol.encode_sync_update(b"\x07garbage"))
    output = session.take_output()
    assert messages_to(output, "h") == []
    assert [peer for peer, _, _ in output.closes] == ["h"]


def test_a_y_websocket_peer_never_gets_sync_status() -> None:
    session = Session("doc")
    session.connect_yjs("y")
    session.take_output()
    session.receive("y", protocol.encode_sync_update(update_with(TEXT)))
    assert SYNC_STATUS_APPLIED not in messages_to(session.take_output(), "y")


def test_a_hocuspocus_peer_is_not_resynced_but_reconnects() -> None:
    """A resync drops queued messages, SyncStatus among them: the provider would count
    those changes pending for good. Its reconnect starts the count afresh."""
    session = Session("doc")
    session.connect_yjs("h", sync_status=True)
    session.connect_yjs("y")
    assert session.resync("h") is False
    assert session.resync("y") is True
