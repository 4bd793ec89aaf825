"""The error of a visualisation that cannot be drawn as asked."""


class VisualizeError(ValueError):
    """A sample that cannot be drawn as asked: unknown image, phrase, layer …"""
