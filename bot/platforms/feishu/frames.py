"""Feishu's long-connection frame (`pbbp2.Frame`, protobuf) read and written by hand.

The message is small and fixed, so a few lines of varint code replace a protobuf runtime:

    message Header { required string key = 1; required string value = 2; }
    message Frame {
      required uint64 SeqID = 1; required uint64 LogID = 2;
      required int32 service = 3; required int32 method = 4;   // method: 0 control, 1 data
      repeated Header headers = 5;
      optional string payload_encoding = 6; optional string payload_type = 7;
      optional bytes payload = 8; optional string LogIDNew = 9;
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONTROL = 0
DATA = 1

# Header keys and message types (lark-oapi ws/const.py and ws/enum.py).
TYPE = "type"
MESSAGE_ID = "message_id"
SUM = "sum"
SEQ = "seq"
TRACE_ID = "trace_id"
BIZ_RT = "biz_rt"
PING = "ping"
PONG = "pong"
EVENT = "event"
CARD = "card"

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class FrameError(ValueError):
    """The bytes are not a well-formed Frame."""


@dataclass
class Frame:
    seq_id: int = 0
    log_id: int = 0
    service: int = 0
    method: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload_encoding: str | None = None
    payload_type: str | None = None
    payload: bytes | None = None
    log_id_new: str | None = None

    def header(self, key: str) -> str | None:
        for name, value in self.headers:
            if name == key:
                return value
        return None

    def encode(self) -> bytes:
        out = bytearray()
        _key(out, 1, _VARINT)
        _varint(out, self.seq_id)
        _key(out, 2, _VARINT)
        _varint(out, self.log_id)
        _key(out, 3, _VARINT)
        _varint(out, self.service & 0xFFFFFFFFFFFFFFFF)
        _key(out, 4, _VARINT)
        _varint(out, self.method & 0xFFFFFFFFFFFFFFFF)
        for name, value in self.headers:
            header = bytearray()
            _bytes(header, 1, name.encode())
            _bytes(header, 2, value.encode())
            _bytes(out, 5, bytes(header))
        if self.payload_encoding is not None:
            _bytes(out, 6, self.payload_encoding.encode())
        if self.payload_type is not None:
            _bytes(out, 7, self.payload_type.encode())
        if self.payload is not None:
            _bytes(out, 8, self.payload)
        if self.log_id_new is not None:
            _bytes(out, 9, self.log_id_new.encode())
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Frame:
        frame = cls()
        seen: set[int] = set()
        for number, value in _fields(data):
            seen.add(number)
            if number == 1:
                frame.seq_id = _uint(value)
            elif number == 2:
                frame.log_id = _uint(value)
            elif number == 3:
                frame.service = _int32(value)
            elif number == 4:
                frame.method = _int32(value)
            elif number == 5:
                frame.headers.append(_header(_blob(value)))
            elif number == 6:
                frame.payload_encoding = _text(value)
            elif number == 7:
                frame.payload_type = _text(value)
            elif number == 8:
                frame.payload = _blob(value)
            elif number == 9:
                frame.log_id_new = _text(value)
        if not {1, 2, 3, 4} <= seen:
            raise FrameError("a required field (SeqID, LogID, service, method) is missing")
        return frame


def _key(out: bytearray, number: int, wire: int) -> None:
    _varint(out, number << 3 | wire)


def _varint(out: bytearray, value: int) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _bytes(out: bytearray, number: int, value: bytes) -> None:
    _key(out, number, _LEN)
    _varint(out, len(value))
    out += value


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise FrameError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
            fields.append((number, value))
        elif wire == _LEN:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise FrameError("a field runs past the end of the frame")
            fields.append((number, bytes(data[pos:pos + length])))
            pos += length
        elif wire in (_I64, _I32):  # not in Frame; skipped like any unknown field
            pos += 8 if wire == _I64 else 4
        else:
            raise FrameError(f"unsupported wire type {wire}")
    if pos != len(data):
        raise FrameError("truncated frame")
    return fields


def _uint(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise FrameError("expected a number")
    return value


def _int32(value: int | bytes) -> int:
    number = _uint(value) & 0xFFFFFFFF
    return number - (1 << 32) if number & 0x80000000 else number


def _blob(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise FrameError("expected bytes")
    return value


def _text(value: int | bytes) -> str:
    try:
        return _blob(value).decode()
    except UnicodeDecodeError:
        raise FrameError("a string field is not UTF-8") from None


def _header(data: bytes) -> tuple[str, str]:
    key = value = None
    for number, item in _fields(data):
        if number == 1:
            key = _text(item)
        elif number == 2:
            value = _text(item)
    if key is None or value is None:
        raise FrameError("a header lacks its key or value")
    return key, value
