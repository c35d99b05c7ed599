"""Key custody in a PKCS#11 token (R16): keys are generated in the token, sensitive and
not extractable, and used there; nothing secret leaves it.

Debian's SoftHSM2 by default, its token directory under the data directory
(``softhsm/``, or ``pkcs11.softhsm_dir``, with its own ``softhsm2.conf``), created on
first use with a random user PIN and security officer PIN kept beside it in
``user.pin`` and ``so.pin`` (mode 0600). Any other PKCS#11 module by configuration
(``[pkcs11]``), whose token and PIN the deployment provides.

One logged-in session per process; PKCS#11 sessions are not safe for concurrent use,
so every operation takes the token's lock (callers run them in threads).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams

from ..config import Config
from ..errors import ConfigError, StorageError, TokenUnavailable

logger = logging.getLogger(__name__)

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
T = TypeVar("T")
_libraries: dict[str, Any] = {}
_libraries_lock = threading.Lock()
_loaded_with: dict[str, str | None] = {}
_open_tokens: weakref.WeakSet[Token] = weakref.WeakSet()


def _reinitialize(lib: Any, module: str) -> None:
    """Finalise and initialise the module again (SoftHSM reads its configuration and
    lists its tokens then); only with no session open, which it would end."""
    if _open_tokens:
        raise ConfigError(
            "a PKCS#11 session is open in this process on another token directory;"
            " one token directory per process",
            code="token_unavailable",
        )
    lib.reinitialize()
    _loaded_with[module] = os.environ.get("SOFTHSM2_CONF")


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def softhsm_conf(directory: Path) -> Path:
    """The SoftHSM configuration of ``directory`` (its tokens under ``tokens/``),
    made if missing, and named in ``SOFTHSM2_CONF`` for this process: SoftHSM reads it
    when the module is first loaded."""
    directory = directory.resolve()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    if not conf.exists():
        conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
            "log.level = ERROR\nslots.removable = false\n"
        )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


def ensure_softhsm_token(directory: Path, label: str) -> str:
    """A SoftHSM token called ``label`` in ``directory``, initialised on first use;
    returns its user PIN (from ``user.pin`` there)."""
    conf = softhsm_conf(directory)
    pin_file = conf.parent / "user.pin"
    so_pin_file = conf.parent / "so.pin"
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    listing = subprocess.run(
        ["softhsm2-util", "--show-slots"], env=env, capture_output=True, text=True
    )
    labels = re.findall(r"^\s*Label:\s*(.*?)\s*$", listing.stdout, re.MULTILINE)
    if label in labels:
        if not pin_file.exists():
            raise ConfigError(
                f"the SoftHSM token {label!r} exists but {pin_file} does not",
                code="token_pin_wrong",
            )
        return pin_file.read_text().strip()
    pin = "".join(secrets.choice("0123456789") for _ in range(12))
    so_pin = "".join(secrets.choice("0123456789") for _ in range(12))
    for path in (pin_file, so_pin_file):
        if path.exists():
            path.unlink()  # from a token directory that was removed
    _write_secret(pin_file, pin)
    _write_secret(so_pin_file, so_pin)
    command = ["softhsm2-util", "--init-token", "--free", "--label", label]
    command += ["--pin", pin, "--so-pin", so_pin]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(
            f"cannot create the SoftHSM token {label!r}: {done.stderr.strip() or done.stdout}",
            code="token_unavailable",
        )
    logger.info("created the SoftHSM token %r under %s", label, conf.parent)
    return pin


class Token:
    """A logged-in session on a PKCS#11 token."""

    def __init__(self, module: str, label: str, pin: str, timeout_seconds: float = 10.0) -> None:
        self.label = label
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        try:
            with _libraries_lock:
                lib = _libraries.get(module)
                if lib is None:
                    lib = _libraries[module] = pkcs11.lib(module)
                    _loaded_with[module] = os.environ.get("SOFTHSM2_CONF")
                elif module == SOFTHSM_MODULE and (
                    _loaded_with.get(module) != os.environ.get("SOFTHSM2_CONF")
                ):
                    _reinitialize(lib, module)  # another token directory
                try:
                    token = lib.get_token(token_label=label)
                except pkcs11.exceptions.NoSuchToken:
                    if module != SOFTHSM_MODULE:
                        raise
                    _reinitialize(lib, module)  # SoftHSM lists tokens when initialised
                    token = lib.get_token(token_label=label)
        except pkcs11.exceptions.NoSuchToken as err:
            raise ConfigError(
                f"no PKCS#11 token labelled {label!r} in {module}", code="token_not_found"
            ) from err
        except (RuntimeError, OSError, pkcs11.exceptions.PKCS11Error) as err:
            raise ConfigError(
                f"the PKCS#11 module {module} cannot be used: {err}", code="token_unavailable"
            ) from err
        try:
            self._session = token.open(rw=True, user_pin=pin)
            _open_tokens.add(self)
        except (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinLenRange) as err:
            raise ConfigError(
                f"the PIN of the PKCS#11 token {label!r} is wrong", code="token_pin_wrong"
            ) from err
        except pkcs11.exceptions.PinLocked as err:
            raise ConfigError(
                f"the PKCS#11 token {label!r} is locked", code="token_pin_wrong"
            ) from err

    @classmethod
    def from_config(cls, config: Config) -> Token:
        p = config.pkcs11
        module = p.module or SOFTHSM_MODULE
        if module == SOFTHSM_MODULE and not p.pin_file:
            directory = Path(p.softhsm_dir) if p.softhsm_dir else config.data_path / "softhsm"
            pin = ensure_softhsm_token(directory, p.token_label)
        else:
            if not p.pin_file:
                raise ConfigError(
                    "pkcs11.pin_file is required with another module than SoftHSM",
                    code="config_invalid",
                )
            pin = Path(p.pin_file).read_text().strip()
        return cls(module, p.token_label, pin, p.timeout_seconds)

    def run(self, work: Callable[[Any], T], timeout_seconds: float | None = None) -> T:
        """``work(session)`` under the token's lock; :class:`TokenUnavailable` when the
        lock is not free within ``timeout_seconds`` (an operation that hangs in the token
        fails the requests behind it cleanly instead of holding them all)."""
        wait = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        if not self._lock.acquire(timeout=wait):
            logger.error("token %r: busy for %.0f s, refused", self.label, wait)
            raise TokenUnavailable(
                "the key store is busy; please try again in a moment", code="token_unavailable"
            )
        try:
            return work(self._session)
        finally:
            self._lock.release()

    def close(self) -> None:
        if not self._lock.acquire(timeout=self.timeout_seconds):
            logger.error("token %r: still busy at close; its session is left open", self.label)
            return
        try:
            if self in _open_tokens:
                _open_tokens.discard(self)
                self._session.close()
        finally:
            self._lock.release()


