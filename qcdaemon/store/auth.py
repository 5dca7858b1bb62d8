"""Users, projects, pipelines, tokens and sessions, and who may see what."""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from typing import Any

from qcdaemon.core.clock import utcnow
from qcdaemon.errors import Conflict, NotFound
from qcdaemon.store.base import StoreBase
from qcdaemon.store.rows import PipelineRow, ProjectRow, SessionRow, TokenRow, UserRow, UserSummary

# The visibility test is parenthesised: callers append "AND p.slug = ?", which must narrow every
# branch of the OR (without the parentheses an admin or a creator got an arbitrary project).
_VISIBLE_PROJECTS = """
    SELECT p.* FROM projects p
    WHERE (? OR p.created_by = ? OR EXISTS (
        SELECT 1 FROM project_members m WHERE m.project_id = p.id AND m.user_id = ?))
"""


class AuthQueries(StoreBase):
    # -- users ------------------------------------------------------------------------------

    def create_user(self, email: str, password_hash: str | None, is_admin: bool = False) -> int:
        if self.user_by_email(email):
            raise Conflict(f"user {email} already exists")
        uid = self.next_id("seq_users")
        self.execute(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?)", [uid, email.lower(), password_hash, is_admin, utcnow()]
        )
        return uid

    def set_password(self, user_id: int, password_hash: str) -> None:
        self.execute("UPDATE users SET password_hash = ? WHERE id = ?", [password_hash, user_id])

    def set_admin(self, user_id: int, is_admin: bool) -> None:
        self.execute("UPDATE users SET is_admin = ? WHERE id = ?", [is_admin, user_id])

    def user_by_email(self, email: str) -> UserRow | None:
        return self.row("SELECT * FROM users WHERE email = ?", [email.strip().lower()])

    def user(self, user_id: int) -> UserRow | None:
        return self.row("SELECT * FROM users WHERE id = ?", [user_id])

    def users(self) -> list[UserSummary]:
        return self.rows("SELECT id, email, is_admin, created_at FROM users ORDER BY email")

    # -- projects ---------------------------------------------------------------------------

    def create_project(self, name: str, slug: str, description: str, created_by: int | None) -> int:
        if self.row("SELECT id FROM projects WHERE name = ? OR slug = ?", [name, slug]):
            raise Conflict(f"a project named {name!r} (slug {slug!r}) already exists")
        pid = self.next_id("seq_projects")
        self.execute(
            "INSERT INTO projects VALUES (?, ?, ?, ?, ?, ?)", [pid, name, slug, description, created_by, utcnow()]
        )
        return pid

    def add_member(self, project_id: int, user_id: int) -> None:
        self.execute(
            "INSERT INTO project_members VALUES (?, ?) ON CONFLICT DO NOTHING", [project_id, user_id]
        )

    def project_members(self, project_id: int) -> list[str]:
        rows = self.rows(
            "SELECT u.email FROM project_members m JOIN users u ON u.id = m.user_id WHERE m.project_id = ?"
            " ORDER BY u.email",
            [project_id],
        )
        return [r["email"] for r in rows]

    def members_of(self, project_id: int) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT u.id, u.email, u.is_admin FROM project_members m JOIN users u ON u.id = m.user_id"
            " WHERE m.project_id = ? ORDER BY u.email", [project_id])

    def remove_member(self, project_id: int, user_id: int) -> bool:
        n = self.scalar("SELECT count(*) FROM project_members WHERE project_id = ? AND user_id = ?", [project_id, user_id])
        self.execute("DELETE FROM project_members WHERE project_id = ? AND user_id = ?", [project_id, user_id])
        return bool(n)

    def project_by_slug(self, slug: str) -> ProjectRow | None:
        return self.row("SELECT * FROM projects WHERE slug = ?", [slug])

    def projects_all(self) -> list[ProjectRow]:
        return self.rows("SELECT * FROM projects ORDER BY name")

    def visible_projects(self, user: UserRow) -> list[ProjectRow]:
        return self.rows(
            _VISIBLE_PROJECTS + " ORDER BY p.name, p.id", [bool(user["is_admin"]), user["id"], user["id"]]
        )

    def visible_project(self, user: UserRow, slug: str) -> ProjectRow | None:
        return self.row(_VISIBLE_PROJECTS + " AND p.slug = ?", [bool(user["is_admin"]), user["id"], user["id"], slug])

    # -- pipelines --------------------------------------------------------------------------

    def create_pipeline(
        self,
        project_id: int,
        name: str,
        slug: str,
        path: str,
        *,
        fasta_path: str | None = None,
        mqpar_path: str | None = None,
        rawtools_args: str,
        read_only: bool = False,
        created_by: int | None = None,
        uuid: str | None = None,
        search_params: str | None = None,
    ) -> PipelineRow:
        if self.row("SELECT id FROM pipelines WHERE project_id = ? AND slug = ?", [project_id, slug]):
            raise Conflict(f"the project already has a pipeline with slug {slug!r}")
        pid = self.next_id("seq_pipelines")
        self.execute(
            "INSERT INTO pipelines (id, uuid, project_id, name, slug, path, fasta_path, mqpar_path, rawtools_args,"
            " read_only, created_by, created_at, search_params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [pid, uuid or str(uuidlib.uuid4()), project_id, name, slug, path, fasta_path, mqpar_path,
             rawtools_args, read_only, created_by, utcnow(), search_params],
        )
        return self.pipeline(pid)

    def pipeline(self, pipeline_id: int) -> PipelineRow:
        p = self.row(
            "SELECT pl.*, p.slug AS project_slug FROM pipelines pl JOIN projects p ON p.id = pl.project_id"
            " WHERE pl.id = ?",
            [pipeline_id],
        )
        if p is None:
            raise NotFound(f"pipeline {pipeline_id} does not exist")
        return p

    def pipelines_of(self, project_id: int) -> list[PipelineRow]:
        return self.rows("SELECT * FROM pipelines WHERE project_id = ? ORDER BY name, id", [project_id])

    def pipelines_all(self) -> list[PipelineRow]:
        return self.rows(
            "SELECT pl.*, p.slug AS project_slug FROM pipelines pl JOIN projects p ON p.id = pl.project_id"
            " ORDER BY p.slug, pl.slug"
        )

    def find_pipeline(self, ref: str) -> PipelineRow | None:
        """By uuid, or by ``project-slug/pipeline-slug``."""
        if "/" in ref:
            proj, _, slug = ref.partition("/")
            return self.row(
                "SELECT pl.*, p.slug AS project_slug FROM pipelines pl JOIN projects p ON p.id = pl.project_id"
                " WHERE p.slug = ? AND pl.slug = ?",
                [proj, slug],
            )
        return self.row(
            "SELECT pl.*, p.slug AS project_slug FROM pipelines pl JOIN projects p ON p.id = pl.project_id"
            " WHERE pl.uuid = ?",
            [ref],
        )

    def visible_pipeline(self, user: UserRow, project_slug: str, slug: str) -> PipelineRow | None:
        project = self.visible_project(user, project_slug)
        if project is None:
            return None
        return self.row(
            "SELECT *, ? AS project_slug FROM pipelines WHERE project_id = ? AND slug = ?",
            [project_slug, project["id"], slug],
        )

    def visible_pipeline_by_uuid(self, user: UserRow, uuid: str) -> PipelineRow | None:
        p = self.find_pipeline(uuid) if "/" not in uuid else None
        if p is None:
            return None
        return p if self.visible_project(user, p["project_slug"]) else None

    # -- tokens -----------------------------------------------------------------------------

    def token_of(self, user_id: int) -> TokenRow | None:
        return self.row("SELECT * FROM tokens WHERE user_id = ?", [user_id])

    def put_token(self, user_id: int, digest: str, sealed: str) -> None:
        with self.transaction():
            self.execute("DELETE FROM tokens WHERE user_id = ?", [user_id])
            self.execute("INSERT INTO tokens VALUES (?, ?, ?, ?)", [user_id, digest, sealed, utcnow()])

    def delete_token(self, user_id: int) -> bool:
        existed = self.token_of(user_id) is not None
        self.execute("DELETE FROM tokens WHERE user_id = ?", [user_id])
        return existed

    def user_by_token_digest(self, digest: str) -> UserRow | None:
        return self.row(
            "SELECT u.*, t.digest AS token_digest FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.digest = ?",
            [digest],
        )

    # -- sessions ---------------------------------------------------------------------------

    def create_session(self, digest: str, user_id: int | None, csrf: str, hours: float) -> None:
        now = utcnow()
        self.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
            [digest, user_id, csrf, now, now + dt.timedelta(hours=hours)],
        )

    def session(self, digest: str) -> SessionRow | None:
        return self.row("SELECT * FROM sessions WHERE digest = ? AND expires_at > ?", [digest, utcnow()])

    def delete_session(self, digest: str) -> None:
        self.execute("DELETE FROM sessions WHERE digest = ?", [digest])

    def purge_sessions(self) -> int:
        n = self.scalar("SELECT count(*) FROM sessions WHERE expires_at <= ?", [utcnow()])
        self.execute("DELETE FROM sessions WHERE expires_at <= ?", [utcnow()])
        return int(n)
