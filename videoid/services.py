"""The running app's parts, in one typed AppKey."""

from __future__ import annotations

from dataclasses import dataclass

import socketio
from aiohttp import web

from .analysis_pool import AnalysisPool
from .call_center import CallCenter
from .clock import Clock
from .compliance.playback import Playback, PlaybackLinks
from .config import Config
from .customer_client.invitations import Invitations
from .customer_client.onboarding import Onboarding
from .db import Repository
from .notify import SmsGateway
from .operator_console.accounts import Accounts
from .operator_console.call_tools import CallTools
from .recordings.audit_anchors import AuditAnchors
from .recordings.evidence import Evidence
from .recordings.retention import Retention
from .storage import ObjectStore
from .trust.service import Trust
from .trust.signing_flow import ContractSigning


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
    objects: ObjectStore
    pool: AnalysisPool
    onboarding: Onboarding
    tools: CallTools
    sms: SmsGateway
    retention: Retention
    evidence: Evidence
    playback: Playback
    links: PlaybackLinks
    trust: Trust
    signing: ContractSigning
    anchors: AuditAnchors


SERVICES = web.AppKey("services", Services)
