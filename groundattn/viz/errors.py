"""The error of a visualisation that cannot be drawn as asked."""

from groundattn.errors import GroundattnError


class VisualizeError(GroundattnError, ValueError):
    """A sample that cannot be drawn as asked: unknown image, phrase, layer …"""
