"""The call's checklist: the provider's script, drawn for one call, and its answers.

A :class:`ChecklistTemplate` is loaded from the provider's TOML file (see the shipped
``checklist.toml``) and checked at start: a document type must list enough security
features to meet the rules (R8: at least three checked, at least two of them optically
variable). :meth:`ChecklistTemplate.draw` makes one call's :class:`Checklist`: which
security features and which random action, chosen at random per session (R8, R10).
Answers come from the operator, except that only the server passes the OTP item, when
the code read back matches (the operator may fail it). Every decision waits for every
mandatory item to be answered; an approval, for none to have failed. Pure: no I/O, no
clock.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ValidationError

KINDS = ("confirm", "date_time", "random_action", "otp", "security_features")
SNAPSHOT_KINDS = ("face", "document_front", "document_back", "document_tilted", "other")
ANSWERS = ("passed", "failed")
DEFAULT_FILE = Path(__file__).with_name("checklist.toml")


class ChecklistIncomplete(ValidationError):
    code = "checklist_incomplete"
    status = 409


@dataclass(frozen=True)
class Feature:
    id: str
    text: str
    optically_variable: bool


@dataclass(frozen=True)
class ItemTemplate:
    id: str
    text: str
    kind: str
    mandatory: bool
    snapshot: str = ""
    """A snapshot of this kind must exist before the item may pass ("snapshot taken")."""


@dataclass(frozen=True)
class ChecklistTemplate:
    items: tuple[ItemTemplate, ...]
    actions: tuple[str, ...]
    features: dict[str, tuple[Feature, ...]]
    min_checked: int = 3
    min_optically_variable: int = 2

    @classmethod
    def load(cls, path: str | Path = "") -> ChecklistTemplate:
        """Read and check a checklist file. Raises :class:`ConfigError` naming the fault."""
        path = Path(path) if path else DEFAULT_FILE
        try:
            raw = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"checklist {path}: {err}") from err
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "checklist") -> ChecklistTemplate:
        def fail(why: str) -> ConfigError:
            return ConfigError(f"{where}: {why}")

        items: list[ItemTemplate] = []
        for i, item in enumerate(raw.get("items", [])):
            try:
                t = ItemTemplate(
                    str(item["id"]),
                    str(item["text"]),
                    str(item.get("kind", "confirm")),
                    bool(item.get("mandatory", True)),
                    str(item.get("snapshot", "")),
                )
            except (KeyError, TypeError) as err:
                raise fail(f"item {i + 1} needs an id and a text") from err
            if t.kind not in KINDS:
                raise fail(f"item {t.id}: unknown kind {t.kind!r} (one of {', '.join(KINDS)})")
            if t.snapshot and t.snapshot not in SNAPSHOT_KINDS:
                raise fail(
                    f"item {t.id}: unknown snapshot {t.snapshot!r} "
                    f"(one of {', '.join(SNAPSHOT_KINDS)})"
                )
            if any(o.id == t.id for o in items):
                raise fail(f"item id {t.id!r} is used twice")
            items.append(t)
        if not items:
            raise fail("no items")
        sf = raw.get("security_features", {})
        min_checked = int(sf.get("min_checked", 3))
        min_ovd = int(sf.get("min_optically_variable", 2))
        if min_checked < 3 or min_ovd < 2 or min_ovd > min_checked:
            raise fail("security features: at least 3 checked, at least 2 optically variable (R8)")
        features: dict[str, tuple[Feature, ...]] = {}
        for doc_type, listed in sf.items():
            if not isinstance(listed, list):
                continue
            fs = tuple(
                Feature(str(f["id"]), str(f["text"]), bool(f.get("optically_variable")))
                for f in listed
            )
            if len(fs) < min_checked or sum(f.optically_variable for f in fs) < min_ovd:
                raise fail(
                    f"{doc_type} lists too few security features to draw {min_checked} "
                    f"with {min_ovd} optically variable"
                )
            features[doc_type] = fs
        actions = tuple(str(a) for a in raw.get("random_actions", []))
        if any(t.kind == "random_action" for t in items) and not actions:
            raise fail("a random_action item needs random_actions")
        if any(t.kind == "security_features" for t in items) and not features:
            raise fail("a security_features item needs security features per document type")
        return cls(tuple(items), actions, features, min_checked, min_ovd)

    def draw(self, document_type: str, rng: random.Random) -> Checklist:
        """One call's checklist: features and action chosen at random."""
        entries: list[dict[str, Any]] = []
        for item in self.items:
            if item.kind == "security_features":
                features = self._draw_features(document_type, rng)
                for f in features:
                    entries.append(
                        {
                            "id": f"{item.id}.{f.id}",
                            "text": f.text,
                            "kind": "security_feature",
                            "mandatory": item.mandatory,
                            "optically_variable": f.optically_variable,
                        }
                    )
                continue
            entry: dict[str, Any] = {
                "id": item.id,
                "text": item.text,
                "kind": item.kind,
                "mandatory": item.mandatory,
            }
            if item.kind == "random_action":
                entry["action"] = rng.choice(self.actions)
            if item.snapshot:
                entry["snapshot"] = item.snapshot
            entries.append(entry)
        return Checklist(document_type, entries)

    def _draw_features(self, document_type: str, rng: random.Random) -> list[Feature]:
        listed = self.features.get(document_type) or next(iter(self.features.values()))
        ovd = [f for f in listed if f.optically_variable]
        chosen = rng.sample(ovd, self.min_optically_variable)
        rest = [f for f in listed if f not in chosen]
        chosen += rng.sample(rest, self.min_checked - len(chosen))
        rng.shuffle(chosen)
        return chosen


