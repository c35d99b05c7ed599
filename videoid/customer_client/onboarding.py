"""The customer's steps before the call: consent, document, data check, selfie, A/V test.

:class:`Onboarding` is the driver between the HTTP handlers and the core. Each action
goes through :meth:`CallCenter.step`, which checks the session's state before
anything is saved and records the step as done afterwards; image work runs in the
analysis pool; images are stored encrypted through the object store. Everything the
operator will need (document images, MRZ data and checks, edited fields, selfie,
face match, flags) is kept as step results.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import re
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from ..analysis_pool import AnalysisPool
from ..call_center import CallCenter
from ..clock import Clock
from ..config import Config
from ..db import Repository, SessionRecord
from ..documents import analysis
from ..documents.mrz import mrz_name
from ..errors import AnalysisUnavailable, RateLimited, ValidationError
from ..media.probe import ConnectivityProbe, ProbeResult, Probes
from ..session import PRE_CALL_STEPS, State, states_before
from ..storage import ObjectStore
from ..trust.countries import mrz_code_known
from .contact_proof import ContactProof, ProofPending, codes_from
from .invitations import check_contacts
from .session_images import SessionImages
from .tax_code import valid_tax_code
from .upload_spool import SpooledUpload

logger = logging.getLogger(__name__)

Photo = bytes | SpooledUpload | Callable[[], contextlib.AbstractAsyncContextManager[SpooledUpload]]
"""A photo as sent: its bytes, the upload spooled to disk (read at its turn), or how to
receive it (the request's body, spooled only once the session's state and its one
upload in flight allow it)."""
CONSENT_DIR = Path(__file__).with_name("consent")
CONSENT_VERSIONS = {"privacy": "2026-11", "terms": "2026-11"}
LANGUAGES = ("en", "it", "ro", "pl")
DOCUMENT_TYPES = {
    # type: (sides to capture, side carrying the zone, side carrying the portrait)
    "passport": (("front",), "front", "front"),
    "id_card": (("front", "back"), "back", "front"),
    "residence_permit": (("front", "back"), "back", "front"),
}
COUNTRIES = (
    # alpha-3 (as in the MRZ), alpha-2 (for the browser's own country names)
    ("AUT", "AT"),
    ("BEL", "BE"),
    ("BGR", "BG"),
    ("HRV", "HR"),
    ("CYP", "CY"),
    ("CZE", "CZ"),
    ("DNK", "DK"),
    ("EST", "EE"),
    ("FIN", "FI"),
    ("FRA", "FR"),
    ("D", "DE"),
    ("GRC", "GR"),
    ("HUN", "HU"),
    ("IRL", "IE"),
    ("ITA", "IT"),
    ("LVA", "LV"),
    ("LTU", "LT"),
    ("LUX", "LU"),
    ("MLT", "MT"),
    ("NLD", "NL"),
    ("POL", "PL"),
    ("PRT", "PT"),
    ("ROU", "RO"),
    ("SVK", "SK"),
    ("SVN", "SI"),
    ("ESP", "ES"),
    ("SWE", "SE"),
    ("ISL", "IS"),
    ("LIE", "LI"),
    ("NOR", "NO"),
    ("CHE", "CH"),
    ("GBR", "GB"),
    ("MDA", "MD"),
    ("UKR", "UA"),
    ("ALB", "AL"),
    ("SRB", "RS"),
    ("USA", "US"),
    ("UTO", ""),
)
COUNTRY_CODES = {c for c, _ in COUNTRIES}
NAME_MAX = 64
CONNECTIVITY_VALID = 600.0
"""Seconds a passed connectivity test counts for the A/V test."""
PERSONAL_FIELDS = (
    "surname",
    "given_names",
    "document_number",
    "date_of_birth",
    "date_of_expiry",
    "nationality",
    "sex",
)


class PhotoRejected(ValidationError):
    """The photo was analysed and cannot be used; ``problems`` say what to fix."""

    code = "photo_rejected"
    status = 422

    def __init__(self, problems: Sequence[str], attempts_left: int) -> None:
        super().__init__(
            f"the photo cannot be used ({', '.join(problems)}); take it again",
            attempts_left=attempts_left,
        )
        self.problems = tuple(problems)
        """``too_blurry``, ``glare``…: see docs/protocol.md, "Photo problems"."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (PhotoRejected, (self.problems, self.attempts_left))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "problems": list(self.problems)}


