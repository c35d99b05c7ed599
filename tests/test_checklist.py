"""The call's checklist: security features drawn at random per session within the
rules (R8), the random action (R10), the file's checks, and the decision gate."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from videoid.errors import ConfigError, ValidationError
from videoid.operator_console.checklist import Checklist, ChecklistIncomplete, ChecklistTemplate


@pytest.fixture(scope="module")
def template() -> ChecklistTemplate:
    return ChecklistTemplate.load()  # the shipped file


def features(checklist: Checklist) -> list[dict]:
    return [e for e in checklist.entries if e["kind"] == "security_feature"]


@pytest.mark.parametrize("doc_type", ["id_card", "passport", "residence_permit"])
def test_security_features_drawn_within_the_rules(
    template: ChecklistTemplate, doc_type: str
) -> None:
    listed = {f.id for f in template.features[doc_type]}
    seen: Counter[frozenset[str]] = Counter()
    for seed in range(200):
        drawn = features(template.draw(doc_type, random.Random(seed)))
        ids = [e["id"].split(".", 1)[1] for e in drawn]
        assert len(drawn) == 3 and len(set(ids)) == 3  # R8: at least three, distinct
        assert sum(e["optically_variable"] for e in drawn) >= 2  # R8: two optically variable
        assert set(ids) <= listed  # from this document type's list
        seen[frozenset(ids)] += 1
    # chosen at random per session: many different selections, none dominant
    assert len(seen) >= 5 and max(seen.values()) < 100


def test_random_action_varies_and_comes_from_the_list(template: ChecklistTemplate) -> None:
    actions = {
        next(e["action"] for e in template.draw("id_card", random.Random(s)).entries
             if e["kind"] == "random_action")
        for s in range(50)
    }  # fmt: skip
    assert actions <= set(template.actions) and len(actions) >= 4


def test_unknown_document_type_uses_the_first_list(template: ChecklistTemplate) -> None:
    drawn = features(template.draw("driving_licence", random.Random(1)))
    assert len(drawn) == 3


BASE = {
    "items": [{"id": "a", "text": "A"}, {"id": "sf", "text": "S", "kind": "security_features"}],
    "security_features": {
        "min_checked": 3,
        "min_optically_variable": 2,
        "id_card": [
            {"id": "h", "text": "h", "optically_variable": True},
            {"id": "k", "text": "k", "optically_variable": True},
            {"id": "g", "text": "g"},
        ],
    },
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["security_features"].update(min_checked=2), "at least 3"),
        (lambda d: d["security_features"].update(min_optically_variable=1), "at least 3"),
        (lambda d: d["security_features"]["id_card"].pop(), "too few security features"),
        (lambda d: d["security_features"]["id_card"][1].update(optically_variable=False),
         "too few security features"),
        (lambda d: d["items"].append({"id": "a", "text": "again"}), "used twice"),
        (lambda d: d["items"].append({"id": "x", "text": "x", "kind": "dance"}), "unknown kind"),
        (lambda d: d["items"].append({"id": "r", "text": "r", "kind": "random_action"}),
         "random_actions"),
        (lambda d: d["items"].append({"text": "no id"}), "needs an id"),
        (lambda d: d.update(items=[]), "no items"),
    ],
)  # fmt: skip
def test_a_bad_checklist_file_is_refused_at_start(change, message: str) -> None:
    import copy

    raw = copy.deepcopy(BASE)
    ChecklistTemplate.from_dict(copy.deepcopy(raw))  # the base is valid
    change(raw)
    with pytest.raises(ConfigError, match=message):
        ChecklistTemplate.from_dict(raw, "providers.toml")


def test_a_missing_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="checklist"):
        ChecklistTemplate.load(tmp_path / "none.toml")


def test_approval_waits_for_every_mandatory_item(template: ChecklistTemplate) -> None:
    checklist = template.draw("passport", random.Random(3))
    for outcome in ("approved", "rejected", "suspended"):  # every decision waits for it
        with pytest.raises(ChecklistIncomplete) as err:
            checklist.check_decision(outcome)
        assert err.value.code == "checklist_incomplete" and "greeting" in err.value.message

    with pytest.raises(ValidationError) as auto:
        checklist.answer("otp", "passed", "", 1.0, "operator:1")
    assert auto.value.code == "checklist_item_automatic"
    # a fraud: the operator fails what could not be checked, and may then reject
    stopped = Checklist.from_json(checklist.to_json())
    for entry in stopped.entries:
        if entry["mandatory"]:
            stopped.answer(entry["id"], "failed", "not shown", 1.0, "operator:1")
    stopped.check_decision("rejected")
    stopped.check_decision("suspended")
    with pytest.raises(ChecklistIncomplete):
        stopped.check_decision("approved")

    for entry in checklist.entries:
        by = "system" if entry["kind"] == "otp" else "operator:1"
        if entry["mandatory"]:
            checklist.answer(entry["id"], "passed", "", 1.0, by)
    checklist.check_decision("approved")
    assert checklist.to_json()["complete"] is True

    feature = features(checklist)[0]["id"]
    checklist.answer(feature, "failed", "no hologram visible", 2.0, "operator:1")
    with pytest.raises(ChecklistIncomplete) as failed:
        checklist.check_decision("approved")
    assert failed.value.code == "checklist_failed" and feature in failed.value.message

    again = Checklist.from_json(checklist.to_json())
    assert again.answers == checklist.answers and again.entries == checklist.entries
    with pytest.raises(ValidationError):
        again.answer("nope", "passed", "", 3.0, "operator:1")
    with pytest.raises(ValidationError):
        again.answer("greeting", "maybe", "", 3.0, "operator:1")


def test_snapshot_taken_passes_only_with_a_snapshot_of_its_kind(
    template: ChecklistTemplate,
) -> None:
    """Issue 14, item 10: the shipped "snapshot taken" items name their snapshot; the
    answer "passed" needs one of that kind (and names it), "failed" needs none."""
    checklist = template.draw("id_card", random.Random(3))
    named = {e["id"]: e.get("snapshot") for e in checklist.entries}
    assert named["document_front"] == "document_front"
    assert named["document_back"] == "document_back"
    with pytest.raises(ValidationError) as err:
        checklist.answer("document_front", "passed", "", 1.0, "operator:1", {})
    assert err.value.code == "snapshot_missing"
    with pytest.raises(ValidationError) as err:  # another kind does not count
        checklist.answer("document_front", "passed", "", 1.0, "operator:1", {"face": "obj-1"})
    assert err.value.code == "snapshot_missing"
    assert "document_front" not in checklist.answers
    view = checklist.answer(
        "document_front", "passed", "", 2.0, "operator:1", {"document_front": "obj-2"}
    )
    front = next(i for i in view["items"] if i["id"] == "document_front")
    assert front["answer"]["snapshot"] == "obj-2"
    checklist.answer("document_back", "failed", "no back shown", 3.0, "operator:1", {})
    # items without a snapshot, and a server that takes none (live analysis off)
    checklist.answer("greeting", "passed", "", 4.0, "operator:1", {})
    fresh = template.draw("id_card", random.Random(3))
    fresh.answer("document_front", "passed", "", 5.0, "operator:1", None)
    bad = {"items": [{"id": "a", "text": "A", "snapshot": "selfie"}]}
    with pytest.raises(ConfigError, match="unknown snapshot"):
        ChecklistTemplate.from_dict(bad)


def test_an_answer_is_kept_only_when_the_driver_keeps_it(template: ChecklistTemplate) -> None:
    """Issue 20.4: ``with_answer`` leaves the checklist as it was (the server keeps the
    answer once written; refused by a full disk, it is not counted)."""
    checklist = template.draw("passport", random.Random(3))
    first = checklist.entries[0]["id"]
    answered = checklist.with_answer(first, "passed", "", 1.0, "operator:1")
    assert checklist.answers == {} and first in checklist.missing()
    assert answered.answers[first]["answer"] == "passed" and first not in answered.missing()
