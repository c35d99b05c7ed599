"""The ``videoid`` command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from .clock import SystemClock
from .config import Config, load_config
from .errors import VideoidError

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
    from .app import FIRST_START, create_app

    config = _config(args)
    app = create_app(config, bootstrap=True)

    async def announce(app: web.Application) -> None:
        base = config.base_url()
        print(f"videoid is running at {base}", flush=True)
        print(f"  operator console: {base}/operator", flush=True)
        first = app.get(FIRST_START)
        if first is not None:
            print("First start: created a supervisor account (shown only now):", flush=True)
            print(f"  username: {first.username}", flush=True)
            print(f"  password: {first.password}", flush=True)
            print(f"  a customer invitation: {first.invitation.url}", flush=True)
        print("  new invitations: videoid invite --email … --phone …", flush=True)

    app.on_startup.append(announce)
    web.run_app(app, host=config.server.host, port=config.server.port, print=None, access_log=None)


async def _with_services(config: Config, work: Any) -> Any:
    from .customer_client.invitations import Invitations
    from .db import Repository
    from .operator_console.accounts import Accounts

    repo = await Repository.open(config.database_url)
    try:
        return await work(repo, Accounts(repo, config.operators), Invitations(repo, config))
    finally:
        await repo.close()


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


def cmd_bot_customer(args: argparse.Namespace) -> None:
    from .bots.customer_bot import CustomerBot

    bot = CustomerBot(args.invite, args.video)

    async def run() -> None:
        try:
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
        finally:
            await bot.close()

    asyncio.run(run())


def cmd_bot_operator(args: argparse.Namespace) -> None:
    from .bots.operator_bot import OperatorBot

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else args.password
    if not password:
        raise VideoidError("give --password or --password-stdin", code="usage")
    bot = OperatorBot(
        args.server,
        args.username,
        password,
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


def cmd_bench_forwarding(args: argparse.Namespace) -> None:
    from .bench.forwarding import main as bench_main

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

    bot = sub.add_parser("bot", help="protocol bots").add_subparsers(dest="role", required=True)
    p = bot.add_parser("customer", help="follow an invitation through a call")
    p.add_argument("--invite", required=True, help="the invitation link")
    p.add_argument("--video", required=True, help="video file used as the camera")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait at each step")
    p.set_defaults(func=cmd_bot_customer)
    p = bot.add_parser("operator", help="take calls and decide")
    p.add_argument("--server", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password")
    p.add_argument("--password-stdin", action="store_true")
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

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="what", required=True)
    p = bench.add_parser("forwarding", help="calls per core: encoded vs re-encoding forwarding")
    from .bench.forwarding import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_bench_forwarding)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
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
