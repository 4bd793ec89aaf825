"""Linear probes of image-description identification on a VGP model's final states.

    .venv/bin/python benchmarks/identification_probe.py --model runs/vgp-long/vgp/none/seed-0/model

Fits a logistic regression (scikit-learn) on the final states of ``--train``
training samples and scores it on ``--val`` validation samples, for the
``[CLS]`` state alone, the two captions' mean-pooled tokens, and those with
the mean-pooled candidate regions; beside them, the model's own
identification head. A probe far above the head says the ``[CLS]`` route is
the bottleneck; probes no better than the head say the encoder itself has not
computed the caption-to-image match.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader, Subset

from groundattn.eval.saved import load_run
from groundattn.model import load_tokenizer

FEATURES = {  # name: the pooled states it reads (0 [CLS], 1 caption 1, 2 caption 2, 3 regions)
    "[CLS]": [0],
    "caption 1 + caption 2": [1, 2],
    "caption 1 + caption 2 + regions": [1, 2, 3],
}


def _mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask[..., None].float()  # (B, N, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)  # (B, D)


@torch.no_grad()
def pooled_states(saved, split: str, samples: int, seed: int = 0):
    """(S, 4, D) pooled final states, (S,) labels and the head's accuracy on S samples of a split."""
    recipe, task = saved.recipe, saved.task.eval()
    dataset = recipe.eval_dataset(load_tokenizer(recipe.config.model.bert), split)
    dataset.set_epoch(0)
    chosen = np.random.default_rng(seed).permutation(len(dataset))[:samples]
    states, labels, hits = [], [], []
    for batch in DataLoader(Subset(dataset, chosen), batch_size=32, collate_fn=recipe.collate):
        out = task.encoder(batch.inputs)
        hidden = out.last_hidden_state  # (B, N, D)
        segments = batch.inputs.segment_ids
        pooled = [
            hidden[:, 0],
            _mean(hidden, out.text_mask & (segments == 0)),
            _mean(hidden, out.text_mask & (segments == 1)),
            _mean(hidden, batch.inputs.candidate_mask),
        ]
        states.append(torch.stack(pooled, 1))
        labels.append(batch.id_labels)
        hits.append(task.identification(hidden[:, 0]).argmax(-1) == batch.id_labels)
    return (
        torch.cat(states).numpy(),
        torch.cat(labels).numpy(),
        float(torch.cat(hits).float().mean()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a VGP run's model/ directory")
    parser.add_argument("--train", type=int, default=3000, help="training samples for the probes")
    parser.add_argument(
        "--val", type=int, default=2000, help="validation samples they are scored on"
    )
    args = parser.parse_args()
    saved = load_run(args.model, task="vgp")
    x_train, y_train, _ = pooled_states(saved, saved.recipe.config.data.train_split, args.train)
    x_val, y_val, head = pooled_states(saved, saved.recipe.config.data.val_split, args.val)
    print(
        f"majority class {np.bincount(y_val).max() / len(y_val):.3f}, the model's head {head:.3f}"
    )
    for name, columns in FEATURES.items():
        probe = LogisticRegression(max_iter=2000).fit(
            x_train[:, columns].reshape(len(x_train), -1), y_train
        )
        score = probe.score(x_val[:, columns].reshape(len(x_val), -1), y_val)
        print(f"linear probe on {name}: {score:.3f}")


if __name__ == "__main__":
    main()
