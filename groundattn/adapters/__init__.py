"""Supervise the attention of other single-stream models (issue 13).

An adapter locates one model family's text and region tokens in its own
sequence; the losses of :mod:`groundattn.supervision` then apply unchanged to
that model's attention (see :mod:`groundattn.adapters.base`).

- :class:`Adapter`, :class:`SequenceLayout`, :func:`concatenated_layout`: what an
  adapter provides, and the text-then-regions layout most models share.
- :func:`ground`, :class:`GroundedSequence`, :func:`token_region_matrix`: a grounding
  in input columns moved to sequence positions.
- :class:`VisualBertAdapter`: Hugging Face's ``VisualBertModel``.
"""

from groundattn.adapters.base import (
    Adapter,
    GroundedSequence,
    GroundingError,
    SequenceLayout,
    concatenated_layout,
    ground,
    token_region_matrix,
)
from groundattn.adapters.visualbert import VisualBertAdapter

__all__ = [
    "Adapter",
    "GroundedSequence",
    "GroundingError",
    "SequenceLayout",
    "VisualBertAdapter",
    "concatenated_layout",
    "ground",
    "token_region_matrix",
]
