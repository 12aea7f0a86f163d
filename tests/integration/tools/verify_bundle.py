#!/usr/bin/env python3
"""An independent audit-bundle verifier, written from README.md ("Audit bundles") alone: it
shares no code with Vigil. Python's standard library and the openssl command (for Ed25519).

    verify_bundle.py BUNDLE.json AUDIT_PUBLIC_KEY.pem

Prints "OK <events in scope> <first seq>-<last seq>" and exits 0, or prints the problem and
exits 1.
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile


def u64(n):
    return (n % (1 << 64)).to_bytes(8, "big")


def s(text):
    data = text.encode("utf-8")
    return u64(len(data)) + data


def content_hash(e):
    return hashlib.sha256(b"vigil.content.v2" + s(e.get("incident_id", "")) +
                          u64(int(e.get("time_unix_ms", "0"))) + s(e.get("kind", "")) +
                          s(e.get("actor", "")) + s(e.get("summary", "")) +
                          s(e.get("details_json", ""))).hexdigest()


def hash_v1(prev, seq, e):
    return hashlib.sha256(b"vigil.timeline.v1" + s(prev) + u64(seq) + s(e.get("incident_id", "")) +
                          u64(int(e.get("time_unix_ms", "0"))) + s(e.get("kind", "")) +
                          s(e.get("actor", "")) + s(e.get("summary", "")) +
                          s(e.get("details_json", ""))).hexdigest()


def hash_v2(prev, seq, content):
    return hashlib.sha256(b"vigil.timeline.v2" + s(prev) + u64(seq) + s(content)).hexdigest()


def ed25519_ok(public_key_path, message, signature):
    with tempfile.TemporaryDirectory() as d:
        msg, sig = os.path.join(d, "m"), os.path.join(d, "s")
        with open(msg, "wb") as f:
            f.write(message)
        with open(sig, "wb") as f:
            f.write(signature)
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", public_key_path,
                            "-rawin", "-in", msg, "-sigfile", sig], capture_output=True)
        return r.returncode == 0


def fail(problem):
    print(problem)
    sys.exit(1)


def main():
    bundle_path, key_path = sys.argv[1], sys.argv[2]
    with open(bundle_path) as f:
        b = json.load(f)
    if b.get("format") != "vigil-audit-bundle/1":
        fail("not a vigil-audit-bundle/1")
    format2_from = int(b.get("format2_from_seq", "0"))
    entries, checkpoints = b.get("entries", []), b.get("checkpoints", [])
    if not entries or not checkpoints:
        fail("no entries or no checkpoints")
    for c in checkpoints:
        signed = (b"vigil.checkpoint.v1" + u64(int(c["seq"])) + s(c["hash"]) +
                  u64(int(c.get("time_unix_ms", "0"))))
        if not ed25519_ok(key_path, signed, base64.b64decode(c.get("signature", ""))):
            fail("checkpoint %s: bad signature" % c["seq"])
    if "event" not in entries[0]:
        fail("the first entry is not a whole event")
    prev = entries[0]["event"].get("prev_hash", "")
    expected = int(entries[0]["seq"])
    at_seq = {}
    in_scope = 0
    for entry in entries:
        seq = int(entry["seq"])
        if seq != expected:
            fail("event %d missing" % expected)
        if "event" in entry:
            e = entry["event"]
            if e.get("prev_hash", "") != prev:
                fail("event %d does not follow the one before" % seq)
            h = hash_v2(prev, seq, content_hash(e)) if seq >= format2_from else hash_v1(prev, seq, e)
            if e.get("hash") and e["hash"] != h:
                fail("event %d was changed" % seq)
            if entry.get("in_scope"):
                in_scope += 1
                if b.get("incident_id") and e.get("incident_id") != b["incident_id"]:
                    fail("event %d is not of the incident" % seq)
        else:
            if seq < format2_from or entry.get("in_scope"):
                fail("event %d needs its whole content" % seq)
            h = hash_v2(prev, seq, entry["content_hash"])
        at_seq[seq] = h
        prev = h
        expected += 1
    first, last = int(entries[0]["seq"]), expected - 1
    for c in checkpoints:
        seq = int(c["seq"])
        if first <= seq <= last and at_seq[seq] != c["hash"]:
            fail("the chain does not reach checkpoint %d" % seq)
    if int(checkpoints[-1]["seq"]) != last:
        fail("the bundle does not end at its last checkpoint")
    print("OK %d %d-%d" % (in_scope, first, last))


if __name__ == "__main__":
    main()
