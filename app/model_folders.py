"""Model folders the user added in the studio (a folder with kelp_model.json each), kept in the store's settings so
they are offered again after a restart, next to the bundled models and the random presets."""

from __future__ import annotations

from pathlib import Path

from core.model_loader import MODEL_INDEX, ModelSource, list_models, resolve_model
from core.store import Store
from core.store.settings import get_setting, set_setting

SETTING = "model_folders"  # a JSON list of absolute folder paths, in the order they were added


def check_model_folder(path) -> tuple[Path, ModelSource]:
    """The folder as an absolute path and what its index says; ValueError naming the folder when it is not a Kelp
    model folder (kelp_model.json with a known preset, transformer/ and vae/ in diffusers' layout)."""
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise ValueError(f"`model folder` must be a folder path, got {path!r}")
    folder = Path(str(path).strip()).expanduser()
    if not folder.is_dir():
        raise ValueError(f"`model folder` {str(folder)!r} is not an existing folder")
    if not (folder / MODEL_INDEX).is_file():
        raise ValueError(f"`model folder` {str(folder)!r} has no {MODEL_INDEX}: it is not a Kelp model folder "
                         f"(one holds {MODEL_INDEX}, transformer/ and vae/)")
    source = resolve_model(str(folder.resolve()))  # reads the index: ValueError for a broken one
    missing = [part for part in ("transformer", "vae") if not (folder / part / "config.json").is_file()]
    if missing:
        raise ValueError(f"`model folder` {str(folder)!r} lacks {' and '.join(f'{m}/config.json' for m in missing)}")
    return folder.resolve(), source


def known_model_folders(store: Store) -> list[Path]:
    """The folders added so far (some may have been moved or deleted since)."""
    with store.db.read() as session:
        saved = get_setting(session, SETTING, [])
    return [Path(entry) for entry in saved if isinstance(entry, str)]


def add_model_folder(store: Store, path) -> Path:
    """Check `path` and remember it; returns it as the absolute path that now names the model."""
    folder, _ = check_model_folder(path)

    def add(session) -> None:
        saved = [entry for entry in get_setting(session, SETTING, []) if isinstance(entry, str)]
        if str(folder) not in saved:
            set_setting(session, SETTING, [*saved, str(folder)])

    store.db.write(add)
    return folder


def remove_model_folder(store: Store, path) -> bool:
    """Forget a folder (its files stay); False when it was not in the list."""

    def remove(session) -> bool:
        saved = [entry for entry in get_setting(session, SETTING, []) if isinstance(entry, str)]
        kept = [entry for entry in saved if entry != str(path)]
        set_setting(session, SETTING, kept)
        return len(kept) != len(saved)

    return store.db.write(remove)


def available_models(store: Store) -> list[str]:
    """Bundled model names, then the added folders that still hold a model, then the random presets."""
    bundled = [name for name in list_models() if not name.startswith("random:")]
    folders = [str(folder) for folder in known_model_folders(store) if (folder / MODEL_INDEX).is_file()]
    randoms = [name for name in list_models() if name.startswith("random:")]
    return bundled + folders + randoms
