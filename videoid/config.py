"""One frozen configuration tree, loaded once at start from a TOML file and the environment.

Unknown sections and keys are rejected with a message naming them. Environment
variables override the file: ``VIDEOID_<SECTION>_<KEY>`` (for example
``VIDEOID_DATABASE_URL`` or ``VIDEOID_SERVER_PORT``). Every default suits one machine.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 8080
    """TCP port to listen on (0 picks a free one)."""
    public_url: str = ""
    """Base URL printed in invitation links; derived from host and port when empty."""
    data_dir: str = "var"
    """Directory for the SQLite file and stored files."""
    secure_cookies: bool = False
    """Mark cookies Secure (set this behind HTTPS)."""
    min_free_mb: int = 100
    """Free space under which ``/api/health`` reports the data directory's storage as
    failing (``low``; ``full`` when nothing is left)."""
    memory_trim_seconds: float = 60.0
    """How often the server gives the memory its calls freed back to the system
    (glibc's ``malloc_trim``; without it the resident memory keeps growing with the
    calls taken). 0 never."""


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""
    """SQLAlchemy async URL; empty means a SQLite file in the data directory.
    PostgreSQL: ``postgresql+asyncpg://user@host/db``."""
    statement_timeout_seconds: float = 30.0
    """PostgreSQL: a statement running longer is cancelled (``storage_error``) instead
    of holding its request, and the connection it holds, without end; 0: none. The
    migrations at start have no limit."""


@dataclass(frozen=True)
class InvitationsConfig:
    ttl_hours: float = 72.0
    """How long an invitation link stays valid."""


@dataclass(frozen=True)
class OperatorsConfig:
    login_ttl_hours: float = 12.0
    """How long an operator's login lasts."""
    offer_timeout_seconds: float = 30.0
    """How long an assigned operator has to accept before the customer is offered again."""
    max_failed_logins: int = 5
    """Login attempts for one username (known or not) evaluated in a row; after them each
    further attempt waits ``login_delay_seconds``, doubling up to ``lockout_minutes``.
    A successful login gives its attempt back; attempts are forgotten after a day."""
    lockout_minutes: float = 15.0
    """The longest wait between evaluated login attempts (no account is ever locked)."""
    read_grace_seconds: float = 900.0
    """How long after a session's decision the operator who held it may still read its
    record and evidence; other operators never may (supervisors and compliance do)."""
    login_delay_seconds: float = 30.0
    """The first wait after ``max_failed_logins`` (or ``address_failed_logins``)."""
    address_failed_logins: int = 30
    """The same allowance for one client address (IPv6: its /64), whatever the username."""
    hash_workers: int = 2
    """Threads hashing passwords (Argon2id, 46 MiB and about 50 ms of one core each)."""
    hash_queue: int = 32
    """Logins waiting for a hashing thread at most; more are refused with ``server_busy``."""
    idle_minutes: float = 15.0
    """A login unused this long ends (``login_expired``); 0: no idle timeout."""
    reauth_minutes: float = 10.0
    """A decision (and account management) needs a second-factor proof of the login at
    most this old; otherwise ``reauthentication_required`` until a code is given."""
    totp_issuer: str = "videoid"
    """The issuer authenticator apps show beside the account's name."""


@dataclass(frozen=True)
class QueueConfig:
    backend: Literal["memory"] = "memory"
    """Where the waiting room lives (the Redis/PostgreSQL backend comes with scale-out)."""
    initial_handle_seconds: float = 300.0
    """Estimated call length used for waiting-time estimates until calls are measured."""


