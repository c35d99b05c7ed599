"""The images a customer's onboarding stored for their session: the document's sides
and portrait, the selfie. The operator's console shows them, and the live analysis
compares the face in the call with the portrait and the selfie."""

from __future__ import annotations

from ..db import Repository
from ..errors import ValidationError
from ..storage import ObjectStore


class SessionImages:
    def __init__(self, repo: Repository, objects: ObjectStore) -> None:
        self._repo = repo
        self._objects = objects

    async def image(self, session_id: str, name: str) -> tuple[str, bytes]:
        """One image (``front``, ``back``, ``portrait``, ``selfie``): its content type
        and bytes. Raises ValidationError (``image_not_found``)."""
        results = await self._repo.results(session_id)
        document = results.get("document", {})
        ids = dict(document.get("sides", {}))
        if document.get("portrait"):
            ids["portrait"] = document["portrait"]
        if results.get("selfie"):
            ids["selfie"] = results["selfie"]["object"]
        if name not in ids:
            raise ValidationError("no such image in this session", code="image_not_found")
        stored, data = await self._objects.get(ids[name])
        if stored.session_id != session_id:  # pragma: no cover - ids come from this session
            raise ValidationError("no such image in this session", code="image_not_found")
        return stored.content_type, data

    async def reference_photos(self, session_id: str) -> dict[str, bytes]:
        """The photos the live face is compared with: the document's portrait (named
        ``document``) and the selfie, those that exist."""
        out = {}
        for name, key in (("portrait", "document"), ("selfie", "selfie")):
            try:
                out[key] = (await self.image(session_id, name))[1]
            except ValidationError:
                continue
        return out
