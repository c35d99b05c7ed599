"""The running app's parts, in one typed AppKey."""

from __future__ import annotations

from dataclasses import dataclass

import socketio
from aiohttp import web

from .call_center import CallCenter
from .clock import Clock
from .config import Config
from .customer_client.invitations import Invitations
from .db import Repository
from .operator_console.accounts import Accounts


@dataclass
class Services:
    """What a running app holds; handlers, tests and the CLI reach the parts through it."""

    config: Config
    clock: Clock
    repo: Repository
    accounts: Accounts
    invitations: Invitations
    center: CallCenter
    sio: socketio.AsyncServer
    base_url: str


SERVICES = web.AppKey("services", Services)
