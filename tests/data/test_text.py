import pytest

from groundattn.data.flickr30k import parse_caption
from groundattn.data.text import tokenize_captions
from groundattn.model import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def _pieces(tokenizer, tokenized, span):
    return tokenizer.convert_ids_to_tokens(tokenized.token_ids[span[0] : span[1]])


def test_every_word_piece_of_a_phrase_and_nothing_else(tokenizer):
    caption = parse_caption(
        "[/EN#1/people A skateboarding man] waves at [/EN#2/other the unbelievably tall tower] ."
    )
    (tok,) = tokenize_captions(tokenizer, [caption], max_tokens=64)
    first, second = tok.phrase_spans
    assert _pieces(tokenizer, tok, first) == tokenizer.tokenize("A skateboarding man")
    assert _pieces(tokenizer, tok, second) == tokenizer.tokenize("the unbelievably tall tower")
    # The token right after a phrase is not in its span (METHOD §6, defect 2).
    assert tokenizer.convert_ids_to_tokens(tok.token_ids[first[1]]) == "waves"
    assert tok.dropped_phrases == 0


def test_truncation_never_cuts_a_phrase(tokenizer):
    caption = parse_caption("[/EN#1/people A man] in [/EN#2/clothing an orange hat] sleeps .")
    full = tokenize_captions(tokenizer, [caption], max_tokens=64)[0]
    start, end = full.phrase_spans[1]  # "an orange hat"
    cut = tokenize_captions(tokenizer, [caption], max_tokens=start + 1)[
        0
    ]  # the cut falls inside the phrase
    assert len(cut.token_ids) == start  # moved back to the phrase's start
    assert cut.phrase_spans == [full.phrase_spans[0], None] and cut.dropped_phrases == 1
    kept = tokenize_captions(tokenizer, [caption], max_tokens=end)[0]  # the cut right after it
    assert kept.phrase_spans == full.phrase_spans and len(kept.token_ids) == end


def test_bad_budget_raises(tokenizer):
    with pytest.raises(ValueError, match="max_tokens"):
        tokenize_captions(tokenizer, [parse_caption("a b")], max_tokens=0)
