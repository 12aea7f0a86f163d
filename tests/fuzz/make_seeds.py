#!/usr/bin/env python3
"""Writes the binary seed corpora of the protobuf harnesses from readable text protos.

seeds/<name>/<seed>.txtpb (<name>: the harness without "_fuzz") holds one or more text-format
messages separated by lines of "---"; each is encoded with protoc --encode and written
length-delimited (a varint length, then the bytes) to corpus/<name>/<seed>.bin, the framing the
harnesses read. Hand-made crash inputs are written the same way from
seeds/regressions/<name>/<case>.txtpb to regressions/<name>/<case>.bin.
Run from anywhere: tests/fuzz/make_seeds.py (needs protoc).
"""
import itertools
import pathlib
import re
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
PROTO_DIR = HERE.parent.parent / "proto"
MESSAGES = {
    "histogram": ("vigil.v1.Histogram", "vigil/v1/telemetry.proto"),
    "telemetry_ingest": ("vigil.v1.AgentMessage", "vigil/v1/agent_service.proto"),
}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(message: str, proto: str, text: str) -> bytes:
    result = subprocess.run(
        ["protoc", f"--encode={message}", "-I", str(PROTO_DIR), proto],
        input=text.encode(), capture_output=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"protoc --encode={message}: {result.stderr.decode()}")
    return result.stdout


def main() -> None:
    for (harness, (message, proto)), (src, dst) in itertools.product(
            MESSAGES.items(), [("seeds", "corpus"), ("seeds/regressions", "regressions")]):
        out_dir = HERE / dst / harness
        for source in sorted((HERE / src / harness).glob("*.txtpb")):
            out_dir.mkdir(parents=True, exist_ok=True)
            # An empty record is an empty message (all fields default).
            records = re.split(r"^---$", source.read_text(), flags=re.M)
            data = b"".join(varint(len(b)) + b for b in (encode(message, proto, r) for r in records))
            (out_dir / (source.stem + ".bin")).write_bytes(data)
            print(f"{dst}/{harness}/{source.stem}.bin: {len(records)} messages, {len(data)} bytes")


if __name__ == "__main__":
    main()
