"""The audit chain: every kind of change found and placed; erased details keep it
valid (R14, R22)."""

from __future__ import annotations

import dataclasses

from videoid.recordings.audit_chain import Entry, commitment, new_entry, verify


def chain(n: int = 6) -> tuple[list[Entry], dict[int, tuple[bytes, dict]]]:
    entries: list[Entry] = []
    details: dict[int, tuple[bytes, dict]] = {}
    for i in range(n):
        body = {"username": f"user{i}", "address": "203.0.113.7"}
        entry, salt = new_entry(entries[-1] if entries else None, 100.0 + i, "login",
                                f"operator:{i}", "", body)  # fmt: skip
        entries.append(entry)
        details[entry.seq] = (salt, body)
    return entries, details


def test_an_untouched_chain_verifies_and_gives_its_head() -> None:
    entries, details = chain()
    v = verify(entries, details)
    assert v.ok and v.entries == 6 and v.head == entries[-1].hash and v.erased == 0
    assert verify([], {}).ok


def test_erasing_details_keeps_the_chain() -> None:
    entries, details = chain()
    for seq in (2, 3):
        del details[seq]  # retention: the personal data is gone
    v = verify(entries, details)
    assert v.ok and v.erased == 2
    assert "user2" not in str(entries) and all(len(e.commitment) == 64 for e in entries)


def test_each_kind_of_change_is_found_and_placed() -> None:
    entries, details = chain()

    edited = list(entries)
    edited[2] = dataclasses.replace(edited[2], action="logout")
    v = verify(edited, details)
    assert not v.ok and v.at_seq == 3 and "entry 3 was changed" in (v.problem or "")

    v = verify(entries[:2] + entries[3:], details)
    assert not v.ok and v.at_seq == 3 and "entry 3 deleted" in (v.problem or "")
    v = verify(entries[:2] + entries[4:], details)
    assert "entries 3 to 4 deleted" in (v.problem or "")

    swapped = [*entries[:2], entries[3], entries[2], *entries[4:]]
    v = verify(swapped, details)
    assert not v.ok and "out of order" in (v.problem or "") and v.at_seq == 3

    # a forged entry with a valid-looking hash, slipped in with the next number
    forged, forged_salt = new_entry(entries[2], 102.5, "login", "operator:9", "", {"x": 1})
    v = verify([*entries[:3], forged, *entries[3:]], details)
    assert not v.ok and v.at_seq == 4

    # …and renumbering everything after it, details too, does not help: the next
    # entry's hash covered its old number and its old predecessor
    renumbered = [dataclasses.replace(e, seq=e.seq + 1) for e in entries[3:]]
    moved = {seq + 1 if seq > 3 else seq: d for seq, d in details.items()}
    moved[4] = (forged_salt, {"x": 1})
    v = verify([*entries[:3], forged, *renumbered], moved)
    assert not v.ok and v.at_seq == 5 and "entry 5 was changed" in (v.problem or "")

    v = verify([*entries, entries[1]], details)
    assert not v.ok and "inserted or reordered" in (v.problem or "")

    changed = dict(details)
    salt, body = changed[4]
    changed[4] = (salt, {**body, "address": "198.51.100.1"})
    v = verify(entries, changed)
    assert not v.ok and "details of entry 4" in (v.problem or "")


def test_a_cut_at_the_end_needs_a_checkpoint() -> None:
    entries, details = chain()
    checkpoint = (6, entries[5].hash)
    assert verify(entries[:4], details).ok  # shorter, still a chain
    v = verify(entries[:4], details, checkpoint)
    assert not v.ok and "before the checkpoint" in (v.problem or "")
    assert verify(entries, details, checkpoint).ok
    assert commitment(b"s", {"a": 1}) != commitment(b"t", {"a": 1})  # salted
