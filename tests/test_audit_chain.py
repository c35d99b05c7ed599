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


def purged_chain() -> tuple[list[Entry], dict[int, tuple[bytes, dict]]]:
    """Entries 1-3 about session s1, 4 about s2, then the purge of s1 (5), then 6 about s1."""
    entries: list[Entry] = []
    details: dict[int, tuple[bytes, dict]] = {}
    story = (("s1", "login"), ("s1", "decision"), ("s1", "consent"),
             ("s2", "decision"), ("s1", "retention_purge"), ("s1", "viewed"))  # fmt: skip
    for subject, action in story:
        body = {"username": "olga", "address": "203.0.113.7"}
        entry, salt = new_entry(entries[-1] if entries else None, 100.0 + len(entries), action,
                                "system", subject, body)  # fmt: skip
        entries.append(entry)
        details[entry.seq] = (salt, body)
    return entries, details


def test_erasing_details_keeps_the_chain_where_a_purge_covers_it() -> None:
    entries, details = purged_chain()
    for seq in (1, 2, 3):
        del details[seq]  # retention: the personal data of s1 is gone
    v = verify(entries, details)
    assert v.ok and v.erased == 3
    assert "olga" not in str(entries) and all(len(e.commitment) == 64 for e in entries)


def test_deleted_details_that_no_purge_covers_are_found() -> None:
    entries, details = purged_chain()
    cases = {
        4: "no purge of s2",  # another subject's purge does not cover it
        6: "no purge of s1 after it",  # written after the purge: not covered
    }
    for seq, words in cases.items():
        kept = {k: v for k, v in details.items() if k != seq}
        v = verify(entries, kept)
        assert not v.ok and v.at_seq == seq and "were deleted" in (v.problem or ""), v
        assert words.split(" after")[0] in (v.problem or ""), v
    plain, plain_details = chain()
    del plain_details[2]
    v = verify(plain, plain_details)
    assert not v.ok and v.at_seq == 2 and "no purge of its subject" in (v.problem or "")


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