class Pkcs11MasterKey:
    """The master key as an AES-256 key in the token (generated there on first use,
    sensitive, not extractable): data keys are wrapped and unwrapped by AES-GCM inside
    the token, with the context as associated data. Implements the
    :class:`~videoid.storage.envelope.KeyWrapper` port."""

    def __init__(self, token: Token, key_label: str) -> None:
        self._token = self.token = token
        self.key_id = f"pkcs11:{token.label}/{key_label}"

        def find_or_make(session: Any) -> Any:
            try:
                return session.get_key(
                    object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=key_label
                )
            except pkcs11.exceptions.NoSuchKey:
                logger.info("generating the master key %s in the token", self.key_id)
                return session.generate_key(
                    KeyType.AES,
                    256,
                    label=key_label,
                    store=True,
                    template={
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.ENCRYPT: True,
                        Attribute.DECRYPT: True,
                    },
                )

        self._key = token.run(find_or_make)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        sealed = self._token.run(
            lambda _: self._key.encrypt(
                data_key, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, context)
            )
        )
        return nonce + bytes(sealed)

    def close(self) -> None:
        self._token.close()

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        nonce, sealed = wrapped[:12], wrapped[12:]
        try:
            return bytes(
                self._token.run(
                    lambda _: self._key.decrypt(
                        sealed,
                        mechanism=Mechanism.AES_GCM,
                        mechanism_param=GCMParams(nonce, context),
                    )
                )
            )
        except pkcs11.exceptions.PKCS11Error as err:
            raise StorageError("a data key does not open with this master key") from err
