"""A full disk during a call (issue 20, items 4 and 8): the server's data directory on a
small filesystem of its own (a tmpfs, as in ``test_storage_full``), filled while a
customer is in a call. What the operator does that cannot be written is refused with
``storage_full`` and changes nothing in memory, so the same action succeeds once there
is room; what happens to them regardless (their console's connection drops) is kept in
memory and written later, and never locks them out of their account."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from videoid.bots.operator_bot import answer_checklist, login
from videoid.bots.signaling_client import ProtocolError, SignalingClient

from .conftest import PASSWORD, Server, StartServer
from .test_browser_call import chromium, console_login
from .test_storage_full import fill, small_filesystem

SETTINGS: dict[str, dict[str, Any]] = {
    # signalling only, no media: the call waits for its customer's media forever, and
    # without the live analysis the checklist asks for no snapshot
    "call": {"connect_seconds": 0.0},
    "live": {"workers": 0},
}


async def start(start_server: StartServer, small: Path) -> Server:
    return await start_server(
        server={"data_dir": str(small / "data"), "min_free_mb": 1}, **SETTINGS
    )


async def console(server: Server, token: str) -> SignalingClient:
    client = SignalingClient(server.url, "/operator")
    await client.connect({"token": token})
    await client.next("hello", 5)
    return client


async def call(
    server: Server, username: str
) -> tuple[SignalingClient, SignalingClient, str, str, int]:
    """A customer in a call with a new operator; the customer's and the operator's
    clients, the session, the operator's login token and id."""
    invitation = await server.invite()
    customer = SignalingClient(server.url, "/customer")
    await customer.connect({"token": invitation.token})
    await customer.next("session", 5)
    operator_id = await server.operator(username)
    token = await login(server.url, username, PASSWORD)
    operator = await console(server, token)
    await customer.request("join_queue")
    await operator.request("set_presence", {"status": "available"})
    assert (await operator.next("assignment_offered", 5))["session_id"] == invitation.session_id
    await operator.request("accept", {"session_id": invitation.session_id})
    await customer.next("call_started", 5)
    return customer, operator, invitation.session_id, token, operator_id


async def saved_answers(server: Server, session_id: str) -> dict[str, str]:
    """The checklist's answers as the database has them (item → answer)."""
    [*_, latest] = await server.services.repo.items(session_id, ["checklist"])
    return {i["id"]: i["answer"]["answer"] for i in latest["data"]["items"] if "answer" in i}


def answers(view: dict[str, Any]) -> dict[str, str]:
    return {i["id"]: i["answer"]["answer"] for i in view["items"] if "answer" in i}