@dataclass(frozen=True)
class MediaConfig:
    forwarding: Literal["encoded", "reencode"] = "encoded"
    """``encoded`` forwards VP8/Opus frames as received; ``reencode`` decodes and
    re-encodes them (aiortc MediaRelay), kept for comparison."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs handed to clients and used by the server's peers."""
    max_sdp_bytes: int = 65536
    """Largest session description accepted."""
    announced_addresses: tuple[str, ...] = ()
    """The only addresses the server's peers offer (and bind): each ``ADDRESS``, or
    ``PUBLIC/PRIVATE`` behind a 1:1 NAT (bound on PRIVATE, offered as PUBLIC, like
    coturn's ``external-ip``). Empty: every address of the machine but loopback."""
    allow_private_peers: bool = False
    """Let the server's ICE agents check candidates that name loopback, link-local,
    private (RFC 1918, ULA, shared) or mDNS addresses. Off, a customer cannot make the
    server send to its internal network; customers still connect through the checks
    they send (peer-reflexive). On only where customers share the server's network
    (a one-machine or LAN trial)."""
    turn_urls: tuple[str, ...] = ()
    """TURN URLs (``turn:host:3478?transport=udp``) given to clients with time-limited
    credentials (coturn ``use-auth-secret``); needs ``turn_secret`` or its file."""
    turn_secret: str = field(default="", repr=False)
    """The secret shared with the TURN server (coturn ``static-auth-secret``)."""
    turn_secret_file: str = ""
    """A file holding that secret (read at start; preferred to ``turn_secret``)."""
    turn_ttl_seconds: float = 3600.0
    """How long a TURN credential is valid; it must outlast a call."""
    force_relay: bool = False
    """Customers' pages and apps are told to connect through TURN only
    (``iceTransportPolicy: "relay"``), for networks that allow nothing else and so that
    their media does not reveal their own addresses to the media path. A policy for
    well-behaved clients, not a barrier: a client that ignores it can still reach the
    server directly. Needs ``turn_urls``."""

    def __post_init__(self) -> None:
        from .media.ice_policy import AnnouncedAddress  # the rules live with the policy

        for entry in self.announced_addresses:
            AnnouncedAddress.parse(entry)
        for url in self.turn_urls:
            if not url.startswith(("turn:", "turns:")):
                raise ConfigError(f"media.turn_urls: {url!r} is not a turn: or turns: URL")
        if self.turn_urls and not (self.turn_secret or self.turn_secret_file):
            raise ConfigError("media.turn_urls needs media.turn_secret or turn_secret_file")
        if self.force_relay and not self.turn_urls:
            raise ConfigError("media.force_relay needs media.turn_urls")


@dataclass(frozen=True)
class SignalingConfig:
    events_per_second: float = 20.0
    """Sustained Socket.IO events per second allowed per connection."""
    event_burst: int = 60
    """Burst allowance on top of the sustained rate."""
    max_payload_bytes: int = 131072
    """Largest Socket.IO / HTTP payload accepted."""


@dataclass(frozen=True)
class OnboardingConfig:
    required_steps: tuple[str, ...] = (
        "consented",
        "documents_captured",
        "data_confirmed",
        "selfie_taken",
        "av_tested",
    )
    """The pre-call steps a customer must do before the queue, in their order."""
    max_upload_bytes: int = 15_000_000
    max_pixels: int = 40_000_000
    """Largest photo accepted, checked from the header before decoding."""
    max_attempts: int = 5
    """Photos a customer may send per capture (document front, back, selfie)."""
    accept_without_mrz: tuple[str, ...] = ()
    """Documents accepted without a machine readable zone, as ``COUNTRY:type``
    (``ITA:id_card``); they are flagged to the operator."""
    face_match_threshold: float = 0.6
    """Descriptor distance under which two faces are the same person (dlib's)."""
    analysis_workers: int = 1
    """Processes that analyse images (each loads the face models once)."""
    connectivity_test: bool = True
    """Whether the A/V test needs a passed connectivity test through the server."""
    max_rtt_ms: float = 800.0
    min_bitrate_kbps: float = 300.0
    """What the connectivity test needs: round trip at most, upstream at least."""
    connectivity_timeout_seconds: float = 20.0
    """How long a connectivity test may hold its place (one of 16) and its sockets."""
    handover_minutes: int = 10
    """How long a "continue on your phone" QR code stays valid (used once)."""
    customer_access_hours: float = 72.0
    """How long the customer's invitation and device tokens keep opening the session
    after its decision or its last step after it (certificate, signature, completion);
    then every request with them answers ``access_expired``."""
    certificate_request_hours: float = 72.0
    """How long after the approval the customer may request the certificate
    (then ``certificate_window_closed``)."""
    contract_link_hours: float = 24.0
    """How long the signed contract's download link, sent by e-mail, is valid (once)."""
    contact_code_minutes: float = 10.0
    """How long a code sent to prove a changed e-mail address or mobile number is valid."""
    contact_code_attempts: int = 3
    """Tries per contact code (each consumed before the code is compared)."""
    contact_code_sends: int = 3
    """Contact codes sent per kind (e-mail, phone) and session."""
    analysis_queue: int = 8
    """Photos waiting for an analysis worker (beyond those running); more are answered
    ``server_busy`` (503, Retry-After) without costing an attempt."""


