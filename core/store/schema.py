"""The history's tables: projects, storyboards and shots, generations (which are also the job queue),
content-addressed assets, LoRAs, training runs, tags and settings.

Times are UTC. Rows the user deletes get `deleted_at` (the trash) and are purged later, files too.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

GENERATION_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINISHED_STATUSES = ("done", "failed", "cancelled", "interrupted")
TRAINING_STATUSES = GENERATION_STATUSES
ASSET_KINDS = ("upload", "output", "thumbnail", "sidecar", "lora", "image")


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Timestamped:
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utc_now, onupdate=utc_now)


class Project(Timestamped, Base):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)

    storyboards: Mapped[list[Storyboard]] = relationship(back_populates="project", cascade="all, delete-orphan")
    generations: Mapped[list[Generation]] = relationship(back_populates="project")


class Storyboard(Timestamped, Base):
    """A multi-shot sequence: ordered shots sharing a subject/style description."""

    __tablename__ = "storyboards"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text, default="")  # prepended to every shot's prompt
    mode: Mapped[str] = mapped_column(String(20), default="native")  # "native" (one pass) or "chained"
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # size, steps, seed, ... shared by shots

    project: Mapped[Project] = relationship(back_populates="storyboards")
    shots: Mapped[list[Shot]] = relationship(
        back_populates="storyboard", order_by="Shot.position", cascade="all, delete-orphan"
    )


class Shot(Timestamped, Base):
    __tablename__ = "shots"

    storyboard_id: Mapped[int] = mapped_column(ForeignKey("storyboards.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 0-based order in the storyboard
    prompt: Mapped[str] = mapped_column(Text, default="")
    num_frames: Mapped[int] = mapped_column(Integer)
    reference_asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))
    chosen_generation_id: Mapped[int | None] = mapped_column(
        ForeignKey("generations.id", ondelete="SET NULL", use_alter=True, name="fk_shots_chosen_generation")
    )
    transition: Mapped[str] = mapped_column(String(20), default="cut")  # into this shot: "cut" or "crossfade"
    trim_start: Mapped[int] = mapped_column(Integer, default=0)  # frames dropped at the start when cutting
    trim_end: Mapped[int] = mapped_column(Integer, default=0)

    storyboard: Mapped[Storyboard] = relationship(back_populates="shots")
    reference: Mapped[Asset | None] = relationship(foreign_keys=[reference_asset_id])
    chosen: Mapped[Generation | None] = relationship(foreign_keys=[chosen_generation_id], post_update=True)



class Asset(Timestamped, Base):
    """A file in the content-addressed store (files/<sha[:2]>/<sha><suffix>)."""

    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("sha256", "suffix", name="uq_assets_sha256_suffix"),)

    sha256: Mapped[str] = mapped_column(String(64), index=True)
    suffix: Mapped[str] = mapped_column(String(16))  # ".mp4", ".png", ".safetensors", ...
    kind: Mapped[str] = mapped_column(String(20))
    size_bytes: Mapped[int] = mapped_column(Integer)
    original_name: Mapped[str] = mapped_column(String(255), default="")


class Generation(Timestamped, Base):
    """One generation job: its full request, its state in the queue, and what it produced."""

    __tablename__ = "generations"
    __table_args__ = (
        Index("ix_generations_status_queue", "status", "queue_position"),
        Index("ix_generations_created", "created_at"),
    )

    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"), index=True)
    shot_id: Mapped[int | None] = mapped_column(ForeignKey("shots.id", ondelete="SET NULL"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("generations.id", ondelete="SET NULL"))  # remix / extend
    source: Mapped[str] = mapped_column(String(20), default="cli")  # "cli", "ui", "api"
    client_id: Mapped[str] = mapped_column(String(64), default="")  # the browser session that queued it

    request: Mapped[dict[str, Any]] = mapped_column()  # GenerationRequest.to_dict()
    prompt: Mapped[str] = mapped_column(Text, default="")  # copied from the request for search
    model: Mapped[str] = mapped_column(String(500), default="", index=True)
    weights_hash: Mapped[str] = mapped_column(String(64), default="")
    seed: Mapped[int | None] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(20), default="t2v")

    status: Mapped[str] = mapped_column(String(20), default="queued")
    queue_position: Mapped[float] = mapped_column(Float, default=0.0)
    worker: Mapped[str] = mapped_column(String(200), default="")  # "host:pid" of the process running it
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)  # seen by the worker between steps
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1
    progress_stage: Mapped[str] = mapped_column(String(20), default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the output's metadata (seed, settings, ...)

    video_asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))
    thumbnail_asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))
    sidecar_asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))
    # Inputs stored with the job, so that it can be re-run and exported: the request refers to these files.
    image_asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))
    last_image_asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))
    extend_video_asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))

    favourite: Mapped[bool] = mapped_column(Boolean, default=False)
    rating: Mapped[int | None] = mapped_column(Integer)  # 1..5
    note: Mapped[str] = mapped_column(Text, default="")
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)

    project: Mapped[Project | None] = relationship(back_populates="generations")
    video: Mapped[Asset | None] = relationship(foreign_keys=[video_asset_id])
    thumbnail: Mapped[Asset | None] = relationship(foreign_keys=[thumbnail_asset_id])
    sidecar: Mapped[Asset | None] = relationship(foreign_keys=[sidecar_asset_id])
    image: Mapped[Asset | None] = relationship(foreign_keys=[image_asset_id])
    last_image: Mapped[Asset | None] = relationship(foreign_keys=[last_image_asset_id])
    extend_video: Mapped[Asset | None] = relationship(foreign_keys=[extend_video_asset_id])
    tags: Mapped[list[Tag]] = relationship(secondary="generation_tags", back_populates="generations")


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)

    generations: Mapped[list[Generation]] = relationship(secondary="generation_tags", back_populates="tags")


class GenerationTag(Base):
    __tablename__ = "generation_tags"

    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True)


class TrainingRun(Timestamped, Base):
    __tablename__ = "training_runs"

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="lora")  # "lora", "dit", "vae"
    base_model: Mapped[str] = mapped_column(String(500), default="")
    recipe: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    worker: Mapped[str] = mapped_column(String(200), default="")
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[list[Any]] = mapped_column(default=list)  # [{"step": .., "loss": ..}, ...]
    output_dir: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class Lora(Timestamped, Base):
    __tablename__ = "loras"

    name: Mapped[str] = mapped_column(String(200))
    base_model: Mapped[str] = mapped_column(String(500), default="")
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="RESTRICT"))
    training_run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    trigger: Mapped[str] = mapped_column(String(200), default="")  # the made-up word its captions use
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)  # rank, alpha, targets, ...
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)

    asset: Mapped[Asset] = relationship()
    training_run: Mapped[TrainingRun | None] = relationship()


class Setting(Base):
    """User defaults that persist (UI settings), one JSON value per key."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
