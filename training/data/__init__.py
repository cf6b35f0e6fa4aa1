"""Training data: the procedural toy world the bundled model learns from."""