@dataclass(frozen=True)
class LiveConfig:
    """The analysis of the customer's live video and the operator's call tools."""

    analysis_fps: float = 5.0
    """Frames a second sent to the analysis pool (more while a challenge runs)."""
    challenge_fps: float = 10.0
    match_interval_seconds: float = 6.0
    """How often the live face is compared with the document portrait and the selfie."""
    workers: int = 1
    """Worker processes of the live signals' pool (apart from onboarding's); 0 turns the
    live analysis off."""
    warm_up: bool = True
    """Start the analysis workers and load their models when the server starts (else
    with the first call's first frame)."""
    match_workers: int = 1
    """Worker processes computing the live face's descriptor (a pool of its own, so that
    no frame's signals wait behind one)."""
    challenge_seconds: float = 8.0
    """Time the customer has for a challenge (half as much again to blink twice)."""
    face_match_threshold: float = 0.6
    no_blink_seconds: float = 30.0
    """A face seen this long without a blink is flagged."""
    min_brightness: float = 50.0
    max_brightness: float = 210.0
    min_sharpness: float = 20.0
    min_width: int = 640
    min_height: int = 360
    min_fps: float = 12.0
    min_face_share: float = 0.08
    """The face's width as a share of the picture's, below which it is too small."""


@dataclass(frozen=True)
class SmsConfig:
    backend: Literal["outbox", "http"] = "outbox"
    """``outbox``: a development file in the data directory, nothing is sent.
    ``http``: a provider's HTTP API (``url``, ``token_file``, ``sender``)."""
    url: str = ""
    token_file: str = ""
    sender: str = "videoid"


@dataclass(frozen=True)
class MailConfig:
    backend: Literal["outbox", "smtp"] = "outbox"
    """``outbox``: a development file in the data directory, nothing is sent.
    ``smtp``: the SMTP server at ``host``:``port``."""
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "videoid <no-reply@localhost>"
    username: str = ""
    password_file: str = ""
    starttls: bool = False
    """Require STARTTLS (it is used whenever the server offers it)."""


@dataclass(frozen=True)
class CallConfig:
    """The operator's tools in the call."""

    checklist_file: str = ""
    """The provider's checklist (TOML); empty means the one shipped with videoid."""
    otp_seconds: float = 300.0
    """How long a read-back code stays valid."""
    otp_attempts: int = 3
    """Wrong entries allowed per code."""
    otp_sends: int = 3
    """Codes that may be sent per call in ten minutes."""
    chat_max_chars: int = 1000
    chat_per_minute: int = 30
    snapshots_per_minute: int = 20
    max_snapshots: int = 60
    reconnect_seconds: float = 60.0
    """How long the operator keeps a call whose customer dropped (R12); 0: no waiting."""
    connect_seconds: float = 20.0
    """How long after the accept the customer's media must reach the call; otherwise
    the operator gets ``customer_gone`` and is released (issue 14.9); 0: no limit."""
    approve_reasons: tuple[str, ...] = ("identity_verified",)
    """The reason codes an operator chooses from, per outcome."""
    reject_reasons: tuple[str, ...] = (
        "document_invalid",
        "face_mismatch",
        "suspected_fraud",
        "liveness_failed",
        "otp_failed",
        "poor_quality",
        "customer_withdrew",
    )
    suspend_reasons: tuple[str, ...] = ("needs_review", "technical_issue", "document_unclear")


