"""Toy world: procedural captioned videos (shapes, digits, photo pans), deterministic by seed."""

from training.data.toy_world.clips import caption_vocabulary, toy_clip, toy_shots
from training.data.toy_world.dataset import ToyShotsDataset, ToyWorldDataset, build_dataset, collate_clips
from training.data.toy_world.held_out import HELD_OUT_PHOTOS, HELD_OUT_TRIPLES, held_out_triples
from training.data.toy_world.render import render_clip
from training.data.toy_world.sampling import sample_truth
from training.data.toy_world.shots import sample_shots
from training.data.toy_world.truth import ClipTruth, ObjectTruth, ToyClip, ToyShots

__all__ = [
    "HELD_OUT_PHOTOS",
    "HELD_OUT_TRIPLES",
    "ClipTruth",
    "ObjectTruth",
    "ToyClip",
    "ToyShots",
    "ToyShotsDataset",
    "ToyWorldDataset",
    "build_dataset",
    "collate_clips",
    "caption_vocabulary",
    "held_out_triples",
    "render_clip",
    "sample_shots",
    "sample_truth",
    "toy_clip",
    "toy_shots",
]
