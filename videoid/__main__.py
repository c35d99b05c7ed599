"""The ``videoid`` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from .clock import SystemClock
from .config import Config, load_config
from .errors import ValidationError, VideoidError

logger = logging.getLogger("videoid")


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, Any]] = {}
    for name in ("host", "port", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides.setdefault("server", {})[name] = value
    if getattr(args, "forwarding", None):
        overrides["media"] = {"forwarding": args.forwarding}
    return load_config(args.config, overrides=overrides)


def cmd_serve(args: argparse.Namespace) -> None:
    from .glibc_malloc import GlibcMalloc

    # the process is the server's alone: large blocks are given back when freed, and
    # its threads share two arenas (set before any thread is started, imports included)
    GlibcMalloc().tune()
    from .app import FIRST_START, create_app

    config = _config(args)
    app = create_app(
        config,
        bootstrap=True,
        # another server took the database (PostgreSQL's lock lost): stop as on SIGTERM
        on_lock_lost=lambda: os.kill(os.getpid(), signal.SIGTERM),
    )

    def announce(_: str) -> None:
        # run_app's "print", called once the sockets listen (not on_startup, which runs
        # before: whoever reads these lines may connect at once)
        base = config.base_url()
        print(f"videoid is running at {base}", flush=True)
        print(f"  operator console: {base}/operator", flush=True)
        print(f"  compliance console: {base}/compliance", flush=True)
        first = app.get(FIRST_START)
        if first is not None:
            print("First start: created a supervisor account (shown only now):", flush=True)
            print(f"  username: {first.username}", flush=True)
            print(f"  password: {first.password}", flush=True)
            print(f"  a customer invitation: {first.invitation.url}", flush=True)
        print("  new invitations: videoid invite --email … --phone …", flush=True)

    async def freeze(app: web.Application) -> None:
        # What start-up made (modules, the configuration, every part) lives as long as
        # the process: kept out of the collector's full passes, which then walk only
        # what calls made (in the soak 17k objects instead of 226k: a full pass, which
        # frees the ended calls' peer connections, stalls the loop 20-80 ms, not 240).
        gc.collect()
        gc.freeze()

    app.on_startup.append(freeze)
    web.run_app(
        app, host=config.server.host, port=config.server.port, print=announce, access_log=None
    )


async def _with_services(config: Config, work: Any) -> Any:
    from .customer_client.invitations import Invitations
    from .db import Repository
    from .operator_console.accounts import Accounts
    from .storage.objects import ObjectStore, personal_data

    repo = await Repository.open(config.database_url)
    wrapper = ObjectStore.from_config(repo, config).files.wrapper
    repo.protect(personal_data(config, wrapper))  # an invitation's contacts are sealed
    accounts = Accounts(repo, config.operators)
    try:
        return await work(repo, accounts, Invitations(repo, config))
    finally:
        await accounts.close()
        await repo.close()
        close_key = getattr(wrapper, "close", None)
        if close_key is not None:  # a token's session
            close_key()


def cmd_invite(args: argparse.Namespace) -> None:
    config = _config(args)

    async def work(repo: Any, accounts: Any, invitations: Any) -> Any:
        return await invitations.create(
            args.email, args.phone, SystemClock().now(), config.base_url()
        )

    invitation = asyncio.run(_with_services(config, work))
    if args.json:
        print(
            json.dumps(
                {
                    "session_id": invitation.session_id,
                    "url": invitation.url,
                    "expires_at": invitation.expires_at,
                }
            )
        )
    else:
        print(invitation.url)


def cmd_operator_add(args: argparse.Namespace) -> None:
    from .operator_console.accounts import generate_password

    config = _config(args)
    generated = False
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("password (empty: generate one): ")
    else:
        password = ""
    if not password:
        password, generated = generate_password(), True

    async def work(repo: Any, accounts: Any, invitations: Any) -> int:
        return int(await accounts.add(args.username, password, args.role, SystemClock().now()))

    operator_id = asyncio.run(_with_services(config, work))
    print(f"added {args.role} {args.username} (id {operator_id})")
    if generated:
        print(f"password: {password}")


def cmd_operator_list(args: argparse.Namespace) -> None:
    from .operator_console.account_admin import AccountAdmin

    async def work(repo: Any, accounts: Any, invitations: Any) -> Any:
        return await AccountAdmin(repo, accounts).list(SystemClock().now())

    rows = asyncio.run(_with_services(_config(args), work))
    if args.json:
        print(json.dumps([dataclasses.asdict(row) for row in rows]))
        return
    for r in rows:
        state = "disabled" if r.disabled else "active"
        factor = f"2fa ({r.recovery_codes_left} recovery codes)" if r.enrolled else "no 2fa"
        print(f"{r.id:>5} {r.username:<24} {r.role:<11} {state:<8} {factor}, {r.logins} logins")


def cmd_operator_manage(args: argparse.Namespace) -> None:
    from .operator_console.account_admin import AccountAdmin

    async def work(repo: Any, accounts: Any, invitations: Any) -> Any:
        admin = AccountAdmin(repo, accounts)
        return await admin.act(
            args.action, await admin.find(username=args.username), "system", SystemClock().now()
        )

    password = asyncio.run(_with_services(_config(args), work))
    print(f"{args.action}: {args.username} done")
    if password is not None:
        print(f"password: {password}")


def cmd_bot_customer(args: argparse.Namespace) -> None:
    from .bots.customer_bot import CustomerBot, OnboardingInput

    onboarding = None
    if args.document or args.selfie:
        if not (args.document and args.selfie):
            raise VideoidError("give both --document and --selfie", code="usage")
        onboarding = OnboardingInput(
            document_front=Path(args.document),
            document_back=Path(args.document_back) if args.document_back else None,
            selfie=Path(args.selfie),
            country=args.country,
            document_type=args.document_type,
            language=args.language,
        )
    bot = CustomerBot(
        args.invite,
        args.video,
        onboarding=onboarding,
        on_step=lambda name, outcome: print(f"{name}: {outcome}", flush=True),
        sms_outbox=Path(args.sms_outbox),
    )

    async def run() -> None:
        try:
            await bot.onboard()
            session = await bot.connect()
            print(f"connected: session {session['session_id']} ({session['state']})", flush=True)
            reply = await bot.join_queue()
            print(
                f"queued: position {reply.get('position')}, "
                f"about {reply.get('estimated_wait_seconds')} s",
                flush=True,
            )
            await bot.wait_call(args.timeout)
            print("call started", flush=True)
            await bot.connect_media()
            outcome = await bot.wait_outcome(args.timeout)
            r = bot.result
            print(
                f"outcome: {outcome} (received {r.video_frames_received} video and "
                f"{r.audio_frames_received} audio frames)",
                flush=True,
            )
            if outcome == "approved" and args.pin:
                await bot.signaling.close()
                save = Path(args.save_contract) if args.save_contract else None
                await bot.certificate_and_signature(args.pin, save)
                if save is not None:
                    print(f"signed contract saved to {save}", flush=True)
        finally:
            await bot.close()

    asyncio.run(run())


def cmd_bot_operator(args: argparse.Namespace) -> None:
    from .bots.operator_bot import Authenticator, OperatorBot

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else args.password
    if not password:
        raise VideoidError("give --password or --password-stdin", code="usage")
    bot = OperatorBot(
        args.server,
        args.username,
        password,
        authenticator=Authenticator(Path(args.totp_file)) if args.totp_file else None,
        video=args.video,
        decision={"approve": "approved", "reject": "rejected", "suspend": "suspended"}[
            args.decision
        ],
        watch_seconds=args.watch_seconds,
    )

    async def run() -> None:
        try:
            await bot.connect()
            await bot.set_presence("available")
            print("available; waiting for customers", flush=True)
            for _ in range(args.calls):
                result = await bot.handle_one(args.timeout)
                print(
                    f"session {result.session_id}: {result.decision} (received "
                    f"{result.video_frames_received} video and "
                    f"{result.audio_frames_received} audio frames)",
                    flush=True,
                )
        finally:
            await bot.signaling.close()

    asyncio.run(run())


def cmd_make_face_video(args: argparse.Namespace) -> None:
    from .bots.face_video import make_face_video

    print(make_face_video(args.photo, args.out, seconds=args.seconds))


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ValidationError(f"{path}: {err.strerror}", code="file_unreadable") from err


def cmd_mrz(args: argparse.Namespace) -> None:
    import datetime

    from .documents.analysis import mrz_file

    today = datetime.date.today()
    data = mrz_file(_read_file(args.image), today)
    if args.json:
        print(json.dumps(data.to_json(today), indent=2))
    else:
        for line in data.lines:
            print(line)
        print()
        for key in (
            "format",
            "document_code",
            "issuing_state",
            "document_number",
            "surname",
            "given_names",
            "nationality",
            "date_of_birth",
            "sex",
            "date_of_expiry",
            "optional_data",
        ):
            print(f"{key.replace('_', ' '):<16} {getattr(data, key)}")
        print()
        for check in data.checks:
            print(
                f"check {check.name:<16} {'ok' if check.ok else 'FAILED'}"
                f" (printed {check.printed}, computed {check.expected})"
            )
        print()
        print(f"expired          {'yes' if data.expired(today) else 'no'}")
        print(f"valid            {'yes' if data.valid(today) else 'NO'}")
    if not data.valid(today):
        sys.exit(1)


def cmd_face_match(args: argparse.Namespace) -> None:
    from .documents.analysis import face_match_files

    result = face_match_files(_read_file(args.image_a), _read_file(args.image_b), args.threshold)
    if args.json:
        print(json.dumps(result, indent=2))
    elif "error" in result:
        print(result["error"])
    else:
        print(f"distance   {result['distance']:.4f}")
        print(f"threshold  {result['threshold']}")
        print(f"decision   {'same person' if result['match'] else 'different people'}")
    if "error" in result:
        sys.exit(2)
    if not result["match"]:
        sys.exit(1)


def cmd_make_document(args: argparse.Namespace) -> None:
    import random

    from .bench.documents import make_document, phone_photo, png_bytes, portrait_from, render

    rng = random.Random(args.seed)
    doc = make_document(rng, args.format)
    side, other = render(doc, portrait_from(args.portrait), rng)
    pages = [("zone", side)] + ([("front", other)] if other is not None else [])
    for name, image in pages:
        out = f"{args.out}-{name}.{'jpg' if args.photo else 'png'}"
        with open(out, "wb") as f:
            f.write(phone_photo(image, rng) if args.photo else png_bytes(image))
        print(out)
    print("\n".join(doc.lines))


def cmd_bench_mrz(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .bench.mrz_bench import run

    photos = [Path(args.photos) / n for n in ("obama.jpg", "biden.jpg")]
    run(
        args.count,
        args.seed,
        not args.no_baseline,
        Path(args.data_dir),
        photos,
        args.verbose_errors,
    )


def cmd_bench_face_match(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .bench.face_bench import run

    run(Path(args.photos), Path(args.data_dir), args.rounds)


async def _with_evidence(config: Config, work: Any, *, anchor_after: bool = True) -> Any:
    """Run ``work(repo, objects, trust, evidence, anchors)`` as the server would have
    them: seals timestamped by the configured TSA, each anchoring the audit log; and
    (``anchor_after``) the log anchored at the end, so that what the command wrote is
    covered even while no server runs."""
    from .app import evidence_services
    from .db import Repository
    from .storage import ObjectStore
    from .storage.objects import personal_data
    from .trust.service import Trust
    from .trust.token import Pkcs11MasterKey

    clock = SystemClock()
    repo = await Repository.open(config.database_url)
    objects = ObjectStore.from_config(repo, config)
    repo.protect(personal_data(config, objects.files.wrapper))
    trust = Trust(config, repo, clock, config.base_url())
    if isinstance(objects.files.wrapper, Pkcs11MasterKey):  # one token session
        trust.share_token(objects.files.wrapper.token)
    evidence, anchors = evidence_services(config, repo, objects, trust, clock)
    try:
        return await work(repo, objects, trust, evidence, anchors)
    finally:
        await evidence.close()
        if anchor_after:
            try:
                await anchors.anchor(clock.now(), "command")
            except VideoidError as err:
                print(f"warning: the audit log was not anchored: {err.message}", file=sys.stderr)
        await repo.close()
        trust.close()


def cmd_evidence_export(args: argparse.Namespace) -> None:
    config = _config(args)

    async def work(repo: Any, objects: Any, trust: Any, evidence: Any, anchors: Any) -> Any:
        body = await evidence.export(args.session, Path(args.out), "cli", SystemClock().now())
        return body, evidence.key.fingerprint

    body, fingerprint = asyncio.run(_with_evidence(config, work))
    print(
        f"wrote {args.out}: {len(body['items'])} items, seal {body.get('seq', 1)} "
        f"({body.get('event', 'sealed')}) at {body['sealed_at']}; key fingerprint {fingerprint}"
    )


def cmd_evidence_key(args: argparse.Namespace) -> None:
    from .recordings.evidence import EvidenceKey

    config = _config(args)
    key = EvidenceKey.from_file(config.data_path / "keys" / "evidence.key")
    if args.out:
        Path(args.out).write_bytes(key.public_pem)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(key.public_pem.decode())
    print(f"fingerprint (SHA-256 of the public key): {key.fingerprint}")


def cmd_evidence_verify(args: argparse.Namespace) -> None:
    import datetime

    from cryptography import x509

    from .recordings.evidence_package import verify_package

    trusted = Path(args.trusted_key).read_bytes() if args.trusted_key else None
    roots = [x509.load_pem_x509_certificate(Path(p).read_bytes()) for p in args.tsa_root or []]
    verdict = verify_package(
        Path(args.file), trusted, args.fingerprint, roots or None, args.allow_untimestamped
    )
    if verdict.fingerprint:
        print(f"checked against the key with fingerprint {verdict.fingerprint}")
    for seal in verdict.seals:
        stamp = seal["timestamp"]
        when = (
            datetime.datetime.fromtimestamp(stamp["at"], datetime.UTC).strftime(
                "%Y-%m-%d %H:%M:%S UTC"
            )
            if stamp and stamp["at"] is not None
            else "no timestamp"
        )
        trusted_tsa = " (TSA chained to a trusted root)" if stamp and stamp["chained"] else ""
        print(f"  seal {seal['seq']}: {seal['event']}, timestamped {when}{trusted_tsa}")
    for note in verdict.notes:
        print(f"  note: {note}")
    if verdict.ok:
        print(
            f"evidence verified: session {verdict.session_id}, {verdict.items} items, "
            f"{len(verdict.seals)} seals"
        )
        return
    print("evidence NOT verified:")
    for problem in verdict.problems:
        print(f"  - {problem}")
    sys.exit(1)


def cmd_retention(args: argparse.Namespace) -> None:
    from .recordings.retention import Retention

    config = _config(args)

    async def work(repo: Any, objects: Any, trust: Any, evidence: Any, anchors: Any) -> None:
        retention = Retention(
            repo, objects, config.data_path / "recordings", config.retention.years, evidence
        )
        now = SystemClock().now()
        if args.what == "hold":
            await retention.hold(args.session, args.reason, "cli", now)
            print(f"session {args.session}: under legal hold")
        elif args.what == "release":
            done = await retention.release(args.session, "cli", now)
            print(f"session {args.session}: " + ("hold released" if done else "no hold"))
        else:
            due = await retention.due(now)
            print(f"{len(due)} sessions past {retention.years:g} years of retention")
            if not args.dry_run:
                for session_id in due:
                    report = await retention.purge(session_id, now)
                    print(
                        f"  {session_id}: {report.objects} objects and "
                        f"{report.recordings} recordings destroyed"
                    )

    asyncio.run(_with_evidence(config, work))


def cmd_cert(args: argparse.Namespace) -> None:
    import base64
    import datetime
    import textwrap

    config = _config(args)

    def when(at: float | None) -> str:
        if at is None:
            return "-"
        return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")

    async def work(repo: Any, objects: Any, trust: Any, evidence: Any, anchors: Any) -> None:
        if args.what == "list":
            records = await repo.certificates()
            if args.json:
                print(json.dumps([trust.describe(r) for r in records], indent=1))
                return
            for r in records:
                print(
                    f"{r.serial:<34} {r.kind:<9} {r.status:<8} until "
                    f"{when(r.not_after)}  {r.subject}"
                )
            return
        record = await repo.find_certificate(args.serial.lower())
        if record is None:
            raise VideoidError("no such certificate", code="certificate_not_found")
        if args.what == "revoke":
            try:
                record = await trust.revoke(record.serial, args.reason, "cli")
            finally:  # revoked even if its key could not be destroyed: seal it
                found = await repo.find_certificate(record.serial)
                if found is not None and found.status == "revoked" and found.session_id:
                    await evidence.reseal(found.session_id, SystemClock().now(), "revoked")
            print(
                f"certificate {record.serial} revoked ({args.reason}) at {when(record.revoked_at)}"
            )
            return
        info = trust.describe(record)
        if args.json:
            print(json.dumps(info, indent=1))
            return
        for key, value in info.items():
            shown = when(value) if key in ("not_before", "not_after", "revoked_at") else value
            print(f"{key:<18} {shown}")
        pem = base64.b64encode(record.der).decode()
        print("-----BEGIN CERTIFICATE-----")
        print("\n".join(textwrap.wrap(pem, 64)))
        print("-----END CERTIFICATE-----")

    asyncio.run(_with_evidence(config, work, anchor_after=args.what == "revoke"))


def cmd_signatures_extend(args: argparse.Namespace) -> None:
    from .trust.signature_extension import SignatureExtension

    config = _config(args)

    async def work(repo: Any, objects: Any, trust: Any, evidence: Any, anchors: Any) -> None:
        extension = SignatureExtension(config, repo, objects, trust, SystemClock())

        async def sealed(session_id: str, at: float) -> None:
            await evidence.reseal(session_id, at, "signature_extended")  # evidence too

        extension.extended = sealed
        done = await extension.extend(force=args.force, session_id=args.session)
        for d in done:
            print(f"{d.session_id}: archive timestamp {d.document_timestamps}, {d.sha256}")
        print(f"{len(done)} contract(s) extended")

    asyncio.run(_with_evidence(config, work))


def cmd_audit_verify(args: argparse.Namespace) -> None:
    from cryptography.hazmat.primitives import serialization

    from .recordings.audit_anchors import check_anchors, describe
    from .recordings.audit_chain import verify

    config = _config(args)
    checkpoint = None
    if args.checkpoint:
        seq, _, digest = args.checkpoint.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise VideoidError("--checkpoint is SEQ:HASH (64 hex digits)", code="usage")
        checkpoint = (int(seq), digest)
    pinned = None
    if args.key:  # the auditor's own copy of the anchor key: no token needed
        pinned = serialization.load_pem_public_key(Path(args.key).read_bytes()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    async def work(repo: Any, objects: Any, trust: Any, evidence: Any, anchors: Any) -> Any:
        entries = await repo.audit_entries()
        chain = verify(entries, await repo.audit_details(), checkpoint)
        key = pinned if pinned is not None else await anchors.existing_public_key()
        anchored = check_anchors(
            entries,
            await repo.anchors(),
            key,
            now=SystemClock().now(),
            # the server anchors every anchor_minutes; twice that and five minutes more
            max_unanchored_seconds=2 * config.audit.anchor_minutes * 60 + 300,
        )
        return chain, anchored

    chain, anchored = asyncio.run(_with_evidence(config, work, anchor_after=False))
    ok = chain.ok and anchored.ok
    if args.json:
        print(json.dumps({**chain.__dict__, "ok": ok, "anchors": describe(anchored)}))
    else:
        # the anchors first: an edit with the chain recomputed passes the chain alone
        if not anchored.ok:
            print(f"audit log does NOT match its anchors: {anchored.problem}")
        if not chain.ok:
            print(f"audit log BROKEN at entry {chain.at_seq}: {chain.problem}")
        if ok:
            print(
                f"audit log verified: {chain.entries} entries, {chain.erased} with their "
                f"details erased by a purge; head {chain.entries}:{chain.head}; "
                f"{anchored.anchors} anchors, the last at entry {anchored.matched_through}"
            )
        for note in anchored.notes:
            print(f"  note: {note}")
    if not ok:
        sys.exit(1)


def cmd_audit_key(args: argparse.Namespace) -> None:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    config = _config(args)

    async def work(repo: Any, objects: Any, trust: Any, evidence: Any, anchors: Any) -> bytes:
        return bytes(await anchors.public_key())

    der = asyncio.run(_with_evidence(config, work, anchor_after=False))
    pem = serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if args.out:
        Path(args.out).write_bytes(pem)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(pem.decode())
    print(f"fingerprint (SHA-256 of the public key): {hashlib.sha256(der).hexdigest()}")


def cmd_audit_anchor(args: argparse.Namespace) -> None:
    config = _config(args)

    async def work(repo: Any, objects: Any, trust: Any, evidence: Any, anchors: Any) -> Any:
        return await anchors.anchor(SystemClock().now(), "manual")

    anchor = asyncio.run(_with_evidence(config, work, anchor_after=False))
    if anchor is None:
        print("the audit log's head is already anchored")
    else:
        print(f"anchored entry {anchor.seq} ({anchor.hash})")


def cmd_bench_live(args: argparse.Namespace) -> None:
    from .bench.live_bench import main as bench_main

    bench_main(args)


def cmd_bench_recording(args: argparse.Namespace) -> None:
    from .bench.recording_bench import main as bench_main

    bench_main(args)


def cmd_bench_signing(args: argparse.Namespace) -> None:
    from .bench.signing_bench import main as bench_main

    bench_main(args)


def cmd_bench_forwarding(args: argparse.Namespace) -> None:
    from .bench.forwarding import main as bench_main

    bench_main(args)


def cmd_bench_queue(args: argparse.Namespace) -> None:
    from .bench.queue_bench import main as bench_main

    bench_main(args)


def cmd_bench_abuse(args: argparse.Namespace) -> None:
    from .bench.abuse_bench import main as bench_main

    bench_main(args)


def cmd_bench_soak(args: argparse.Namespace) -> None:
    from .bench.soak_bench import main as bench_main

    bench_main(args)


def cmd_bench_search(args: argparse.Namespace) -> None:
    from .bench.search_bench import main as bench_main

    bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoid", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="TOML configuration file (else $VIDEOID_CONFIG)")
        p.add_argument("--data-dir", dest="data_dir", help="data directory (default var)")
        return p

    p = with_config(sub.add_parser("serve", help="run the server"))
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--forwarding", choices=("encoded", "reencode"))
    p.set_defaults(func=cmd_serve)

    p = with_config(sub.add_parser("invite", help="create a session and print its link"))
    p.add_argument("--host", help="as given to serve, for the link")
    p.add_argument("--port", type=int, help="as given to serve, for the link")
    p.add_argument("--email", required=True)
    p.add_argument("--phone", required=True, help="international format, e.g. +393471234567")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_invite)

    op = sub.add_parser("operator", help="manage operator accounts").add_subparsers(
        dest="action", required=True
    )
    p = with_config(op.add_parser("add", help="add an account"))
    p.add_argument("--username", required=True)
    p.add_argument("--role", required=True, choices=("operator", "supervisor", "compliance"))
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (else prompt or generate)",
    )
    p.set_defaults(func=cmd_operator_add)
    p = with_config(op.add_parser("list", help="list the accounts"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_operator_list)
    for action, text in (
        ("disable", "disable an account (its logins end)"),
        ("enable", "enable a disabled account"),
        ("reset-password", "give an account a new generated password (its logins end)"),
        ("reset-2fa", "forget an account's second factor (enrolled again at its next login)"),
        ("revoke-logins", "end every login of an account"),
    ):
        p = with_config(op.add_parser(action, help=text))
        p.add_argument("--username", required=True)
        p.set_defaults(func=cmd_operator_manage)

    bot = sub.add_parser("bot", help="protocol bots").add_subparsers(dest="role", required=True)
    p = bot.add_parser("customer", help="follow an invitation through a call")
    p.add_argument("--invite", required=True, help="the invitation link")
    p.add_argument("--video", required=True, help="video file used as the camera")
    p.add_argument("--document", help="photo of the document's front (a passport's photo page)")
    p.add_argument("--document-back", help="photo of the back of an identity card or permit")
    p.add_argument("--selfie", help="the selfie's photo")
    p.add_argument("--country", help="issuing country, alpha-3 (default: read from the zone)")
    p.add_argument(
        "--document-type",
        choices=("passport", "id_card", "residence_permit"),
        help="default: passport without --document-back, else id_card",
    )
    p.add_argument("--language", choices=("en", "it", "ro", "pl"), default="en")
    p.add_argument(
        "--sms-outbox",
        default="var/outbox/sms.jsonl",
        help="the server's development SMS outbox, where the bot reads its code from",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait at each step")
    p.add_argument(
        "--pin", help="after an approval, get the certificate and sign with this PIN (6-8 digits)"
    )
    p.add_argument("--save-contract", help="where to save the signed contract (PDF)")
    p.set_defaults(func=cmd_bot_customer)
    p = bot.add_parser("operator", help="take calls and decide")
    p.add_argument("--server", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument(
        "--totp-file",
        help="where the bot keeps the account's TOTP secret (enrolled at its first login)",
    )
    p.add_argument("--video", help="video file used as the camera (default: none)")
    p.add_argument("--decision", choices=("approve", "reject", "suspend"), default="approve")
    p.add_argument("--calls", type=int, default=1, help="how many calls to take")
    p.add_argument("--watch-seconds", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.set_defaults(func=cmd_bot_operator)

    p = sub.add_parser("make-face-video", help="make a camera video from a photo of a face")
    p.add_argument("photo")
    p.add_argument("out", help=".y4m (Chromium's fake camera), .webm or .mkv")
    p.add_argument("--seconds", type=float, default=4.0)
    p.set_defaults(func=cmd_make_face_video)

    p = sub.add_parser("mrz", help="read the machine readable zone of a document photo")
    p.add_argument("image")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_mrz)

    p = sub.add_parser("face-match", help="do two photos show the same person?")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--threshold", type=float, default=0.6)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_face_match)

    p = sub.add_parser("make-document", help="draw a synthetic test document (fictitious)")
    p.add_argument("portrait", help="photo of a face for the portrait")
    p.add_argument("out", help="output prefix: OUT-zone.png and, for TD1, OUT-front.png")
    p.add_argument("--format", choices=("TD1", "TD3"), default="TD1")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--photo", action="store_true", help="as a phone photo (JPEG)")
    p.set_defaults(func=cmd_make_document)

    assets = "var/test-assets/face_recognition"
    evidence = sub.add_parser("evidence", help="evidence packages").add_subparsers(
        dest="what", required=True
    )
    p = with_config(evidence.add_parser("export", help="write a session's evidence package"))
    p.add_argument("session")
    p.add_argument("--out", required=True, help="the zip to write")
    p.set_defaults(func=cmd_evidence_export)
    p = evidence.add_parser("verify", help="check a package offline; exit 1 naming what fails")
    p.add_argument("file")
    trusted = p.add_mutually_exclusive_group(required=True)
    trusted.add_argument("--trusted-key", help="the provider's evidence public key (PEM)")
    trusted.add_argument(
        "--fingerprint", help="the SHA-256 fingerprint of the provider's evidence key"
    )
    p.add_argument(
        "--tsa-root",
        action="append",
        help="a root certificate (PEM) the seals' timestamps must chain to (repeatable)",
    )
    p.add_argument(
        "--allow-untimestamped",
        action="store_true",
        help="accept seals the TSA could not timestamp (their time rests on the key alone)",
    )
    p.set_defaults(func=cmd_evidence_verify)
    p = with_config(evidence.add_parser("key", help="the provider's evidence public key"))
    p.add_argument("--out", help="write the PEM here instead of printing it")
    p.set_defaults(func=cmd_evidence_key)
    retention = sub.add_parser("retention", help="legal holds and the purge").add_subparsers(
        dest="what", required=True
    )
    p = with_config(retention.add_parser("hold", help="keep a session past its retention"))
    p.add_argument("session")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_retention)
    p = with_config(retention.add_parser("release", help="lift a legal hold"))
    p.add_argument("session")
    p.set_defaults(func=cmd_retention)
    p = with_config(retention.add_parser("purge", help="destroy what is past retention now"))
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_retention)
    cert = sub.add_parser("cert", help="the local CA's certificates").add_subparsers(
        dest="what", required=True
    )
    p = with_config(cert.add_parser("list", help="every certificate, the CA's and customers'"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cert)
    p = with_config(cert.add_parser("show", help="one certificate, with its PEM"))
    p.add_argument("serial")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cert)
    p = with_config(cert.add_parser("revoke", help="revoke a customer's certificate"))
    p.add_argument("serial")
    p.add_argument("--reason", required=True, help="e.g. key_compromise, privilege_withdrawn")
    p.set_defaults(func=cmd_cert)
    signatures = sub.add_parser("signatures", help="signed contracts").add_subparsers(
        dest="what", required=True
    )
    p = with_config(
        signatures.add_parser("extend", help="add archive timestamps where due (PAdES B-LTA)")
    )
    p.add_argument("--force", action="store_true", help="extend every contract, due or not")
    p.add_argument("--session", help="only this session's contract")
    p.set_defaults(func=cmd_signatures_extend)
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="what", required=True)
    p = with_config(audit.add_parser("verify", help="check the audit chain; exit 1 if broken"))
    p.add_argument("--checkpoint", help="SEQ:HASH of a head kept elsewhere (detects a cut)")
    p.add_argument("--key", help="the anchor key (PEM, from `audit key`) instead of the token's")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit_verify)
    p = with_config(audit.add_parser("anchor", help="sign and timestamp the log's head now"))
    p.set_defaults(func=cmd_audit_anchor)
    p = with_config(audit.add_parser("key", help="the anchor key's public half (PEM)"))
    p.add_argument("--out", help="write the PEM here instead of printing it")
    p.set_defaults(func=cmd_audit_key)
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="what", required=True)
    p = bench.add_parser("mrz", help="MRZ reading: ours against plain passporteye")
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--photos", default=assets, help="face photos for the portraits")
    p.add_argument("--data-dir", default="var", help="where generated photos are cached")
    p.add_argument("--verbose-errors", action="store_true", help="list every wrong field")
    p.set_defaults(func=cmd_bench_mrz)
    p = bench.add_parser("face-match", help="face match: ours against face_recognition's defaults")
    p.add_argument("--photos", default=assets)
    p.add_argument("--data-dir", default="var")
    p.add_argument("--rounds", type=int, default=3)
    p.set_defaults(func=cmd_bench_face_match)
    p = bench.add_parser("live", help="live analysis: cost per call, signal delay, loop lag")
    from .bench.live_bench import add_arguments as add_live_arguments

    add_live_arguments(p)
    p.set_defaults(func=cmd_bench_live)
    p = bench.add_parser(
        "recording", help="recording's cost: packets passed through vs aiortc's MediaRecorder"
    )
    from .bench.recording_bench import add_arguments as add_recording_arguments

    add_recording_arguments(p)
    p.set_defaults(func=cmd_bench_recording)
    p = bench.add_parser("signing", help="key and certificate issuance, contract signing")
    from .bench.signing_bench import add_arguments as add_signing_arguments

    add_signing_arguments(p)
    p.set_defaults(func=cmd_bench_signing)
    p = bench.add_parser("forwarding", help="calls per core: encoded vs re-encoding forwarding")
    from .bench.forwarding import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_bench_forwarding)
    p = bench.add_parser("search", help="compliance search: p50/p95 per filter over many sessions")
    from .bench.search_bench import add_arguments as add_search_arguments

    add_search_arguments(p)
    p.set_defaults(func=cmd_bench_search)
    p = bench.add_parser("abuse", help="floods: what they cost another user and the server")
    from .bench.abuse_bench import add_arguments as add_abuse_arguments

    add_abuse_arguments(p)
    p.set_defaults(func=cmd_bench_abuse)
    p = bench.add_parser("queue", help="queue estimates against real waits, messages per customer")
    from .bench.queue_bench import add_arguments as add_queue_arguments

    add_queue_arguments(p)
    p.set_defaults(func=cmd_bench_queue)
    p = bench.add_parser("soak", help="memory over time while customers go through the whole flow")
    from .bench.soak_bench import add_arguments as add_soak_arguments

    add_soak_arguments(p)
    p.set_defaults(func=cmd_bench_soak)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    # every file a command or the server writes (database, keys, objects, recordings,
    # outboxes) is its owner's alone, whatever umask it was started with
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("aioice", "aiortc", "socketio", "engineio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args.func(args)
    except VideoidError as err:
        print(f"error ({err.code}): {err.message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