@dataclass(frozen=True)
class RetentionConfig:
    years: float = 20.0
    """How long a session's evidence is kept after it ends (Italian CAD, qualified
    certificates: 20 years; BaFin: 5). Then its personal data is destroyed."""
    purge_every_hours: float = 24.0
    """How often the server looks for sessions to purge."""


@dataclass(frozen=True)
class RecordingConfig:
    enabled: bool = True
    """Record every call (R13). Off only to measure what recording costs."""
    playback_link_seconds: float = 900.0
    """How long a compliance officer's playback link stays valid."""
    keyframe_seconds: float = 10.0
    """Ask each video sender for a keyframe this often while recording, so that
    playback can seek; 0 leaves keyframes to the senders."""


@dataclass(frozen=True)
class CaConfig:
    organization: str = "videoid development CA (not trusted)"
    """The CA's name in its certificates; the default says what it is."""
    policy_oid: str = "1.3.6.1.4.1.32473.1"
    """The provider's certificate policy, beside ETSI's QCP-n or QCP-n-qscd: a short
    OID under the provider's own arc (four arcs or more, each below 2^28: a UUID under
    2.25 is not read by common parsers). The default is under IANA's enterprise number
    for documentation (32473, RFC 5612): a development CA's."""
    customer_days: int = 1095
    """How long a customer's certificate is valid."""
    create_at_start: bool = True
    """Open the token and make (or load) the CA when the server starts; otherwise on
    first use."""
    country: str = "XU"
    """countryName of the CA's certificates (ISO 3166-1 alpha-2, where the provider is
    established). The default is user-assigned, no country: a development CA."""
    organization_identifier: str = "NTRXU-DEVELOPMENT"
    """organizationIdentifier of the CA's certificates (EN 319 412-1 §5.1.4:
    ``VATIT-12345678901``, ``NTRDE-HRB123456``, ``LEIXG-…``)."""
    public_url: str = ""
    """Plain http base of the CRL, OCSP and CA certificate addresses written in new
    certificates (kept per certificate); empty means the host of
    ``server.public_url`` over http, else the server's host and port."""
    pds_urls: tuple[str, ...] = ()
    """The PKI disclosure statements (QcPDS), ``language=https://…`` each; empty means
    ``https://<the CA's host>/pds/<language>.pdf`` in en, it, ro and pl."""

    def __post_init__(self) -> None:
        from .trust import profile  # the rules live with the profile they guard

        profile.check_policy_oid(self.policy_oid)
        profile.check_country(self.country)
        profile.check_organization_identifier(self.organization_identifier)
        profile.check_ca_public_url(self.public_url)
        profile.check_pds_urls(self.pds_urls)


@dataclass(frozen=True)
class Pkcs11Config:
    module: str = ""
    """The PKCS#11 module; empty means Debian's SoftHSM2, its token under ``softhsm/``
    in the data directory, created on first use (its PINs in ``keys/``)."""
    token_label: str = "videoid"
    softhsm_dir: str = ""
    """SoftHSM's directory (tokens, configuration, PIN files); empty means ``softhsm``
    in the data directory."""
    pin_file: str = ""
    """A file holding the token's user PIN; required with another module."""
    master_key_label: str = "videoid-master"
    """The AES key wrapping data keys when ``storage.key_port`` is ``pkcs11``."""
    timeout_seconds: float = 10.0
    """How long a request waits for the token (one operation at a time) before it fails
    with ``token_unavailable`` (503) instead of holding everyone else's."""
    qscd: bool = False
    """Whether the module is a certified qualified signature creation device. Only then
    do customers' certificates claim one (QcSSCD, QCP-n-qscd); otherwise they are
    QCP-n, and the contract and pages say so. SoftHSM2 is not one."""