def consent_text(document: str, language: str) -> str:
    return (CONSENT_DIR / f"{document}.{language}.txt").read_text("utf-8")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _required(body: dict[str, Any], field: str) -> str:
    """A required text field of the data step: missing, null or blank is
    ``field_required``, another type than a string ``invalid_payload``."""
    value = body.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError(f"{field}: required", code="field_required", field=field)
    if not isinstance(value, str):
        raise ValidationError(f"{field}: expected text", code="invalid_payload", field=field)
    return value


def _latin_name(value: str, field: str) -> str:
    value = " ".join(value.split())
    if len(value) > NAME_MAX:
        raise ValidationError(
            f"{field}: at most {NAME_MAX} characters", code="field_too_long", field=field
        )
    for ch in value:
        if ch in " -'.":
            continue
        if not unicodedata.category(ch).startswith("L") or "LATIN" not in unicodedata.name(ch, ""):
            raise ValidationError(
                f"{field}: write it in Latin letters, as on the document",
                code="invalid_script",
                field=field,
            )
    return str(value)


def _date(value: str, field: str) -> datetime.date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValidationError(
            f"{field}: expected a date (YYYY-MM-DD)", code="invalid_date", field=field
        )
    try:
        return datetime.date.fromisoformat(value)
    except ValueError as err:
        raise ValidationError(
            f"{field}: not a real date", code="invalid_date", field=field
        ) from err


def person_key(surname: str, given_names: str, date_of_birth: str, nationality: str) -> str:
    """Who a customer is, for R4, without storing anything new: a hash of the name as
    the MRZ writes it, the date of birth and the nationality."""
    basis = "|".join((mrz_name(surname), mrz_name(given_names), date_of_birth, nationality))
    return hashlib.sha256(basis.encode()).hexdigest()


