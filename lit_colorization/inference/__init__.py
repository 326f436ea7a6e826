"""Colorizing: a checkpoint (or the authors' weights) to ab, and photo files in and out."""

__all__ = ["colorizer", "network_output", "official", "photo_files"]