@dataclass(frozen=True)
class StorageConfig:
    directory: str = ""
    """Where encrypted objects go; empty means ``objects`` in the data directory."""
    key_port: Literal["file", "pkcs11"] = "file"
    """What wraps the data keys of objects and recordings: the master key file, or an
    AES key in the PKCS#11 token (``[pkcs11]``) that never leaves it."""
    master_key_file: str = ""
    """The master key (64 hex digits); empty means ``keys/master.key`` in the data
    directory, created on first start."""
    index_key_file: str = ""
    """The key of the blind indexes that search personal data (64 hex digits); empty
    means ``keys/index.key`` in the data directory, created on first start."""


@dataclass(frozen=True)
class TsaConfig:
    url: str = ""
    """An external RFC 3161 time-stamping authority for the evidence seals, the audit
    log's anchors and the contracts' timestamps; empty means the local CA's own TSA."""
    timeout_seconds: float = 20.0
    """How long a request to an external TSA may take."""


@dataclass(frozen=True)
class AuditConfig:
    anchor_minutes: float = 60.0
    """The audit log's head is signed by a key in the token and timestamped at every
    evidence seal and at least this often."""
    refusals_per_minute: int = 10
    """Refused requests (401/403) audited one by one per client address and minute;
    the rest are counted into that client's next entry (``suppressed``)."""
    refusals_total_per_minute: int = 200
    """The same, for all clients together: the most a flood adds to the audit log."""


@dataclass(frozen=True)
class SigningConfig:
    extend_every_hours: float = 24.0
    """How often the server looks for signed contracts whose newest timestamp needs a
    new archive timestamp (PAdES B-LTA)."""
    archive_margin_days: float = 365.0
    """A new archive timestamp is added when the newest one's TSA certificate expires
    within this many days."""


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    invitations: InvitationsConfig = field(default_factory=InvitationsConfig)
    operators: OperatorsConfig = field(default_factory=OperatorsConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    signaling: SignalingConfig = field(default_factory=SignalingConfig)
    onboarding: OnboardingConfig = field(default_factory=OnboardingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    call: CallConfig = field(default_factory=CallConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    pkcs11: Pkcs11Config = field(default_factory=Pkcs11Config)
    ca: CaConfig = field(default_factory=CaConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    tsa: TsaConfig = field(default_factory=TsaConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    signing: SigningConfig = field(default_factory=SigningConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_path.resolve() / 'videoid.db'}"

    def base_url(self, port: int | None = None) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host = "127.0.0.1" if self.server.host in ("0.0.0.0", "::", "") else self.server.host
        return f"http://{host}:{port if port is not None else self.server.port}"


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list")
        return tuple(_coerce(v, typing.get_args(annotation)[0], where) for v in value)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: unsupported type")  # pragma: no cover
    if annotation is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = annotation(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from err
        if number < 0:
            raise ConfigError(f"{where}: must not be negative")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type")  # pragma: no cover


def _build(cls: Any, values: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} in [{where}]: {', '.join(unknown)}"
            f" (known: {', '.join(sorted(names))})"
        )
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Load the configuration: defaults, then the TOML file, then ``VIDEOID_*`` variables,
    then ``overrides`` (used by tests and the CLI). Raises :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    raw: dict[str, dict[str, Any]] = {}
    if path is None and environ.get("VIDEOID_CONFIG"):
        path = environ["VIDEOID_CONFIG"]
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError as err:
            raise ConfigError(f"configuration file not found: {path}") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: {err}") from err
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: {section} must be a [section]")
            raw[section] = dict(values)
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for key, value in environ.items():
        if not key.startswith("VIDEOID_") or key == "VIDEOID_CONFIG":
            continue
        section, _, name = key[len("VIDEOID_") :].lower().partition("_")
        if section not in sections or not name:
            raise ConfigError(f"unknown environment variable {key}")
        raw.setdefault(section, {})[name] = value
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(
            f"unknown section(s): {', '.join(unknown)} (known: {', '.join(sections)})"
        )
    hints = typing.get_type_hints(Config)
    return Config(**{s: _build(hints[s], v, s) for s, v in raw.items()})
