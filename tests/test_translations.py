"""Every text of the customer pages exists in English, Italian, Romanian and Polish, and
every error code and photo problem a customer can meet has its translated message."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
I18N = ROOT / "videoid" / "static" / "i18n.js"
CUSTOMER_FACING = [
    *sorted((ROOT / "videoid" / "customer_client").glob("*.py")),
    ROOT / "videoid" / "documents" / "images.py",
    ROOT / "videoid" / "media" / "probe.py",
    ROOT / "videoid" / "media" / "participant_peer.py",
    ROOT / "videoid" / "errors.py",
    ROOT / "videoid" / "signaling.py",
    ROOT / "videoid" / "http_api.py",
    ROOT / "videoid" / "call_center.py",
    ROOT / "videoid" / "operator_console" / "call_tools.py",
    # the certificate, the PIN, the SMS code and the signature
    ROOT / "videoid" / "trust" / "signing_flow.py",
    ROOT / "videoid" / "trust" / "pin.py",
    ROOT / "videoid" / "trust" / "ca.py",
    ROOT / "videoid" / "trust" / "customer_http.py",
    ROOT / "videoid" / "notify" / "codes.py",
]
OPERATOR_ONLY = {
    "already_taken",
    "not_assigned",
    "forbidden",
    "invalid_credentials",
    "login_throttled",
    "image_not_found",
    "object_not_found",
    "config_invalid",
    "queue_error",
    "session_error",
    "image_rejected",
    # the operator's call tools
    "invalid_snapshot_kind",
    "too_many_snapshots",
    "no_video",
    "analysis_off",
    "invalid_challenge",
    "invalid_reason",
    # the CA's own state at start (the server refuses to start)
    "ca_error",
    "ca_inconsistent",
    "ca_key_missing",
}
"""Codes only operators or the server's operator meet (the operator console is English)."""


def tables() -> dict[str, dict[str, str]]:
    text = I18N.read_text("utf-8")
    parts = re.split(r"\n  (en|it|ro|pl): \{\n", text)
    out = {}
    for lang, body in zip(parts[1::2], parts[2::2], strict=True):
        body = body.split("\n  },")[0]
        out[lang] = dict(re.findall(r'(?:^|[\s,])([A-Za-z0-9_]+): "((?:[^"\\]|\\.)*)"', body))
    return out


def test_every_language_has_every_text() -> None:
    langs = tables()
    assert sorted(langs) == ["en", "it", "pl", "ro"]
    english = set(langs["en"])
    assert len(english) > 150
    for lang, table in langs.items():
        assert set(table) == english, (lang, english ^ set(table))
        # placeholders survive translation
        for key, value in table.items():
            assert set(re.findall(r"{\w+}", value)) == set(re.findall(r"{\w+}", langs["en"][key]))
        if lang != "en":
            same = [k for k, v in table.items() if v == langs["en"][k] and len(v) > 12]
            assert not same, (lang, same)  # left in English by mistake


def test_every_error_and_problem_a_customer_can_meet_is_translated() -> None:
    english = tables()["en"]
    codes: set[str] = set()
    for path in CUSTOMER_FACING:
        codes |= set(re.findall(r'code\s*=\s*"([a-z_]+)"', path.read_text("utf-8")))
    codes |= {"email_in_use", "phone_in_use"}  # built as f"{taken}_in_use"
    codes -= OPERATOR_ONLY
    assert {"unsupported_file_type", "step_not_allowed", "handover_invalid"} <= codes
    missing = sorted(c for c in codes if f"err_{c}" not in english)
    assert not missing
    analysis = (ROOT / "videoid" / "documents" / "analysis.py").read_text("utf-8")
    problems = set(re.findall(r'problems\.append\("([a-z_]+)"\)', analysis))
    assert {"too_blurry", "no_face", "eyes_closed"} <= problems
    assert not sorted(p for p in problems if f"p_{p}" not in english)
    # the advice the connectivity test can give
    probe = (ROOT / "videoid" / "media" / "probe.py").read_text("utf-8")
    for problem in re.findall(r'problems\.append\("([a-z_]+)"\)', probe):
        assert f"adv_{problem}" in english
