"""Phrase grounding on Flickr30k Entities: samples, region scorer, BCE, Recall@1 and @5."""

from groundattn.tasks.phrase_grounding.dataset import (
    EXCLUDED,
    PHRASE_SEGMENT,
    PhraseGroundingBatch,
    PhraseGroundingDataset,
    collate_phrase_grounding,
)
from groundattn.tasks.phrase_grounding.task import RECALL_AT, PhraseGroundingTask, summarize

__all__ = [
    "EXCLUDED",
    "PHRASE_SEGMENT",
    "RECALL_AT",
    "PhraseGroundingBatch",
    "PhraseGroundingDataset",
    "PhraseGroundingTask",
    "collate_phrase_grounding",
    "summarize",
]
