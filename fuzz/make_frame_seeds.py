#!/usr/bin/env python3
"""Writes fuzz/corpus/frame/*: valid and edge-case frames, records and envelope keys
(docs/WIRE.md), with a minimal msgpack encoder so no Python package is needed.
Run from anywhere: python3 fuzz/make_frame_seeds.py"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "frame")


class F32(float):
    """A float written as msgpack float32 (other writers use it)."""


def pack(v):
    if isinstance(v, F32):
        return b"\xca" + struct.pack(">f", v)
    if v is None:
        return b"\xc0"
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v < 2**8:
            return b"\xcc" + struct.pack(">B", v)
        if 0 <= v < 2**16:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v < 2**32:
            return b"\xce" + struct.pack(">I", v)
        if 0 <= v < 2**64:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        if len(b) < 256:
            return b"\xd9" + bytes([len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        head = bytes([0x90 | len(v)]) if len(v) < 16 else b"\xdc" + struct.pack(">H", len(v))
        return head + b"".join(pack(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError(v)


def request_v2(i, node="node-a"):
    return [1, 2, "0190f3c2-7b1e-7a00-8000-00000000000%d" % i, "GET", "/products/%d" % i, 200, 12.5,
            "Mozilla/5.0 (X11; Linux x86_64)", "203.0.113.7", "https://example.com/", "desktop",
            "s-%d" % i, 3, 1700000000123456, node, 100 + i]


def request_v1(i):
    return request_v2(i)[:14]


def analytics(kind, i):
    # [kind, version, message_id, user_id, timestamp, event, email, timezone, account_id, name,
    #  traits_json, properties_json, node_id, seq]
    return [kind, 1, "m-%d" % i, "user-%d" % i, 1700000000000000 + i,
            "Signed Up" if kind == 4 else "", "a@example.com" if kind == 2 else "",
            "Europe/Paris" if kind == 2 else "", "acme" if kind == 3 else "",
            "Acme Inc" if kind == 3 else "", '{"plan":"pro"}' if kind != 4 else "",
            '{"amount":3}' if kind == 4 else "", "node-a", 7 + i]


def frame(records, node="node-a", epoch=0x1234567890ABCDEF, first_seq=100):
    return pack([1, node, epoch, first_seq, records])


SEEDS = {
    "frame_one_request": frame([request_v2(1)]),
    "frame_mixed": frame([request_v2(1), analytics(2, 2), analytics(3, 3), analytics(4, 4), request_v1(5)]),
    "frame_v1_records": frame([request_v1(1), request_v1(2)]),
    "frame_empty": frame([]),
    "frame_nil_strings": frame([[1, 2, None, "POST", "/", 201, 0, None, None, None, None, None, 0, 0, None, 0]]),
    "frame_future_wire_version": pack([2, "node-a", 1, 1, []]),
    "frame_future_record_version": frame([[1, 3] + request_v2(1)[2:]]),
    "frame_bad_status": frame([request_v2(1)[:5] + [700] + request_v2(1)[6:]]),
    "frame_negative_duration": frame([request_v2(1)[:6] + [-1.0] + request_v2(1)[7:]]),
    # Every integer width, float32 and float64, integral durations, str8/str16 strings.
    "frame_number_forms": frame([
        request_v2(1)[:5] + [503, F32(2.5)] + request_v2(1)[7:12] + [70000, 2**33] + ["node-a", 2**40],
        request_v2(2)[:5] + [404, 3] + ["M" * 300] + request_v2(2)[8:12] + [255, 0] + ["node-b", 2**63],
        request_v2(3)[:5] + [200, 0.125] + request_v2(3)[7:12] + [65535, 2**40] + ["n" * 40, 0],
    ], first_seq=2**32 + 5),
    "frame_truncated": frame([request_v2(1)])[:-5],
    "frame_trailing_bytes": frame([request_v2(1)]) + b"\x00",
    "frame_long_node_id": frame([request_v2(1)], node="n" * 65),
    "frame_deep_nesting": b"\x91" * 20 + b"\x00",
    "record_request_v2": pack(request_v2(9)),
    "record_request_v1": pack(request_v1(9)),
    "record_identify": pack(analytics(2, 9)),
    "record_group": pack(analytics(3, 9)),
    "record_track": pack(analytics(4, 9)),
    "record_unknown_kind": pack([9, 1, "x"]),
    "key_local": b"requests\x00L",
    "key_cluster": b"analytics.events:eu-1\x00G",
    "key_close": b"\x01close",
    "key_bad_scope": b"requests\x00X",
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(SEEDS), OUT))
