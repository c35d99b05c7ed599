"""Account management, from the CLI (``videoid operator ...``) and the supervisor's
console: list, disable, enable, reset the password, reset the second factor, end the
logins. Every change is audited; disabling and resetting end the account's logins
(and, in the server, drop its live Socket.IO connections)."""

from __future__ import annotations

from ..db import OperatorRecord, Repository
from ..db.staff_factors import StaffAccount
from ..errors import Forbidden, ObjectNotFound, ValidationError
from .accounts import Accounts, generate_password

ACTIONS = ("disable", "enable", "reset-password", "reset-2fa", "revoke-logins")


class AccountAdmin:
    """``actor`` names who acts in the audit log: ``operator:<id>`` (a supervisor) or
    ``system`` (the command line)."""

    def __init__(self, repo: Repository, accounts: Accounts) -> None:
        self._repo = repo
        self._accounts = accounts

    async def list(self, now: float) -> list[StaffAccount]:
        return await self._accounts.factors.accounts(now)

    async def find(self, *, username: str | None = None, id: int | None = None) -> OperatorRecord:
        found = await self._repo.find_operator(username=username, id=id)
        if found is None:
            raise ObjectNotFound("no such account", code="account_not_found")
        return found

    async def act(self, action: str, target: OperatorRecord, actor: str, now: float) -> str | None:
        """Carries out one of :data:`ACTIONS`; ``reset-password`` gives the new
        (generated) password, shown once. Raises :class:`Forbidden` ``own_account``
        (a supervisor disabling themselves) and :class:`ValidationError`."""
        factors = self._accounts.factors
        out = None
        if action == "disable":
            if actor == f"operator:{target.id}":
                raise Forbidden("you cannot disable your own account", code="own_account")
            await factors.set_disabled(target.id, True)
        elif action == "enable":
            await factors.set_disabled(target.id, False)
        elif action == "reset-password":
            out = generate_password()
            await factors.set_password(target.id, await self._accounts.hashing.hash(out))
        elif action == "reset-2fa":
            await factors.reset_second_factor(target.id)
        elif action == "revoke-logins":
            await factors.revoke_logins(target.id)
        else:
            raise ValidationError(f"unknown action {action!r}", code="invalid_action")
        await self._repo.append_audit(
            now, f"account_{action.replace('-', '_')}", actor, f"operator:{target.id}", {}
        )
        if action != "enable" and self._accounts.revoked is not None:
            await self._accounts.revoked(target.id)
        return out
