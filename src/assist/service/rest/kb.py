"""KB CRUD, version history, search and reindex. Edits are searchable at once, without a restart."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from assist import limits
from assist.errors import ValidationError
from assist.service.auth import require
from assist.service.deps import KbDep
from assist.shop.models import KbContent, KbEntry, KbId, KbStatus
from assist.store.records import Scope
from assist.types import Intent, Retrieval

router = APIRouter(prefix="/v1/kb", tags=["kb"])

# Consoles search and read the KB (Ctrl+K); only admin keys change it.
_READ = [require(Scope.console)]
_EDIT = [require(Scope.admin)]


class _KbContent(KbContent):
    """What an editor writes of an entry (``version`` and ``updated_at`` are set by the store).

    ``_entry`` validates the result as a ``KbEntry`` too (ids, whitespace)."""


class KbEntryIn(_KbContent):
    """A new entry (POST)."""

    id: KbId


class KbEntryUpdate(_KbContent):
    """A full replacement of an entry's content (PUT); ``expected_version`` guards concurrent edits."""

    expected_version: int | None = Field(None, ge=0, le=limits.SEQ_MAX, description="refuse (409) unless the stored version is this")


class KbEntryOut(BaseModel):
    id: str
    question: str
    similar: list[str]
    answer: str
    category: str
    skus: list[str]
    tags: list[str]
    intent: Intent | None
    version: int
    status: KbStatus
    updated_at: datetime | None


class KbEntriesOut(BaseModel):
    entries: list[KbEntryOut]


class ReindexOut(BaseModel):
    entries: int = Field(description="published entries in the new index")
    ms: float


def _entry(body: KbEntryIn | KbEntryUpdate, entry_id: str) -> KbEntry:
    data = body.model_dump(exclude={"expected_version"})
    data["id"] = entry_id
    try:
        return KbEntry.model_validate(data)
    except ValueError as exc:  # KbEntry's own validators (e.g. blank similar phrasings)
        raise ValidationError(str(exc)) from None


@router.get("/entries", response_model=KbEntriesOut, dependencies=_READ)
async def list_entries(kb: KbDep, status_: Annotated[KbStatus | None, Query(alias="status")] = None,
                       include_retired: bool = False) -> dict[str, list[KbEntry]]:
    """Current version of every entry (retired ones only when asked or filtered for)."""
    return {"entries": await kb.list_entries(status=status_, include_retired=include_retired)}


@router.post("/entries", response_model=KbEntryOut, status_code=status.HTTP_201_CREATED, dependencies=_EDIT)
async def create_entry(body: KbEntryIn, kb: KbDep) -> KbEntry:
    """Create an entry (version 1); 409 ``kb.entry_exists`` if the id is taken (also by a retired entry)."""
    return await kb.create(_entry(body, body.id))


@router.get("/entries/{entry_id}", response_model=KbEntryOut, dependencies=_READ)
async def get_entry(entry_id: KbId, kb: KbDep) -> KbEntry:
    return await kb.get(entry_id)


@router.put("/entries/{entry_id}", response_model=KbEntryOut, dependencies=_EDIT)
async def update_entry(entry_id: KbId, body: KbEntryUpdate, kb: KbDep) -> KbEntry:
    """Replace an entry: a new version in the history, live in search at once (identical content: no-op)."""
    return await kb.update(_entry(body, entry_id), expected_version=body.expected_version)


@router.delete("/entries/{entry_id}", response_model=KbEntryOut, dependencies=_EDIT)
async def delete_entry(entry_id: KbId, kb: KbDep) -> KbEntry:
    """Retire an entry: out of search at once, kept in history as a new ``retired`` version."""
    return await kb.retire(entry_id)


@router.get("/entries/{entry_id}/history", response_model=KbEntriesOut, dependencies=_READ)
async def entry_history(entry_id: KbId, kb: KbDep) -> dict[str, list[KbEntry]]:
    """Every saved version of the entry, oldest first."""
    return {"entries": await kb.history(entry_id)}


@router.get("/search", response_model=Retrieval, dependencies=_READ)
async def search(kb: KbDep, q: Annotated[str, Query(min_length=1, max_length=limits.QUERY_MAX)],
                 k: Annotated[int, Query(ge=1, le=50)] = 5,
                 category: Annotated[str | None, Query(max_length=limits.KB_CATEGORY_MAX)] = None,
                 sku: Annotated[list[str] | None, Query(max_length=limits.SKUS_MAX,
                                                        description="products in context")] = None) -> Retrieval:
    """Search the live index as the pipeline does for a customer turn."""
    return await kb.search(q, k=k, category=category, skus=sku)


@router.post("/reindex", response_model=ReindexOut, dependencies=_EDIT)
async def reindex(kb: KbDep) -> dict[str, float]:
    """Rebuild the index from the store's published entries and swap it in (searches continue meanwhile)."""
    return await kb.reindex()
