"""Projects: create, rename, describe, list with their generation counts, and move to the trash and back.

A trashed project keeps its generations; they are hidden with it (see history.list_generations) and are
purged with it (trash.purge_trash).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.store.checks import check_name, check_text, get_row, restore_row, trash_row
from core.store.schema import Generation, Project

MAX_DESCRIPTION_CHARS = 10_000


@dataclass(frozen=True)
class ProjectSummary:
    project: Project
    generation_count: int  # generations not in the trash


def create_project(session: Session, name: str, description: str = "") -> Project:
    project = Project(name=check_name("name", name),
                      description=check_text("description", description, MAX_DESCRIPTION_CHARS))
    session.add(project)
    session.flush()
    return project


def get_project(session: Session, project_id: int) -> Project:
    return get_row(session, Project, project_id, "project_id")


def rename_project(session: Session, project_id: int, name: str) -> Project:
    project = get_project(session, project_id)
    project.name = check_name("name", name)
    return project


def describe_project(session: Session, project_id: int, description: str) -> Project:
    project = get_project(session, project_id)
    project.description = check_text("description", description, MAX_DESCRIPTION_CHARS)
    return project


def list_projects(session: Session, *, include_deleted: bool = False) -> list[ProjectSummary]:
    """Projects newest first, each with how many of its generations are not in the trash."""
    count = func.count(Generation.id)
    query = (
        select(Project, count)
        .outerjoin(Generation, (Generation.project_id == Project.id) & Generation.deleted_at.is_(None))
        .group_by(Project.id)
        .order_by(Project.created_at.desc(), Project.id.desc())
    )
    if not include_deleted:
        query = query.where(Project.deleted_at.is_(None))
    return [ProjectSummary(project, generations) for project, generations in session.execute(query)]


def trash_project(session: Session, project_id: int) -> Project:
    return trash_row(session, Project, project_id, "project_id")


def restore_project(session: Session, project_id: int) -> Project:
    return restore_row(session, Project, project_id, "project_id")
