"""Tasks: what the encoder is trained and evaluated on (VGP, VQA, referring expressions,
phrase grounding)."""
