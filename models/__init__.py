"""Weight files: where they live in MODELS_DIR, where they come from, how they are verified.

This package directory is also the default MODELS_DIR: `classify/` and `detect/` below it
hold downloaded weights and are ignored by git.
"""
