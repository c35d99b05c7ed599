"""No personal data in the server's log (issue 14, R13/R17): a whole identification —
call, approval, certificate, PIN, SMS code, signature, evidence — logged at INFO and
scanned for the customer's name, document number, date of birth, phone and e-mail, the
PIN and the codes."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from .conftest import StartServer
from .test_compliance import PERSON
from .test_contract_signing import PIN, approved, certificate_and_signature


async def test_a_whole_flow_logs_no_personal_data(
    start_server: StartServer,
    customer_video: Path,
    operator_video: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    server, invitation, me = await approved(start_server, customer_video, operator_video)
    code = await certificate_and_signature(server, me)
    await server.services.evidence.settle()
    customer = await server.services.repo.find_customer(
        (await server.services.repo.find_session(id=invitation.session_id)).customer_id  # type: ignore[union-attr]
    )
    assert customer is not None
    secrets = {
        "surname": "Lovelace",
        "given names": "Ada",  # as approved() confirmed them
        "document number": PERSON["document_number"],
        "birth date": PERSON["date_of_birth"],
        "phone": customer.phone,
        "e-mail": customer.email,
        "PIN": PIN,
        "code": code,
    }
    server_lines = [
        r.getMessage()
        for r in caplog.records
        # the bots are the customer's and the operator's side, not the server
        if not r.name.startswith(("videoid.bots", "tests"))
    ]
    assert len(server_lines) > 10  # the flow was logged at all
    for what, value in secrets.items():
        word = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)")
        leaked = [line for line in server_lines if value and word.search(line)]
        assert not leaked, (what, leaked[:3])
