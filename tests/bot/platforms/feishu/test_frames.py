"""The hand-written Frame codec agrees with lark-oapi's generated protobuf class, both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lark_oapi.ws.pb.pbbp2_pb2 import Frame as LarkFrame

from bot.platforms.feishu.frames import Frame, FrameError

texts = st.text(max_size=40)
frames = st.builds(
    Frame,
    seq_id=st.integers(0, 2**64 - 1),
    log_id=st.integers(0, 2**64 - 1),
    service=st.integers(-(2**31), 2**31 - 1),
    method=st.integers(-(2**31), 2**31 - 1),
    headers=st.lists(st.tuples(texts, texts), max_size=6),
    payload_encoding=st.none() | texts,
    payload_type=st.none() | texts,
    payload=st.none() | st.binary(max_size=300),
    log_id_new=st.none() | texts,
)


def lark_copy(frame: Frame) -> LarkFrame:
    lark = LarkFrame()
    lark.SeqID, lark.LogID, lark.service, lark.method = frame.seq_id, frame.log_id, frame.service, frame.method
    for key, value in frame.headers:
        item = lark.headers.add()
        item.key, item.value = key, value
    for name, attr in (("payload_encoding", "payload_encoding"), ("payload_type", "payload_type"),
                       ("payload", "payload"), ("LogIDNew", "log_id_new")):
        if getattr(frame, attr) is not None:
            setattr(lark, name, getattr(frame, attr))
    return lark


@given(frames)
def test_what_we_write_lark_reads_and_what_lark_writes_we_read(frame: Frame) -> None:
    lark = LarkFrame()
    lark.ParseFromString(frame.encode())
    assert lark == lark_copy(frame)
    assert Frame.decode(lark_copy(frame).SerializeToString()) == frame
    assert frame.encode() == lark_copy(frame).SerializeToString()


@given(st.binary(max_size=200))
def test_garbage_is_refused_with_a_frame_error_never_another_exception(data: bytes) -> None:
    try:
        Frame.decode(data)
    except FrameError:
        pass


def test_a_frame_without_its_required_fields_is_refused() -> None:
    with pytest.raises(FrameError, match="required"):
        Frame.decode(b"")
    with pytest.raises(FrameError):
        Frame.decode(Frame(headers=[("type", "ping")]).encode()[:-3])


def test_reassembly_refuses_a_frame_that_claims_a_huge_number_of_fragments() -> None:
    from bot.platforms.feishu import websocket

    client = websocket.FeishuWebSocket(None, "", "", "", None, max_ping_seconds=30)  # type: ignore[arg-type]

    def fragment(message_id: str, seq: int, total: int, payload: bytes) -> Frame:
        return Frame(method=1, headers=[("type", "event"), ("message_id", message_id), ("sum", str(total)),
                                        ("seq", str(seq))], payload=payload)

    assert client._assemble(fragment("m1", 0, 10**9, b"x"), "m1") is None
    assert client._fragments == {}
    assert client._assemble(fragment("m2", 1, 2, b"def"), "m2") is None
    assert client._assemble(fragment("m2", 0, 2, b"abc"), "m2") == b"abcdef"
    for i in range(websocket.MAX_PENDING_EVENTS + 10):
        client._assemble(fragment(f"open-{i}", 0, 2, b"a"), f"open-{i}")
    assert len(client._fragments) == websocket.MAX_PENDING_EVENTS
