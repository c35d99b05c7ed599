"""After a restart, the customer's page says what happened (issue 20, item 12): a call
the server's stop interrupted is not silently replaced by "Join the queue"."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoid.session import IdentificationSession

from .conftest import StartServer
from .test_browser_call import chromium

pytestmark = pytest.mark.browser


async def test_the_page_says_the_call_was_interrupted(
    start_server: StartServer, customer_y4m: Path
) -> None:
    server = await start_server()
    data = str(server.services.config.data_path)
    operator_id = await server.operator("ann")
    invitation = await server.invite()
    # what a server killed mid-call leaves in its database
    machine = IdentificationSession(invitation.session_id)
    machine.enter_queue(1.0)
    machine.assign(operator_id, 2.0)
    machine.start_call(operator_id, 3.0)
    await server.services.repo.save_events(
        machine.session_id, machine.pop_events(), state="in_call", ready_state="created",
        operator_id=operator_id,
    )  # fmt: skip
    await server.stop()
    again = await start_server(server={"data_dir": data})
    async with chromium(customer_y4m) as browser:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{again.url}/join#{invitation.token}")
        notice = page.locator("#interrupted")
        await notice.wait_for(state="visible", timeout=15000)
        assert "interrupted" in (await notice.text_content() or "")
        assert await page.is_visible("#join")
        # told once: the page opened again offers the queue without the notice
        await page.reload()
        await page.wait_for_selector("#join:visible", timeout=15000)
        assert await page.is_hidden("#interrupted")
