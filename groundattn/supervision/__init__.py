"""Attention supervision with phrase-to-region grounding (METHOD §3–§5, §8).

- :func:`direct_loss`, :func:`direct_loss_from_logits`: direct supervision (Eqs. 6–8).
- :func:`semi_direct_loss`, :func:`rollout`: direct supervision of the attention rollout.
- :func:`indirect_loss`, :class:`IndirectGroundingClassifier`: indirect supervision (Eq. 5).
- :func:`grounding_accuracy`, :func:`grounding_hits`, :func:`grounding_chance`: attention
  grounding accuracy and its chance level; :func:`phrase_grounding_hits`: zero-shot
  phrase grounding (Recall@1) by each head.
- :func:`token_spread`: how distinct a sample's regions (or words) stay, layer by layer.
"""

from groundattn.supervision.accuracy import (
    grounding_accuracy,
    grounding_chance,
    grounding_hits,
    phrase_grounding_hits,
)
from groundattn.supervision.direct import direct_loss, direct_loss_from_logits
from groundattn.supervision.indirect import IndirectGroundingClassifier, indirect_loss
from groundattn.supervision.rollout import rollout, semi_direct_loss
from groundattn.supervision.rows import SupervisionLoss, supervised_rows
from groundattn.supervision.spans import max_pool_spans
from groundattn.supervision.spread import token_spread

__all__ = [
    "IndirectGroundingClassifier",
    "SupervisionLoss",
    "direct_loss",
    "direct_loss_from_logits",
    "grounding_accuracy",
    "grounding_chance",
    "grounding_hits",
    "indirect_loss",
    "max_pool_spans",
    "phrase_grounding_hits",
    "rollout",
    "semi_direct_loss",
    "supervised_rows",
    "token_spread",
]
