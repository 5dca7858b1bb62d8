"""Identity (tokens, sign-in) and administration (users, projects, pipelines, members)."""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qcdaemon.config import DEFAULT_RAWTOOLS_ARGS
from qcdaemon.core import security
from qcdaemon.errors import BadRequest, ConfigError, NotFound
from qcdaemon.search.params import SearchParams
from qcdaemon.service.base import ServiceBase, found
from qcdaemon.store import Store
from qcdaemon.store.rows import PipelineRow, ProjectRow, UserRow


def slugify(value: str) -> str:
    """Django's slugify: ASCII, lower case, runs of spaces/dashes to one dash."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value.lower())
    return re.sub(r"[-\s]+", "-", value).strip("-_")


def _resolved(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


class Accounts(ServiceBase):
    """Tokens and sign-in; users, projects, pipelines and members (the CLI's administration)."""

    # -- identity -----------------------------------------------------------------------------

    async def user_for_token(self, token: str) -> UserRow | None:
        return await self.store.light(Store.user_by_token_digest, security.digest(token))

    async def login(self, email: str, password: str) -> UserRow | None:
        user = await self.store.call(Store.user_by_email, email)
        ok = await asyncio.to_thread(security.verify_password, password, user["password_hash"] if user else None)
        return user if ok and user else None

    async def token_create(self, user: UserRow) -> tuple[str, bool]:
        """The user's one token: existing (created False) or new (created True).

        Look-up and creation are one step on the store thread, so that concurrent requests of one
        user cannot each create a token (the later one silently replacing the earlier one).
        """
        key = self.key

        def work(store: Store) -> tuple[str, bool]:
            row = store.token_of(user["id"])
            if row:
                token = security.unseal(key, row["sealed"])
                if token is not None and security.same(security.digest(token), row["digest"]):
                    return token, False
            token = security.new_token()
            store.put_token(user["id"], security.digest(token), security.seal(key, token))
            return token, True

        return await self.store.call(work)

    async def token_revoke(self, user: UserRow) -> bool:
        return await self.store.call(Store.delete_token, user["id"])

    # -- administration (CLI) ---------------------------------------------------------------

    async def add_user(self, email: str, password: str | None, admin: bool = False) -> UserRow:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            raise BadRequest(f"{email!r} is not an e-mail address")
        hashed = await asyncio.to_thread(security.hash_password, password) if password else None
        uid = await self.store.call(Store.create_user, email, hashed, admin)
        return found(await self.store.call(Store.user, uid), f"user {email}")

    async def add_project(self, name: str, description: str = "", members: Sequence[str] = (),
                          created_by: str | None = None) -> ProjectRow:
        slug = slugify(name)
        if not slug:
            raise BadRequest(f"project name {name!r} gives an empty slug")
        users = [await self._user(m) for m in members]
        creator = await self._user(created_by) if created_by else None
        pid = await self.store.call(Store.create_project, name, slug, description, creator["id"] if creator else None)
        for u in users:
            await self.store.call(Store.add_member, pid, u["id"])
        return found(await self.store.call(Store.project_by_slug, slug), f"project {slug}")

    async def add_pipeline(self, project: str, name: str, *, fasta: str | None = None, mqpar: str | None = None,
                           rawtools_args: str | None = None, read_only: bool = False,
                           search: dict[str, Any] | None = None) -> PipelineRow:
        """``search``: the pipeline's own search parameters over ``[engine.search]`` (docs/search.md)."""
        proj = await self.store.call(Store.project_by_slug, project)
        if proj is None:
            raise NotFound(f"no project with slug {project!r}")
        for label, p in (("fasta", fasta), ("mqpar", mqpar)):
            if p and not await asyncio.to_thread(Path(p).is_file):
                raise BadRequest(f"{label} file {p} does not exist")
        if search:
            try:
                SearchParams.from_config(self.cfg.engine.search, search)
            except ConfigError as exc:
                raise BadRequest(str(exc)) from None
        fasta, mqpar = await asyncio.to_thread(_resolved, fasta), await asyncio.to_thread(_resolved, mqpar)
        slug = slugify(name)
        path = self.cfg.files.pipelines / proj["slug"] / slug
        pipeline = await self.store.call(Store.create_pipeline,
            proj["id"], name, slug, str(path),
            fasta_path=fasta, mqpar_path=mqpar,
            rawtools_args=rawtools_args or DEFAULT_RAWTOOLS_ARGS, read_only=read_only,
            search_params=json.dumps(search, sort_keys=True) if search else None,
        )
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        return pipeline

    async def add_member(self, project: str, email: str) -> None:
        proj = await self.store.call(Store.project_by_slug, project)
        if proj is None:
            raise NotFound(f"no project with slug {project!r}")
        await self.store.call(Store.add_member, proj["id"], (await self._user(email))["id"])

    async def _user(self, email: str) -> UserRow:
        u = await self.store.call(Store.user_by_email, email)
        if u is None:
            raise NotFound(f"no user {email}")
        return u
