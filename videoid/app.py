"""create_app(config): wires every part; each subsystem starts and stops in its own
cleanup context; state lives in typed AppKeys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import socketio
from aiohttp import web
from aiortc.contrib.media import MediaRelay

from .access import RefusalBudget, access_middleware
from .analysis_pool import AnalysisPool
from .analysis_probes import load_face_models, load_frame_models
from .call_center import CallCenter
from .clock import Clock, SystemClock
from .compliance.http import ComplianceApi
from .compliance.playback import Playback, PlaybackLinks
from .config import Config
from .customer_client.contact_proof import ContactProof
from .customer_client.invitations import Invitation, Invitations
from .customer_client.namespace import CustomerNamespace
from .customer_client.onboarding import Onboarding
from .customer_client.onboarding_http import OnboardingApi
from .customer_client.session_images import SessionImages
from .db import Repository
from .db.process_lock import ProcessLock
from .glibc_malloc import GlibcMalloc
from .http_api import LOOP_MONITOR, HttpApi, errors_middleware
from .loop_monitor import LoopMonitor
from .media.call_media import MediaParts, RecordingStore
from .media.ice_policy import IcePolicy
from .notify import sms_gateway
from .notify.mail import mail_gateway
from .operator_console.accounts import Accounts, generate_password
from .operator_console.accounts_http import AccountsApi
from .operator_console.call_tools import CallTools
from .operator_console.checklist import ChecklistTemplate
from .operator_console.decision_gate import Checklists, DecisionGate
from .operator_console.namespace import OperatorNamespace
from .operator_console.reviews_http import ReviewsApi
from .private_files import make_private
from .recordings.audit_anchors import AuditAnchors
from .recordings.evidence import Evidence, EvidenceKey
from .recordings.retention import Retention
from .recordings.timestamps import LocalTsa, tsa_for
from .services import SERVICES, Services
from .socket_server import SocketServer
from .storage import ObjectStore
from .storage.envelope import key_file
from .storage.objects import check_master_key, personal_data
from .trust.customer_http import SigningApi
from .trust.http import TrustApi
from .trust.service import Trust
from .trust.signature_extension import SignatureExtension
from .trust.signing_flow import ContractSigning
from .trust.token import Pkcs11MasterKey
from .web_security import install as install_web_security

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0
SOCKETS_CLOSE_SECONDS = 5.0
IDLE_CHECK_SECONDS = 5.0
"""How often open consoles are checked for an idle login."""
QUIET_LOGGERS = ("pyhanko", "pyhanko_certvalidator")
"""Libraries whose informational and warning messages name the signer (the certificate's
subject: name and document number): only their errors are logged."""


@dataclass(frozen=True)
class FirstStart:
    username: str
    password: str
    invitation: Invitation


FIRST_START = web.AppKey("first_start", FirstStart)


class SocketNotifier:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def to_customer(self, session_id: str, event: str, data: dict[str, Any]) -> None:
        await self._sio.emit(event, data, room=f"session:{session_id}", namespace="/customer")

    async def to_operator(self, operator_id: int, event: str, data: dict[str, Any]) -> None:
        await self._sio.emit(event, data, room=f"operator:{operator_id}", namespace="/operator")

    async def to_operators(self, event: str, data: dict[str, Any]) -> None:
        await self._sio.emit(event, data, room="operators", namespace="/operator")


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    bootstrap: bool = False,
    on_lock_lost: Callable[[], None] | None = None,
) -> web.Application:
    """The aiohttp application. ``bootstrap`` creates a first supervisor account and an
    invitation when the database has no operator yet (kept in ``app[FIRST_START]``).
    ``on_lock_lost`` is called if another server takes this one's database (``serve``
    stops itself then)."""
    clock = clock or SystemClock()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    refusals = RefusalBudget(
        config.audit.refusals_per_minute, config.audit.refusals_total_per_minute
    )
    app = web.Application(
        middlewares=[
            # outermost: it sees the status errors_middleware answered with
            access_middleware(refusals, lambda request: request.app[SERVICES].repo, clock.now),
            errors_middleware,
        ],
        client_max_size=config.signaling.max_payload_bytes,
    )
    install_web_security(app, config.server)
    sio = SocketServer(
        async_mode="aiohttp",
        max_http_buffer_size=config.signaling.max_payload_bytes,
        logger=False,
        engineio_logger=False,
    )
    sio.attach(app)
    monitor = app[LOOP_MONITOR] = LoopMonitor()

    async def process_lock_ctx(app: web.Application) -> AsyncIterator[None]:
        # one server per database until the cluster's lease (AlreadyServing otherwise)
        make_private(config.data_path)
        lock = await ProcessLock.acquire(config.database_url, on_lost=on_lock_lost)
        try:
            yield
        finally:
            await lock.release()

    app.cleanup_ctx.append(process_lock_ctx)

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        # Each part's closing is registered as soon as the part exists: a start that
        # fails part-way closes what it opened (in reverse order), and a stop closes
        # everything in that same order.
        async with contextlib.AsyncExitStack() as opened:
            await _start_services(app, opened)
            yield

    async def _start_services(app: web.Application, opened: contextlib.AsyncExitStack) -> None:
        # the data directory was made private by process_lock_ctx, which runs first
        repo = await Repository.open(
            config.database_url,
            statement_timeout_seconds=config.database.statement_timeout_seconds,
        )
        opened.push_async_callback(repo.close)
        invitations = Invitations(repo, config)
        steps = invitations.required_steps
        notifier = SocketNotifier(sio)
        base_url = config.base_url()
        objects = ObjectStore.from_config(repo, config)
        close_key = getattr(objects.files.wrapper, "close", None)
        if close_key is not None:  # a token's session
            opened.callback(close_key)
        await check_master_key(repo, objects.files.wrapper)
        repo.protect(personal_data(config, objects.files.wrapper))
        sealed = await repo.seal_plain_rows(clock.now())  # left in clear by older versions
        if any(sealed.values()):
            logger.info("personal data sealed at start-up: %s", sealed)
        accounts = Accounts(
            repo,
            config.operators,
            key=key_file(config.data_path / "keys" / "login.key", create=True),
            wrapper=objects.files.wrapper,  # wraps the staff's TOTP secrets
        )
        opened.push_async_callback(accounts.close)
        pool = AnalysisPool(
            config.onboarding.analysis_workers, config.onboarding.analysis_queue, load_face_models
        )
        opened.push_async_callback(asyncio.to_thread, pool.close)
        live_pool = (
            AnalysisPool(config.live.workers, probe=load_frame_models)
            if config.live.workers > 0
            else None
        )
        match_pool = (
            AnalysisPool(config.live.match_workers, probe=load_face_models)
            if live_pool is not None and config.live.match_workers > 0
            else None
        )
        for extra in (live_pool, match_pool):
            if extra is not None:
                opened.push_async_callback(asyncio.to_thread, extra.close)
        trust = Trust(config, repo, clock, base_url)
        opened.callback(trust.close)
        if isinstance(objects.files.wrapper, Pkcs11MasterKey):  # one token session
            trust.share_token(objects.files.wrapper.token)
        evidence, anchors = evidence_services(config, repo, objects, trust, clock)
        opened.push_async_callback(evidence.close)
        checklists = Checklists(
            repo, clock, ChecklistTemplate.load(config.call.checklist_file), rng
        )
        gate = DecisionGate(config.call, checklists)
        media = MediaParts(
            config,
            clock,
            IcePolicy.from_config(config.media),
            MediaRelay(),
            repo,
            recordings=RecordingStore(config.data_path / "recordings", objects.files.wrapper)
            if config.recording.enabled
            else None,
            live_pool=live_pool,
            match_pool=match_pool,
            reference_photos=SessionImages(repo, objects).reference_photos,
        )
        center = CallCenter(
            repo,
            config,
            notifier,
            clock,
            media,
            gate,
            required_steps=steps,
            evidence_changed=lambda session_id, event: evidence.seal_later(
                session_id, clock.now(), event
            ),
            rng=rng,
        )
        opened.push_async_callback(center.close)
        onboarding = Onboarding(config, repo, center, objects, pool, clock)
        opened.push_async_callback(onboarding.close)
        retention = Retention(
            repo, objects, config.data_path / "recordings", config.retention.years, evidence
        )
        sms = sms_gateway(config)
        onboarding.contacts = ContactProof(config, repo, clock, sms, mail_gateway(config))
        tools = CallTools(
            config,
            repo,
            center,
            objects,
            sms,
            notifier,
            clock,
            checklists,
            gate,
            rng,
        )
        app[SERVICES] = Services(
            config,
            clock,
            repo,
            accounts,
            invitations,
            center,
            sio,
            base_url,
            objects,
            pool,
            onboarding,
            tools,
            sms,
            retention,
            evidence,
            Playback(config.data_path / "recordings", objects.files.wrapper),
            PlaybackLinks(
                key_file(config.data_path / "keys" / "playback.key", create=True),
                config.recording.playback_link_seconds,
            ),
            trust,
            ContractSigning(
                config,
                repo,
                center,
                objects,
                trust,
                sms,
                mail_gateway(config),
                clock,
                config.ca.organization,
            ),
            anchors,
        )
        sio.register_namespace(CustomerNamespace(config, invitations, center, tools, clock))
        operator_namespace = OperatorNamespace(config, accounts, center, tools, clock)
        sio.register_namespace(operator_namespace)
        accounts.revoked = operator_namespace.drop_operator
        await center.recover()
        resealed = await evidence.recover(clock.now())
        if resealed:
            logger.info("evidence: %d sessions sealed again after a stop", len(resealed))
        if config.ca.create_at_start:  # the local CA exists from the first run on
            await trust.ca()
        await trust.reconcile_keys()  # keys left by an issuance a crash cut off (audited)
        if bootstrap and await repo.count_operators() == 0:
            password = generate_password()
            await accounts.add("admin", password, "supervisor", clock.now())
            invitation = await invitations.create(
                "customer@example.org", "+390000000000", clock.now(), base_url
            )
            app[FIRST_START] = FirstStart("admin", password, invitation)
        stopping = asyncio.Event()
        extension = SignatureExtension(config, repo, objects, trust, clock)

        async def extended(session_id: str, at: float) -> None:
            evidence.seal_later(session_id, at, "signature_extended")

        extension.extended = extended
        periodic = [
            asyncio.create_task(job)
            for job in (
                _tick(center, stopping),
                _drop_idle(operator_namespace, stopping),
                _purge(retention, clock, config.retention.purge_every_hours, stopping),
                _anchor(anchors, clock, config.audit.anchor_minutes, stopping),
                _extend(extension, config.signing.extend_every_hours, stopping),
                _trim(config.server.memory_trim_seconds, stopping),
            )
        ]

        async def stop_periodic() -> None:
            # the periodic jobs finish what they are doing (a query cut off mid-way
            # leaves a connection to be torn down) and stop
            stopping.set()
            await asyncio.gather(*periodic)

        opened.push_async_callback(stop_periodic)
        monitor.start()
        opened.push_async_callback(monitor.close)
        warming = [  # the models load in the workers now, not in the first call
            asyncio.create_task(_warm(p))
            for p in (live_pool, match_pool)
            if p is not None and config.live.warm_up
        ]
        for task in warming:
            opened.callback(task.cancel)

    app.cleanup_ctx.append(services_ctx)

    async def close_sockets(app: web.Application) -> None:
        # Open websockets would hold the web server's shutdown for its whole timeout.
        if sio.eio.sockets:
            try:  # a socket whose client vanished mid-send can wait on its queue forever
                async with asyncio.timeout(SOCKETS_CLOSE_SECONDS):
                    await sio.eio.disconnect()
            except TimeoutError:
                logger.warning("sockets did not all close in %.0f s", SOCKETS_CLOSE_SECONDS)
        if sio.eio.service_task_handle is not None:
            await sio.shutdown()

    app.on_shutdown.append(close_sockets)

    app.router.add_routes(HttpApi().routes())
    app.router.add_routes(OnboardingApi().routes())
    app.router.add_routes(ReviewsApi().routes())
    app.router.add_routes(AccountsApi().routes())
    app.router.add_routes(ComplianceApi().routes())
    app.router.add_routes(TrustApi().routes())
    app.router.add_routes(SigningApi().routes())
    return app


def evidence_services(
    config: Config, repo: Repository, objects: ObjectStore, trust: Trust, clock: Clock
) -> tuple[Evidence, AuditAnchors]:
    """The evidence sealer and the audit log's anchors, timestamped by the configured
    TSA (the local CA's by default); every seal anchors the log. Also used by the
    command line."""
    tsa = tsa_for(config.tsa.url, config.tsa.timeout_seconds, LocalTsa(trust.timestamp))
    evidence = Evidence(
        repo,
        objects,
        config.data_path / "recordings",
        EvidenceKey.from_file(config.data_path / "keys" / "evidence.key"),
        tsa,
        clock.now,
    )

    async def keys() -> Any:
        return (await trust.ca()).keys

    anchors = AuditAnchors(repo, keys, tsa)

    async def anchor(now: float) -> None:
        try:
            await anchors.anchor(now, "seal")
        except Exception:  # the seal is made; the periodic anchor catches up
            logger.exception("the audit log could not be anchored after a seal")

    evidence.after_seal = anchor
    return evidence, anchors


async def _warm(pool: AnalysisPool) -> None:
    from .liveness.frame_analysis import warm

    try:
        await pool.warm(warm)
    except Exception:  # a worker that cannot load its models fails its first job loudly
        logger.exception("the analysis workers could not load their models")


async def _pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless told to stop; True when it is time to stop."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _purge(
    retention: Retention, clock: Clock, every_hours: float, stopping: asyncio.Event
) -> None:
    """The scheduled purge at the end of retention (R14)."""
    while not stopping.is_set():
        try:
            reports = await retention.purge_due(clock.now())
            if reports:
                logger.info("retention: %d sessions purged", len(reports))
        except Exception:
            logger.exception("retention: the purge failed; it runs again later")
        if await _pause(stopping, max(60.0, every_hours * 3600)):
            return


async def _anchor(
    anchors: AuditAnchors, clock: Clock, every_minutes: float, stopping: asyncio.Event
) -> None:
    """The audit log's head anchored at start (what was written while the server was
    down) and at least every ``every_minutes`` (when it grew)."""
    while not stopping.is_set():
        try:
            await anchors.anchor(clock.now(), "periodic")
        except Exception:
            logger.exception("audit: the periodic anchor failed; it runs again later")
        if await _pause(stopping, max(1.0, every_minutes * 60)):
            return


async def _extend(
    extension: SignatureExtension, every_hours: float, stopping: asyncio.Event
) -> None:
    """Signed contracts given a new archive timestamp before theirs ages out (PAdES
    B-LTA), at start and every ``every_hours``."""
    while not stopping.is_set():
        try:
            await extension.extend()
        except Exception:
            logger.exception("signatures: the archive timestamp round failed; it runs again later")
        if await _pause(stopping, max(60.0, every_hours * 3600)):
            return


async def _trim(every_seconds: float, stopping: asyncio.Event) -> None:
    """Memory freed by the calls given back every ``every_seconds`` (see glibc_malloc)."""
    malloc = GlibcMalloc()
    if every_seconds <= 0 or not malloc.available:
        return
    while not await _pause(stopping, every_seconds):
        try:
            await asyncio.to_thread(malloc.trim)
        except Exception:
            logger.exception("memory trim failed")


async def _drop_idle(namespace: OperatorNamespace, stopping: asyncio.Event) -> None:
    """Open consoles whose login went unused for ``operators.idle_minutes`` end."""
    while not await _pause(stopping, IDLE_CHECK_SECONDS):
        try:
            await namespace.drop_idle()
        except Exception:
            logger.exception("idle check failed")


async def _tick(center: CallCenter, stopping: asyncio.Event) -> None:
    while not await _pause(stopping, TICK_SECONDS):
        try:
            await center.tick()
        except Exception:
            logger.exception("tick failed")