@dataclass
class Checklist:
    document_type: str
    entries: list[dict[str, Any]]
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def answer(
        self,
        item_id: str,
        answer: str,
        note: str,
        at: float,
        by: str,
        snapshots: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Record an answer (see :meth:`with_answer`); the checklist's view."""
        self.answers = self.with_answer(item_id, answer, note, at, by, snapshots).answers
        return self.to_json()

    def with_answer(
        self,
        item_id: str,
        answer: str,
        note: str,
        at: float,
        by: str,
        snapshots: dict[str, str] | None = None,
    ) -> Checklist:
        """This checklist with an answer recorded, this one unchanged (a driver keeps
        the answer once it is written). ``snapshots``: the latest snapshot of each kind
        taken in this session (kind → object id), or None where the server takes none
        (live analysis off); an item that names a snapshot passes only when one of its
        kind exists (``snapshot_missing``), and its answer names it."""
        entry = self.entry(item_id)
        if answer not in ANSWERS:
            raise ValidationError("answer is passed or failed", code="invalid_answer")
        if entry["kind"] == "otp" and by != "system" and answer == "passed":
            raise ValidationError(
                "the code item passes when the server finds the code matches "
                "(the operator may mark it failed)",
                code="checklist_item_automatic",
            )
        recorded: dict[str, Any] = {"answer": answer, "note": note[:500], "at": at, "by": by}
        kind = entry.get("snapshot")
        if kind and answer == "passed" and snapshots is not None:
            if kind not in snapshots:
                raise ValidationError(
                    f"take the {kind.replace('_', ' ')} snapshot first", code="snapshot_missing"
                )
            recorded["snapshot"] = snapshots[kind]
        return Checklist(self.document_type, self.entries, {**self.answers, item_id: recorded})

    def entry(self, item_id: str) -> dict[str, Any]:
        for entry in self.entries:
            if entry["id"] == item_id:
                return entry
        raise ValidationError("no such checklist item", code="checklist_item_unknown")

    def missing(self) -> list[str]:
        """Mandatory items without an answer."""
        return [e["id"] for e in self.entries if e["mandatory"] and e["id"] not in self.answers]

    def failed(self) -> list[str]:
        return [i for i, a in self.answers.items() if a["answer"] == "failed"]

    def check_decision(self, outcome: str) -> None:
        """Every decision needs every mandatory item answered (passed or failed: a fraud
        is stopped by failing what could not be checked, which is then on record), and
        an approval needs none failed."""
        missing = self.missing()
        if missing:
            raise ChecklistIncomplete(
                f"the checklist is not complete: {', '.join(missing)}",
            )
        if outcome != "approved":
            return
        failed = [i for i in self.failed() if self.entry(i)["mandatory"]]
        if failed:
            raise ChecklistIncomplete(
                f"a mandatory check failed: {', '.join(failed)}", code="checklist_failed"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "document_type": self.document_type,
            "items": [
                {**e, **({"answer": self.answers[e["id"]]} if e["id"] in self.answers else {})}
                for e in self.entries
            ],
            "missing": self.missing(),
            "complete": not self.missing(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checklist:
        entries, answers = [], {}
        for item in data["items"]:
            item = dict(item)
            if "answer" in item:
                answers[item["id"]] = item.pop("answer")
            entries.append(item)
        return cls(data["document_type"], entries, answers)
