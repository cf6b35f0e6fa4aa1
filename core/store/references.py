"""Which assets are still in use: a file may be purged only when no row points at it."""

from __future__ import annotations

from sqlalchemy import select, union
from sqlalchemy.orm import Session

from core.store.schema import Asset, Generation, Lora, Shot

# Every column that points at an asset; a new one must be added here or its files could be purged.
ASSET_REFERENCES = (
    Generation.video_asset_id,
    Generation.thumbnail_asset_id,
    Generation.sidecar_asset_id,
    Generation.image_asset_id,
    Generation.last_image_asset_id,
    Generation.extend_video_asset_id,
    Shot.reference_asset_id,
    Lora.asset_id,
)


def referenced_asset_ids(session: Session) -> set[int]:
    """Ids of assets some row points at (rows in the trash still count: they can be restored)."""
    query = union(*(select(column).where(column.is_not(None)) for column in ASSET_REFERENCES))
    return set(session.scalars(query))


def unreferenced_assets(session: Session) -> list[Asset]:
    used = referenced_asset_ids(session)
    return [asset for asset in session.scalars(select(Asset).order_by(Asset.id)) if asset.id not in used]
