"""The studio: Gradio UI, command line and server."""

import core  # noqa: F401  (first: keeps the libraries it imports off the Hub, core/offline.py)
