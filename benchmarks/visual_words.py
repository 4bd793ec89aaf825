"""Does a pretrained model read the image to fill a masked word? Colour words, one at a time.

    .venv/bin/python benchmarks/visual_words.py --model runs/experiment/pretrain/model [--split val]

For every caption of the split that names exactly one colour word, that word
alone is masked and the model's MLM head chooses among the colour words (each
synonym counts for its colour). Printed beside its accuracy: the best constant
answer (the most frequent colour of those captions) and uniform chance. The
colour is in the region features (a linear probe reads it off them), and the
caption's other words do not tell it; so a model that reads the regions beats
the constant answer by far, and one that fills masks from the text stays at it.

``--colours red,green,…`` replaces the embedded scenes' colour words (e.g. for
another data set); a colour word must be one word piece.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

from groundattn.data.scenes.language import COLOUR_WORDS
from groundattn.eval.saved import load_run
from groundattn.model import load_tokenizer
from groundattn.tasks.pretrain.dataset import IGNORE, collate_pretrain


def masked_colour_samples(dataset, colour_of: dict[int, str], mask_id: int) -> list[dict]:
    """The dataset's samples whose caption holds exactly one colour word, that word masked."""
    samples = []
    for index in range(len(dataset)):
        sample = dataset[index]
        # The dataset masks at random: its labels hold the original of each masked token.
        tokens = [
            label if label != IGNORE else token
            for token, label in zip(sample["token_ids"], sample["mlm_labels"], strict=True)
        ]
        at = [k for k, token in enumerate(tokens) if token in colour_of]
        if len(at) != 1:
            continue
        labels = [IGNORE] * len(tokens)
        labels[at[0]] = tokens[at[0]]
        tokens[at[0]] = mask_id
        samples.append({**sample, "token_ids": tokens, "mlm_labels": labels})
    return samples


@torch.no_grad()
def colour_predictions(task, samples: list[dict], colour_ids: list[int], batch_size: int = 64):
    """(true, predicted) colour word ids, the prediction restricted to ``colour_ids``."""
    task.eval()
    true, predicted = [], []
    choices = torch.tensor(colour_ids)
    for start in range(0, len(samples), batch_size):
        batch = collate_pretrain(samples[start : start + batch_size])
        hidden = task.encoder(batch.inputs).last_hidden_state
        at = batch.mlm_labels != IGNORE
        logits = task.mlm(hidden[at], task.encoder.embeddings.word_embeddings.weight)
        true += batch.mlm_labels[at].tolist()
        predicted += choices[logits[:, choices].argmax(-1)].tolist()
    return true, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a pretraining run's model/ directory")
    parser.add_argument("--split", default="val")
    parser.add_argument("--data", default=None, help="data set root (default: the run's own)")
    parser.add_argument("--colours", default=None, help="comma-separated colour words")
    args = parser.parse_args()

    saved = load_run(args.model, args.data, task="pretrain")
    tokenizer = load_tokenizer(saved.recipe.config.model.bert)
    words = (
        {w: w for w in args.colours.split(",")}
        if args.colours
        else {w: colour for colour, ws in COLOUR_WORDS.items() for w in ws}
    )
    colour_of = {}
    for word, colour in words.items():
        pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
        if len(pieces) == 1:
            colour_of[pieces[0]] = colour
    dataset = saved.recipe.eval_dataset(tokenizer, args.split)
    samples = masked_colour_samples(dataset, colour_of, tokenizer.mask_token_id)
    true, predicted = colour_predictions(saved.task, samples, sorted(colour_of))
    truth = [colour_of[t] for t in true]
    right = sum(colour_of[p] == t for p, t in zip(predicted, truth, strict=True))
    counts = Counter(truth)
    constant = counts.most_common(1)[0][1]
    print(f"{args.model}, {args.split}: {len(samples)} captions with one colour word")
    print(f"  colour filled from the image: {right / len(samples):.3f} ({right})")
    print(
        f"  best constant answer:         {constant / len(samples):.3f} ({counts.most_common(1)[0][0]})"
    )
    print(f"  uniform chance:               {1 / len(counts):.3f} ({len(counts)} colours)")
    guessed = Counter(colour_of[p] for p in predicted).most_common(3)
    print("  most often chosen: " + ", ".join(f"{c} {n}" for c, n in guessed))


if __name__ == "__main__":
    main()
