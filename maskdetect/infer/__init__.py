"""Inference stage: load an export and run it on images, videos, cameras and streams; video I/O; annotation."""