async def until(check: Any, seconds: float = 5.0) -> bool:
    for _ in range(int(seconds * 20)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return bool(check())


async def test_a_decision_the_disk_refused_is_taken_again_once_there_is_room(
    start_server: StartServer, tmp_path: Path
) -> None:
    """The decision is refused with ``storage_full``: the session stays in the call with
    its operator and the customer is told nothing; with room again the same decision,
    on the same checklist, is taken and the customer gets the outcome."""
    with small_filesystem(tmp_path / "small", 24) as small:
        server = await start(start_server, small)
        customer, operator, session_id, _, operator_id = await call(server, "dora")
        view = (await operator.request("call_view"))["checklist"]
        await answer_checklist(operator, view["items"], otp="failed")
        given = await saved_answers(server, session_id)
        decision = {"session_id": session_id, "outcome": "rejected", "reason_code": "otp_failed"}

        filler = fill(small)
        with pytest.raises(ProtocolError) as full:
            await operator.request("decide", decision)
        assert full.value.code == "storage_full", full.value
        # nothing changed: the call goes on, nobody was told of an outcome
        assert server.services.center.call_of(operator_id) == session_id
        assert server.services.center.live_view()["calls"] == 1
        record = await server.services.repo.find_session(id=session_id)
        assert record is not None and record.state == "in_call"
        assert await server.services.repo.decisions(session_id) == []
        await asyncio.sleep(0.2)
        assert customer.drain("outcome") == []

        filler.unlink()
        reply = await operator.request("decide", decision)
        assert reply["state"] == "rejected"
        assert (await customer.next("outcome", 5))["outcome"] == "rejected"
        [saved] = await server.services.repo.decisions(session_id)
        assert saved.outcome == "rejected" and saved.operator_id == operator_id
        assert await saved_answers(server, session_id) == given  # nothing lost
        await asyncio.gather(customer.close(), operator.close())


async def test_an_answer_the_disk_refused_is_not_shown_as_given(
    start_server: StartServer, tmp_path: Path
) -> None:
    """A checklist answer refused with ``storage_full`` is not kept as if given: the
    console's view and the decision's check still miss it, and answering it again
    once there is room saves it."""
    with small_filesystem(tmp_path / "small", 24) as small:
        server = await start(start_server, small)
        customer, operator, session_id, _, _ = await call(server, "emil")
        items = (await operator.request("call_view"))["checklist"]["items"]
        first, second, *_ = [i["id"] for i in items if i["kind"] != "otp"]
        await operator.request("checklist_answer", {"item": first, "answer": "passed"})

        filler = fill(small)
        with pytest.raises(ProtocolError) as full:
            await operator.request("checklist_answer", {"item": second, "answer": "passed"})
        assert full.value.code == "storage_full", full.value
        assert answers((await operator.request("call_view"))["checklist"]) == {first: "passed"}
        # a decision is not taken on an answer that was not saved
        with pytest.raises(ProtocolError) as incomplete:
            await operator.request(
                "decide",
                {"session_id": session_id, "outcome": "rejected", "reason_code": "otp_failed"},
            )
        assert incomplete.value.code == "checklist_incomplete"

        filler.unlink()
        view = await operator.request("checklist_answer", {"item": second, "answer": "passed"})
        assert answers(view) == {first: "passed", second: "passed"}
        assert await saved_answers(server, session_id) == answers(view)
        await asyncio.gather(customer.close(), operator.close())


async def test_a_console_that_dropped_while_the_disk_was_full_connects_again(
    start_server: StartServer, tmp_path: Path
) -> None:
    """The operator's console drops mid-call while nothing can be written: the call
    ends for them all the same (the customer back at the head of the queue, told), the
    change written once there is room; the operator connects again with the same login
    (no "already connected in another tab"), takes the customer again, finds the
    answers saved before, and decides; the customer gets the outcome."""
    with small_filesystem(tmp_path / "small", 24) as small:
        server = await start(start_server, small)
        center = server.services.center
        customer, operator, session_id, token, operator_id = await call(server, "finn")
        items = (await operator.request("call_view"))["checklist"]["items"]
        first = next(i["id"] for i in items if i["kind"] != "otp")
        await operator.request("checklist_answer", {"item": first, "answer": "passed"})

        filler = fill(small)
        await operator.close()
        ended = await customer.next("call_ended", 5)
        assert ended == {"reason": "operator_left", "state": "waiting"}
        assert await until(lambda: center.live_view()["operators"] == [])
        record = await server.services.repo.find_session(id=session_id)
        assert record is not None and record.state == "in_call"  # not written yet

        filler.unlink()
        again = await console(server, token)
        # the call's end is written once there is room (the tick retries it)
        for _ in range(50):
            record = await server.services.repo.find_session(id=session_id)
            if record is not None and record.state == "waiting":
                break
            await asyncio.sleep(0.1)
        assert record is not None and record.state == "waiting" and record.operator_id is None

        await again.request("set_presence", {"status": "available"})
        assert (await again.next("assignment_offered", 5))["session_id"] == session_id
        await again.request("accept", {"session_id": session_id})
        await customer.next("call_started", 5)
        view = (await again.request("call_view"))["checklist"]
        assert answers(view) == {first: "passed"}  # saved before the disk filled
        await answer_checklist(again, view["items"], otp="failed")
        await again.request(
            "decide", {"session_id": session_id, "outcome": "rejected", "reason_code": "otp_failed"}
        )
        assert (await customer.next("outcome", 5))["outcome"] == "rejected"
        states = [to for _, to, _, _ in await server.services.repo.transitions(session_id)]
        assert states[-5:] == ["in_call", "waiting", "assigned", "in_call", "rejected"]
        assert center.live_view()["operators"][0]["id"] == operator_id
        await asyncio.gather(customer.close(), again.close())


async def test_an_offer_the_disk_refused_is_made_once_there_is_room(
    start_server: StartServer, tmp_path: Path
) -> None:
    """The operator becomes available while nothing can be written: that answers (it
    needs no write), but the offer of the waiting customer, which must be written, is
    not made, and nothing of it is half done (the customer keeps their place, the
    operator stays available); once there is room the offer is made."""
    with small_filesystem(tmp_path / "small", 24) as small:
        server = await start(start_server, small)
        invitation = await server.invite()
        customer = SignalingClient(server.url, "/customer")
        await customer.connect({"token": invitation.token})
        await customer.next("session", 5)
        await customer.request("join_queue")
        await server.operator("gail")
        operator = await console(server, await login(server.url, "gail", PASSWORD))
        await operator.request("set_presence", {"status": "paused"})  # its login's use written

        filler = fill(small)
        reply = await operator.request("set_presence", {"status": "available"})
        assert reply["presence"] == "available"
        with pytest.raises(ProtocolError):
            await operator.next("assignment_offered", 1.5)  # the tick tried, and again
        waiting = server.services.center.snapshot()
        assert [w["session_id"] for w in waiting["waiting"]] == [invitation.session_id]
        assert waiting["operators"]["available"] == 1
        record = await server.services.repo.find_session(id=invitation.session_id)
        assert record is not None and record.state == "waiting"

        filler.unlink()
        offer = await operator.next("assignment_offered", 5)
        assert offer["session_id"] == invitation.session_id
        await operator.request("accept", {"session_id": invitation.session_id})
        await customer.next("call_started", 5)
        [draw] = await server.services.repo.assignments(invitation.session_id)
        assert draw.operator_id == server.services.center.live_view()["operators"][0]["id"]
        await asyncio.gather(customer.close(), operator.close())


@pytest.fixture
async def browser(customer_y4m: Path) -> AsyncIterator[Any]:
    async with chromium(customer_y4m) as launched:
        yield launched


@pytest.mark.browser
async def test_the_console_shows_which_answer_was_not_saved(
    start_server: StartServer, tmp_path: Path, browser: Any
) -> None:
    """In the operator console: a checklist answer the full disk refused stays
    unanswered, marked "not saved", and the message names the item; given again once
    there is room, it is saved."""
    with small_filesystem(tmp_path / "small", 24) as small:
        server = await start(start_server, small)
        await server.operator("hana")
        invitation = await server.invite()
        customer = SignalingClient(server.url, "/customer")
        await customer.connect({"token": invitation.token})
        await customer.next("session", 5)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{server.url}/operator")
        await console_login(page, server.url, "hana")
        await page.wait_for_selector("#toggle-presence:visible")
        await page.click("#toggle-presence")
        await page.wait_for_selector("#presence.available")
        await customer.request("join_queue")
        await page.wait_for_selector("#accept:visible", timeout=15000)
        await page.click("#accept")
        await customer.next("call_started", 5)
        first = "#checklist-items li:has(button[data-answer=passed]) >> nth=0"
        await page.wait_for_selector(first, timeout=10000)
        item = await page.get_attribute(first, "data-item")
        text = await page.text_content(f"#checklist-items li[data-item='{item}'] span")
        assert item and text
        passed = f"#checklist-items li[data-item='{item}'] button[data-answer=passed]"

        filler = fill(small)
        await page.click(passed)
        await page.wait_for_selector(f"#checklist-items li[data-item='{item}'] .unsaved")
        message = await page.text_content("#error") or ""
        assert message.startswith("Not saved") and text.strip() in message, message
        assert await page.get_attribute(f"li[data-item='{item}']", "data-answer") is None
        assert await page.is_visible(passed)  # to be given again

        filler.unlink()
        await page.click(passed)
        await page.wait_for_selector(f"#checklist-items li[data-item='{item}'][data-answer=passed]")
        assert await saved_answers(server, invitation.session_id) == {item: "passed"}
        assert errors == []
        await context.close()
        await customer.close()
