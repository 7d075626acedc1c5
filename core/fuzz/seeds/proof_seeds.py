#!/usr/bin/env python3
"""Writes the seeds of `hospital_handle` and `patient_handle` that reach the proof steps.

The targets take their input through `arbitrary` (1.x): integers little-endian, `bool` one
byte (`& 1`), an enum variant a u32 `x` with index `(x * variants) >> 32`, `Option` a bool then
the value, every `Vec` one continuation byte (1) before each element and a 0 after the last
(the top-level `ops` list just ends with the input). These seeds follow the `Op` enums of the
targets: when a target's `Op` (or anything it holds) changes, update the tables below and run
`python3 seeds/proof_seeds.py` from core/fuzz. Check what a seed decodes to with
`RUST_LIBFUZZER_DEBUG_PATH=/tmp/x target/.../hospital_handle seeds/hospital_handle/<seed>`.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(x):
    return struct.pack("<B", x)


def u16(x):
    return struct.pack("<H", x)


def u32(x):
    return struct.pack("<I", x)


def u64(x):
    return struct.pack("<Q", x)


def boolean(b):
    return u8(1 if b else 0)


def variant(i, n):
    # The smallest x with (x * n) >> 32 == i.
    return u32(-(-(i << 32) // n))


def vec(items):
    return b"".join(b"\x01" + it for it in items) + b"\x00"


def top(items):
    return b"".join(b"\x01" + it for it in items)


# ---- hospital_handle ----------------------------------------------------------------------
H_OPS = [
    "Raw", "Join", "Reveal", "Shares", "Partial", "Leave", "Disconnect", "Honest", "HonestAll",
    "Verify", "Verdict", "JoinMany", "Start", "Advance", "Jump", "Abandon", "Shutdown",
]
H_ADDITIVE, H_SHAMIR = 5, 6  # indices into SPECS


def hop(name, *fields):
    return variant(H_OPS.index(name), len(H_OPS)) + b"".join(fields)


def round_current():
    return variant(0, 3)


VERIFY = ["Honest", "NonCanonical", "ItemLen", "Reversed", "WithSelf", "Duplicate", "Dealers",
          "Empty"]
TAGS = ["Honest", "Drop", "WithSelf", "Recipients", "ItemLen"]


def verify(peer, how, *fields):
    return hop("Verify", u8(peer), round_current(),
               variant(VERIFY.index(how), len(VERIFY)), *fields)


def verdict(peer, dealer, code, tags="Honest", *fields, checkee=True):
    d = variant(0 if checkee else 1, 2) + u8(dealer)
    return hop("Verdict", u8(peer), round_current(), d, u8(code),
               variant(TAGS.index(tags), len(TAGS)), *fields)


def honest_all(value):
    return hop("HonestAll", u16(value))


def hospital(spec, ops):
    return u8(spec) + u64(1) + top(ops)


def full_round(k, verdict_value=1):
    # joins, start, reveals, shares, verify, verdicts, partial sums
    return [hop("JoinMany", u8(k)), hop("Start"), honest_all(1), honest_all(1), honest_all(1),
            honest_all(verdict_value), honest_all(1)]


HOSPITAL = {
    # Rounds with proofs that complete.
    "proofs_additive_complete": hospital(H_ADDITIVE, full_round(3)),
    "proofs_shamir_complete": hospital(H_SHAMIR, full_round(5)),
    # Every checker says invalid_proof (value 6) / not_verified (7): abandoned, or completed over
    # the others.
    "proofs_additive_invalid": hospital(H_ADDITIVE, full_round(3, 6)),
    "proofs_shamir_not_verified": hospital(H_SHAMIR, full_round(5, 7)),
    # Malformed verify frames, then honest ones, a duplicate, verdicts from non-checkers and
    # with bad tags, a duplicate verdict, a verdict in the wrong phase.
    "proofs_shamir_malformed": hospital(H_SHAMIR, [
        hop("JoinMany", u8(5)), hop("Start"), honest_all(1), honest_all(1),
        verdict(0, 0, 0),
        verify(0, "NonCanonical", u8(0), boolean(True)),
        verify(0, "ItemLen", u8(31)),
        verify(0, "Reversed"),
        verify(0, "WithSelf"),
        verify(0, "Duplicate", u8(1)),
        verify(0, "Dealers", vec([u8(3), u8(2)])),
        verify(0, "Dealers", vec([u8(9)])),
        verify(1, "Empty"),
        verify(1, "Honest"),
        honest_all(1),
        verdict(0, 7, 0, checkee=False),
        verdict(0, 0, 0, "Drop", u8(0)),
        verdict(0, 0, 0, "WithSelf"),
        verdict(0, 0, 0, "Recipients", vec([u8(2), u8(3)])),
        verdict(0, 0, 0, "ItemLen", u8(9)),
        verdict(0, 0, 1),
        verdict(0, 0, 0),
        honest_all(1), honest_all(1),
    ]),
    # Additive: an element p in a verify entry (the hospital reads and sums them), a
    # non-canonical one, then honest.
    "proofs_additive_noncanonical": hospital(H_ADDITIVE, [
        hop("JoinMany", u8(3)), hop("Start"), honest_all(1), honest_all(1),
        verify(0, "NonCanonical", u8(0), boolean(False)),
        verify(1, "NonCanonical", u8(1), boolean(True)),
        honest_all(1), honest_all(1), honest_all(1),
    ]),
    # Disconnects between the delivery and verify, and between checks and verdict; deadlines
    # passing mid-proof-phase.
    "proofs_shamir_dropouts": hospital(H_SHAMIR, [
        hop("JoinMany", u8(5)), hop("Start"), honest_all(1), honest_all(1),
        hop("Disconnect", u8(4)),
        honest_all(1),
        hop("Disconnect", u8(1)),
        honest_all(1), honest_all(1),
    ]),
    "proofs_shamir_timeouts": hospital(H_SHAMIR, [
        hop("JoinMany", u8(5)), hop("Start"), honest_all(1), honest_all(1),
        hop("Honest", u8(0), u16(1)), hop("Honest", u8(1), u16(1)), hop("Honest", u8(2), u16(1)),
        hop("Advance", u16(2500)),
        hop("Honest", u8(0), u16(1)),
        hop("Advance", u16(2500)),
        honest_all(1), honest_all(1),
    ]),
}

# ---- patient_handle -----------------------------------------------------------------------
P_OPS = [
    "Raw", "Welcome", "Enrolment", "Roster", "Keys", "Delivery", "Result", "Abandoned", "Error",
    "Advance", "Leave", "Next", "Checks", "Verdicts",
]
P_ADDITIVE, P_SHAMIR = 3, 4  # indices into SPECS


def pop(name, *fields):
    return variant(P_OPS.index(name), len(P_OPS)) + b"".join(fields)


def nxt(n, me_at, value):
    return pop("Next", u8(n), u8(me_at), u16(value))


def p_round_roster():
    return variant(0, 2)


CHECKS = ["Honest", "Dealer", "Count", "Entries", "ItemLen", "Garbage"]
VERDICTS = ["Honest", "TagOff", "Code", "Listed", "Reversed", "Repeat"]


def checks(how, *fields, tamper_entry=None):
    return pop("Checks", p_round_roster(), variant(CHECKS.index(how), len(CHECKS)), *fields)


def verdicts(codes, how="Honest", *fields):
    return pop("Verdicts", p_round_roster(), vec([u8(c) for c in codes]),
               variant(VERDICTS.index(how), len(VERDICTS)), *fields)


def patient(spec, seed, value, ops):
    # spec, seed, value, expected, timeout (None), ops
    return u8(spec) + u64(seed) + u16(value) + boolean(False) + boolean(False) + top(ops)


def to_delivery(n, me_at):
    return [nxt(n, me_at, 1)] * 4  # welcome, roster, keys, delivery


PATIENT = {}
for spec, name, n in ((P_ADDITIVE, "additive", 1), (P_SHAMIR, "shamir", 3)):
    # n is the roster size byte: 2 + n % 7 members. A refused message ends the patient, so
    # one malformed message per seed.
    for me_at in (0, 1):
        base = to_delivery(n, me_at) + [checks("Honest"), checks("Honest")]
        PATIENT[f"proofs_{name}_{me_at}_honest"] = patient(spec, 7, 5, base + [
            verdicts([]), nxt(n, me_at, 1)])
        PATIENT[f"proofs_{name}_{me_at}_listed"] = patient(spec, 7, 5, base + [
            verdicts([0, 1, 2, 255]), nxt(n, me_at, 1)])
    base = to_delivery(n, 0)
    bad_checks = {
        "dealer": checks("Dealer", u8(9)),
        "count": checks("Count", u8(0)),
        "entries": checks("Entries", vec([u8(1), u8(3), u8(2)])),
        "item_len": checks("ItemLen", u8(7)),
        "garbage": checks("Garbage", u8(1)),
        "twice": checks("Honest") + b"\x01" + checks("Honest") + b"\x01" + checks("Honest"),
    }
    for what, op in bad_checks.items():
        PATIENT[f"proofs_{name}_checks_{what}"] = patient(spec, 7, 5, base + [op, verdicts([])])
    base = base + [checks("Honest"), checks("Honest")]
    forged = {
        "tag_plus_one": verdicts([], "TagOff", u8(2)),
        "tag_minus_one": verdicts([], "TagOff", u8(0)),
        "code_outside": verdicts([1], "Code", u8(0), u8(7)),
        "code_changed": verdicts([1], "Code", u8(2), u8(2)),
        "code_valid": verdicts([1], "Code", u8(2), u8(0)),
        "own_dropped": verdicts([], "Code", u8(2), u8(255)),
        "listed": verdicts([1, 2], "Listed", vec([u8(9), u8(0)])),
        "reversed": verdicts([1, 2, 1], "Reversed"),
        "repeat": verdicts([1], "Repeat", u8(0)),
    }
    for what, op in forged.items():
        PATIENT[f"proofs_{name}_verdicts_{what}"] = patient(spec, 7, 5, base + [op, nxt(n, 0, 1)])


def main():
    for target, seeds in (("hospital_handle", HOSPITAL), ("patient_handle", PATIENT)):
        d = os.path.join(HERE, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