class Onboarding:
    def __init__(
        self,
        config: Config,
        repo: Repository,
        center: CallCenter,
        objects: ObjectStore,
        pool: AnalysisPool,
        clock: Clock,
        probes: Probes | None = None,
    ) -> None:
        self._config = config
        self._repo = repo
        self._center = center
        self._objects = objects
        self.images = SessionImages(repo, objects)
        self._pool = pool
        self._clock = clock
        self._probes = probes or Probes()
        self.contacts: ContactProof | None = None
        """Proof of changed contacts by a code (set by the app; None: the verdict at once)."""
        required = {State(name) for name in config.onboarding.required_steps}
        self._before = {step: states_before(step, required) for step in PRE_CALL_STEPS}
        self._no_mrz = {entry.upper() for entry in config.onboarding.accept_without_mrz}
        self._uploading: set[str] = set()
        """Sessions with a photo being analysed now."""

    def _today(self) -> datetime.date:
        return datetime.datetime.fromtimestamp(self._clock.now(), datetime.UTC).date()

    async def require_step(self, record: SessionRecord, step: State) -> None:
        """Raise ``step_not_allowed`` (409) unless the session's state allows the pre-call
        ``step`` now: checked before the request's body, so that a step out of turn is
        told so whatever it sends."""
        await self._center.step(record.id, self._before[step], _noop)

    # -- what the customer's page needs ----------------------------------------------------

    async def overview(self, record: SessionRecord) -> dict[str, Any]:
        results = await self._repo.results(record.id)
        customer = await self._repo.find_customer(record.customer_id)
        document = results.get("document", {})
        mrz = document.get("mrz") or {}
        prefill = {f: mrz.get(f, "") for f in PERSONAL_FIELDS}
        prefill["issuing_state"] = mrz.get("issuing_state", document.get("country", ""))
        if "personal_data" in results:
            prefill.update(results["personal_data"]["fields"])
        if customer is not None:
            prefill.setdefault("phone", customer.phone)
            prefill.setdefault("email", customer.email)
        limits = self._config.onboarding
        attempts = {
            kind: max(0, limits.max_attempts - await self._repo.count_attempts(record.id, kind))
            for kind in ("document_front", "document_back", "selfie")
        }
        return {
            "session_id": record.id,
            "state": record.state,
            "required_steps": list(limits.required_steps),
            # for the connectivity test: the same STUN/TURN path as the call will take
            **self._center.ice.client_ice(record.id, self._clock.now(), customer=True),
            "document_types": {
                t: {"sides": list(sides)} for t, (sides, _, _) in DOCUMENT_TYPES.items()
            },
            "countries": [{"code": c, "alpha2": a} for c, a in COUNTRIES],
            "accept_without_mrz": sorted(self._no_mrz),
            "document": {
                "country": document.get("country"),
                "type": document.get("type"),
                "captured": sorted(document.get("sides", {})),
                "warnings": document.get("warnings", []),
            },
            "prefill": prefill,
            "attempts_left": attempts,
            "max_upload_bytes": limits.max_upload_bytes,
        }

    def consent_documents(self, language: str) -> list[dict[str, str]]:
        """The texts to accept, in ``language`` (one of :data:`LANGUAGES`; another is
        ``invalid_language``, never a silent fallback to English)."""
        if language not in LANGUAGES:
            raise ValidationError(
                "lang: one of en, it, ro, pl", code="invalid_language", field="lang"
            )
        out = []
        for document, version in CONSENT_VERSIONS.items():
            text = consent_text(document, language)
            out.append(
                {
                    "document": document,
                    "version": version,
                    "language": language,
                    "text": text,
                    "sha256": _sha256(text),
                }
            )
        return out

    # -- consent (R1) -----------------------------------------------------------------

    async def consent(
        self, record: SessionRecord, body: Any, client_address: str
    ) -> dict[str, Any]:
        await self.require_step(record, State.CONSENTED)
        if not isinstance(body, dict) or set(body) - {"language", "accepted"}:
            raise ValidationError("expected {language, accepted}", code="invalid_payload")
        language = body.get("language")
        if language not in LANGUAGES:
            raise ValidationError("language: one of en, it, ro, pl", code="invalid_language")
        accepted = body.get("accepted")
        if not isinstance(accepted, list) or len(accepted) > len(CONSENT_VERSIONS):
            raise ValidationError("accepted: a list of documents", code="invalid_payload")
        given = {}
        for item in accepted:
            if (
                not isinstance(item, dict)
                or set(item) != {"document", "version"}
                or not isinstance(item["document"], str)
            ):
                raise ValidationError("accepted: {document, version} items", code="invalid_payload")
            given[item["document"]] = item["version"]
        for document, version in CONSENT_VERSIONS.items():
            if given.get(document) != version:
                raise ValidationError(
                    "please read and accept the privacy notice and the terms",
                    code="consent_required",
                )
        now = self._clock.now()

        async def save() -> None:
            for document, version in CONSENT_VERSIONS.items():
                await self._repo.add_consent(
                    record.id,
                    document=document,
                    version=version,
                    language=language,
                    text_sha256=_sha256(consent_text(document, language)),
                    client_address=client_address,
                    now=now,
                )

        await self._center.step(record.id, self._before[State.CONSENTED], save, State.CONSENTED)
        logger.info("session %s: consent given (%s)", record.id, language)
        return {"ok": True}

    # -- document (R2, R3) ------------------------------------------------------------

    async def _take_attempt(self, session_id: str, kind: str) -> tuple[int, int]:
        """Take an attempt in the database before the photo is analysed (parallel
        uploads take at most the limit): its id and the attempts left after it; none
        left raises RateLimited."""
        taken = await self._repo.reserve_attempt(
            session_id, kind, self._config.onboarding.max_attempts, self._clock.now()
        )
        if taken is None:
            raise RateLimited(
                "you have used every attempt for this photo; please contact us to continue",
                code="too_many_attempts",
            )
        return taken

    async def _analysed(
        self,
        session_id: str,
        kind: str,
        work: Callable[..., Any],
        data: Photo,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[int, int, Any]:
        """One photo analysed in the pool (one at a time per session, in turn across
        sessions), its attempt taken first: the attempt's id, the attempts left, the
        analysis. A full pool raises ServerBusy before any attempt is taken. A refused
        or failed analysis is recorded on the attempt before it raises."""
        async with self._one_upload(session_id), _received(data) as data:
            return await self._analyse(session_id, kind, work, data, *args, **kwargs)

    async def _analyse(
        self,
        session_id: str,
        kind: str,
        work: Callable[..., Any],
        data: bytes | SpooledUpload,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[int, int, Any]:
        async with self._pool.admit(session_id) as place:
            attempt, left = await self._take_attempt(session_id, kind)
            try:
                async with place.wait():  # the bytes are read only now, its turn come
                    photo = data if isinstance(data, bytes) else await data.read()
                    result = await self._pool.run(work, photo, *args, **kwargs)
            except ValidationError as err:  # a refused file: its attempt is spent
                await self._repo.finish_attempt(attempt, False, [err.code], self._clock.now())
                err.attempts_left = left
                raise
            except AnalysisUnavailable:  # our workers failed, not the photo
                await self._repo.release_attempt(attempt)
                raise
            except BaseException:
                await self._repo.finish_attempt(attempt, False, ["failed"], self._clock.now())
                raise
        return attempt, left, result

    @contextlib.asynccontextmanager
    async def _one_upload(self, session_id: str) -> AsyncIterator[None]:
        """One photo of a session analysed at a time: a second upload while one is in
        flight is refused at once (it would only queue behind it and hold memory)."""
        if session_id in self._uploading:
            raise RateLimited(
                "a photo of yours is still being checked; wait for its answer",
                code="upload_in_progress",
            )
        self._uploading.add(session_id)
        try:
            yield
        finally:
            self._uploading.discard(session_id)

    async def upload_document(
        self, record: SessionRecord, side: str, country: str, doc_type: str, data: Photo
    ) -> dict[str, Any]:
        await self.require_step(record, State.DOCUMENTS_CAPTURED)  # the state first
        if doc_type not in DOCUMENT_TYPES:
            raise ValidationError(
                "type: passport, id_card or residence_permit", code="invalid_document_type"
            )
        if country not in COUNTRY_CODES:
            raise ValidationError("country: not a country we accept", code="invalid_country")
        sides, zone_side, portrait_side = DOCUMENT_TYPES[doc_type]
        if side not in sides:
            raise ValidationError(
                f"a {doc_type} has no {side} side to capture", code="invalid_side"
            )
        without_mrz = f"{country}:{doc_type}".upper() in self._no_mrz
        limits = self._config.onboarding
        kind = f"document_{side}"
        today = self._today().isoformat()
        attempt, left, result = await self._analysed(
            record.id,
            kind,
            analysis.analyse_document,
            data,
            want_mrz=side == zone_side,
            want_portrait=side == portrait_side,
            today=today,
            max_bytes=limits.max_upload_bytes,
            max_pixels=limits.max_pixels,
        )
        problems: list[str] = list(result["problems"])
        if without_mrz and problems == ["mrz_not_found"]:
            problems = []
        mrz = result.get("mrz")
        if mrz is not None and not mrz["checks_ok"] and "mrz_unreadable" not in problems:
            problems.append("mrz_unreadable")
        now = self._clock.now()
        await self._repo.finish_attempt(attempt, not problems, problems, now)
        if problems:
            raise PhotoRejected(problems, left)

        async def save() -> dict[str, Any]:
            results = await self._repo.results(record.id)
            document: dict[str, Any] = results.get("document", {})
            if document.get("type") != doc_type or document.get("country") != country:
                document = {"type": doc_type, "country": country, "sides": {}}
            stored = await self._objects.put(record.id, kind, "image/jpeg", result["jpeg"], now)
            document["sides"][side] = stored.id
            document.setdefault("quality", {})[side] = result["quality"]
            if side == zone_side:
                document["mrz"] = mrz
                document["has_mrz"] = mrz is not None
            if "portrait" in result:
                portrait = await self._objects.put(
                    record.id, "portrait", "image/jpeg", result["portrait"], now
                )
                document["portrait"] = portrait.id
            document["warnings"] = _document_warnings(document, country)
            await self._repo.put_result(record.id, "document", document, now)
            return document

        document: dict[str, Any] = await self._center.step(
            record.id, self._before[State.DOCUMENTS_CAPTURED], save
        )
        out: dict[str, Any] = {
            "accepted": True,
            "attempts_left": left,
            "warnings": document["warnings"],
        }
        return out

    async def finish_document(self, record: SessionRecord) -> dict[str, Any]:
        async def save() -> None:
            document = (await self._repo.results(record.id)).get("document")
            if not document:
                raise ValidationError(
                    "take the photos of your document first", code="document_missing"
                )
            sides, _, _ = DOCUMENT_TYPES[document["type"]]
            missing = [s for s in sides if s not in document["sides"]]
            if missing:
                raise ValidationError(
                    f"the {' and '.join(missing)} of the document is still missing",
                    code="document_side_missing",
                )

        await self._center.step(
            record.id, self._before[State.DOCUMENTS_CAPTURED], save, State.DOCUMENTS_CAPTURED
        )
        return {"ok": True}

    # -- check your data (R3, R4) ----------------------------------------------------------

    async def confirm_data(self, record: SessionRecord, body: Any) -> dict[str, Any]:
        await self.require_step(record, State.DATA_CONFIRMED)
        if not isinstance(body, dict):
            raise ValidationError("expected an object of fields", code="invalid_payload")
        allowed = {*PERSONAL_FIELDS, "phone", "email", "tax_code", "codes"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ValidationError(f"unknown fields: {', '.join(unknown)}", code="invalid_payload")
        for name in (*PERSONAL_FIELDS, "phone", "email"):
            _required(body, name)  # every one is required: the first missing is named
        fields: dict[str, str] = {
            "surname": _latin_name(body["surname"], "surname"),
            "given_names": _latin_name(body["given_names"], "given_names"),
        }
        number = body["document_number"]
        if not re.fullmatch(r"[A-Za-z0-9]{1,20}", number.strip()):
            raise ValidationError(
                "document_number: letters and digits only",
                code="invalid_document_number",
                field="document_number",
            )
        fields["document_number"] = number.strip().upper()
        today = self._today()
        birth = _date(body["date_of_birth"], "date_of_birth")
        if not datetime.date(1900, 1, 1) <= birth < today:
            raise ValidationError(
                "date_of_birth: not a plausible date", code="invalid_date", field="date_of_birth"
            )
        expiry = _date(body["date_of_expiry"], "date_of_expiry")
        fields["date_of_birth"], fields["date_of_expiry"] = birth.isoformat(), expiry.isoformat()
        nationality = body["nationality"].strip().upper()
        if not mrz_code_known(nationality):
            raise ValidationError(
                "nationality: the code of the zone (ICAO 9303: ISO 3166-1 alpha-3, e.g. ITA)",
                code="invalid_nationality",
                field="nationality",
            )
        fields["nationality"] = nationality
        sex = body["sex"]
        if sex not in ("F", "M", "X"):
            raise ValidationError("sex: F, M or X", code="invalid_sex", field="sex")
        fields["sex"] = sex
        email, phone = check_contacts(body["email"][:254], body["phone"][:32])
        fields["email"], fields["phone"] = email, phone
        codes = codes_from(body)
        proven = await self._prove_contacts(record, email, phone, codes)
        if isinstance(proven, ProofPending):
            return proven.to_json()
        found = proven
        now = self._clock.now()

        async def save() -> dict[str, Any]:
            results = await self._repo.results(record.id)
            document = results.get("document", {})
            italian = "ITA" in (fields["nationality"], document.get("country"))
            tax_code = str(body.get("tax_code", "")).strip().upper()[:16]
            if italian or tax_code:
                if not valid_tax_code(tax_code):
                    raise ValidationError(
                        "tax code: 16 characters, as on your health card; check the last one",
                        code="invalid_tax_code",
                        field="tax_code",
                    )
                fields["tax_code"] = tax_code
            mrz = document.get("mrz") or {}
            edited = [f for f in PERSONAL_FIELDS if mrz and _edited(f, fields[f], mrz)]
            key = self._repo.personal.index(  # keyed: no one can try names and dates
                "person",
                person_key(
                    fields["surname"],
                    fields["given_names"],
                    fields["date_of_birth"],
                    fields["nationality"],
                ),
            )
            if self.contacts is not None:  # the proof is spent with the verdict
                await self.contacts.spend(found)
            taken = await self._repo.contact_owner(record.customer_id, email, phone, key)
            if taken is not None:
                raise ValidationError(
                    f"this {'e-mail address' if taken == 'email' else 'mobile number'} already"
                    " belongs to another customer; use your own",
                    code=f"{taken}_in_use",
                    field=taken,
                )
            await self._repo.update_customer(
                record.customer_id, email=email, phone=phone, person_key=key
            )
            value = {"fields": fields, "edited": edited}
            await self._repo.put_result(record.id, "personal_data", value, now)
            return value

        value = await self._center.step(
            record.id, self._before[State.DATA_CONFIRMED], save, State.DATA_CONFIRMED
        )
        logger.info(
            "session %s: data confirmed, %d field(s) edited", record.id, len(value["edited"])
        )
        return {"ok": True}

    async def _prove_contacts(
        self, record: SessionRecord, email: str, phone: str, codes: dict[str, str]
    ) -> ProofPending | list[Any]:
        """Whether the contacts may be judged now: those equal to the ones on record
        need no proof; a changed one needs the code sent to it (R4 without telling
        anyone which contacts are customers'). The session's state is checked first,
        so that no code is sent for a step that cannot be done."""
        await self._center.step(record.id, self._before[State.DATA_CONFIRMED], _noop)
        if self.contacts is None:
            return []
        customer = await self._repo.find_customer(record.customer_id)
        on_record = ("", "") if customer is None else (customer.email, customer.phone)
        changed = {
            kind: value
            for kind, value, known in zip(
                ("email", "phone"), (email, phone), on_record, strict=True
            )
            if value != known
        }
        if not changed:
            return []
        return await self.contacts.prove(record.id, changed, codes)

    # -- selfie -----------------------------------------------------------------------

    async def upload_selfie(self, record: SessionRecord, data: Photo) -> dict[str, Any]:
        limits = self._config.onboarding
        await self._center.step(record.id, self._before[State.SELFIE_TAKEN], _noop)
        document = (await self._repo.results(record.id)).get("document", {})
        portrait = None
        if document.get("portrait"):
            _, portrait = await self._objects.get(document["portrait"])
        attempt, left, result = await self._analysed(
            record.id,
            "selfie",
            analysis.analyse_selfie,
            data,
            portrait,
            max_bytes=limits.max_upload_bytes,
            max_pixels=limits.max_pixels,
            threshold=limits.face_match_threshold,
        )
        now = self._clock.now()
        problems = result["problems"]
        await self._repo.finish_attempt(attempt, not problems, problems, now)
        if problems:
            raise PhotoRejected(problems, left)

        async def save() -> None:
            stored = await self._objects.put(record.id, "selfie", "image/jpeg", result["jpeg"], now)
            value = {"object": stored.id, "checks": result["checks"], "match": result.get("match")}
            await self._repo.put_result(record.id, "selfie", value, now)

        await self._center.step(
            record.id, self._before[State.SELFIE_TAKEN], save, State.SELFIE_TAKEN
        )
        match = result.get("match")
        logger.info(
            "session %s: selfie accepted, face match %s",
            record.id,
            "none" if match is None else ("yes" if match["match"] else "no"),
        )
        # the score goes to the operator only
        return {"accepted": True}

    # -- audio/video test -----------------------------------------------------------------

    async def connectivity_offer(self, record: SessionRecord, body: Any) -> dict[str, Any]:
        """Start the connectivity test: answer the client's offer (one data channel);
        the server measures round trip and upstream bitrate and keeps the result."""
        await self.require_step(record, State.AV_TESTED)
        if not isinstance(body, dict) or body.get("type") != "offer":
            raise ValidationError("expected {type: offer, sdp}", code="invalid_payload")
        limits, media = self._config.onboarding, self._config.media

        async def on_result(result: ProbeResult) -> None:
            now = self._clock.now()
            await self._repo.put_result(
                record.id, "connectivity", {**result.to_json(), "at": now}, now
            )
            self._probes.finished(record.id, probe)
            logger.info(
                "session %s: connectivity test %s (rtt %s ms, %s kbit/s)",
                record.id,
                "passed" if result.passed else "failed",
                result.rtt_ms,
                result.bitrate_kbps,
            )

        probe = ConnectivityProbe(
            policy=self._center.ice,
            max_sdp_bytes=media.max_sdp_bytes,
            max_rtt_ms=limits.max_rtt_ms,
            min_bitrate_kbps=limits.min_bitrate_kbps,
            on_result=on_result,
            timeout_seconds=limits.connectivity_timeout_seconds,
        )
        answer = await self._probes.start(record.id, probe, body.get("sdp"))
        return {"answer": {"type": "answer", "sdp": answer}}

    async def av_test(self, record: SessionRecord, body: Any) -> dict[str, Any]:
        await self.require_step(record, State.AV_TESTED)
        if not isinstance(body, dict):
            raise ValidationError("expected the test's results", code="invalid_payload")
        checks: dict[str, Any] = {}
        for key in ("camera", "microphone", "speaker"):
            if not isinstance(body.get(key), bool):
                raise ValidationError(f"{key}: true or false", code="invalid_payload", field=key)
            checks[key] = body[key]
        failed = [k for k, ok in checks.items() if not ok]
        if failed:
            raise ValidationError(
                f"the {', '.join(failed)} test did not pass", code=f"{failed[0]}_test_failed"
            )
        now = self._clock.now()

        async def save() -> None:
            connectivity = (await self._repo.results(record.id)).get("connectivity")
            if self._config.onboarding.connectivity_test:
                if connectivity is None or now - connectivity["at"] > CONNECTIVITY_VALID:
                    raise ValidationError(
                        "run the connection test first", code="connectivity_test_missing"
                    )
                if not connectivity["passed"]:
                    raise ValidationError(
                        "the connection test did not pass", code="connectivity_test_failed"
                    )
            checks["connectivity"] = connectivity
            await self._repo.put_result(record.id, "av_test", {**checks, "at": now}, now)

        await self._center.step(record.id, self._before[State.AV_TESTED], save, State.AV_TESTED)
        return {"ok": True}

    # -- for the operator ---------------------------------------------------------------

    async def operator_view(self, session_id: str) -> dict[str, Any]:
        results = await self._repo.results(session_id)
        document = results.get("document", {})
        personal = results.get("personal_data", {})
        selfie = results.get("selfie", {})
        flags = list(document.get("warnings", []))
        if personal.get("edited"):
            flags.append("fields_edited")
        if selfie and selfie.get("match") is None:
            flags.append("face_match_unavailable")
        elif selfie and not selfie["match"]["match"]:
            flags.append("face_mismatch")
        return {
            "consents": await self._repo.consents(session_id),
            "document": {
                "country": document.get("country"),
                "type": document.get("type"),
                "has_mrz": document.get("has_mrz", False),
                "mrz": document.get("mrz"),
                "images": sorted(document.get("sides", {}))
                + (["portrait"] if document.get("portrait") else []),
                "quality": document.get("quality", {}),
            },
            "personal_data": personal.get("fields"),
            "edited": personal.get("edited", []),
            "selfie": {"checks": selfie.get("checks"), "match": selfie.get("match")}
            if selfie
            else None,
            "av_test": results.get("av_test"),
            "flags": flags,
        }

    async def close(self) -> None:
        await self._probes.close()

    async def image(self, session_id: str, name: str) -> tuple[str, bytes]:
        return await self.images.image(session_id, name)


async def _noop() -> None:
    return None


@contextlib.asynccontextmanager
async def _received(photo: Photo) -> AsyncIterator[bytes | SpooledUpload]:
    if isinstance(photo, bytes | SpooledUpload):
        yield photo
        return
    async with photo() as upload:
        yield upload


def _edited(field: str, value: str, mrz: dict[str, Any]) -> bool:
    """Whether the customer's ``value`` differs from what the zone says. Names compare
    as the zone writes them (Müller is MUELLER); a name the zone had to cut short
    compares on what it kept."""
    read = str(mrz.get(field, ""))
    if field in ("surname", "given_names"):
        mine, theirs = mrz_name(value).replace("<", ""), mrz_name(read).replace("<", "")
        if mrz.get("names_truncated") and theirs and mine.startswith(theirs):
            return False
        return mine != theirs
    return value.strip().upper() != read.strip().upper()


def _document_warnings(document: dict[str, Any], country: str) -> list[str]:
    warnings: list[str] = []
    mrz = document.get("mrz")
    _, zone_side, _ = DOCUMENT_TYPES[document["type"]]
    if zone_side in document["sides"] and mrz is None:
        warnings.append("no_mrz")
    if mrz is not None:
        if mrz.get("expired"):
            warnings.append("document_expired")
        if not mrz.get("checks_ok"):
            warnings.append("mrz_check_failed")
        if mrz.get("issuing_state") and mrz["issuing_state"] != country:
            warnings.append("country_mismatch")
        # a passport's zone starts with P, a card's with I, A or C
        if (document["type"] == "passport") != mrz.get("document_code", "").startswith("P"):
            warnings.append("document_type_mismatch")
    return warnings
