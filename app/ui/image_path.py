"""An image upload that hands the file's path on unread. Gradio writes a type stub (image_path.pyi) beside any
module that defines a component class, so this class has a module of its own and its stub is committed."""

from __future__ import annotations

import gradio as gr


class ImagePath(gr.Image):
    """gr.Image that hands the uploaded file's path on unread, so that the engine's own check names a file that
    is not an image (gr.Image would fail inside Gradio with a bare PIL error)."""

    is_template = True  # rendered by gr.Image's frontend

    def preprocess(self, payload):
        return None if payload is None else str(payload.path)
