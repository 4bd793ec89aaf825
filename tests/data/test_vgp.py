"""Tests of groundattn/data/vgp.py: the VGP CSV and its matching to Flickr30k captions."""

from pathlib import Path

import pytest

from groundattn.data.errors import FormatError
from groundattn.data.flickr30k import Flickr30kEntities, parse_caption
from groundattn.data.vgp import (
    HTML_ROWS,
    OUTSIDE_ROWS,
    REPEATED_ROWS,
    PhrasePair,
    VGPLabel,
    VGPRecord,
    match_pairs,
    read_vgp_csv,
    screen_records,
    swap_label,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def captions():
    dataset = Flickr30kEntities(FIXTURES / "flickr30k")
    return {image_id: dataset.captions(image_id) for image_id in dataset.image_ids()}


def test_read_vgp_csv_with_extra_columns():
    records = read_vgp_csv(FIXTURES / "vgp" / "pairs.csv")
    assert [r.image_id for r in records] == ["1000", "1000", "1000", "9999", "1001"]
    assert records[0] == VGPRecord("1000", "A man", "The man", VGPLabel.EQUIVALENCE, 2)
    assert records[1].label == VGPLabel.ENTAILMENT_2_TO_1
    assert records[3].phrase2 == "the cat, sleeping"  # quoted field with a comma


def test_swap_label():
    assert swap_label(1) == VGPLabel.ENTAILMENT_2_TO_1
    assert swap_label(2) == VGPLabel.ENTAILMENT_1_TO_2
    for label in (0, 3, 4):
        assert swap_label(label) == label
    with pytest.raises(ValueError):
        swap_label(5)


def test_match_pairs(captions):
    records = read_vgp_csv(FIXTURES / "vgp" / "pairs.csv")
    result = match_pairs(records, captions)

    # "A man" is in captions 0, 1 and (lower-cased) 3, "The  man" in caption 2.
    man = [p for pairs in result.pairs.values() for p in pairs if p.label == VGPLabel.EQUIVALENCE]
    assert sorted(k for k, v in result.pairs.items() if any(p in man for p in v)) == [
        ("1000", 0, 2),
        ("1000", 1, 2),
        ("1000", 2, 3),
    ]
    # Stored as (2, 3): phrase1 is the phrase of caption 2.
    (pair,) = result.pairs[("1000", 2, 3)]
    assert (pair.phrase1.text, pair.phrase2.text) == ("The man", "a man")
    assert pair.phrase1.chain_id == pair.phrase2.chain_id == "18"

    # "an orange hat" (captions 0 and 3) entailed by "a bright orange hat" (caption 1).
    hats = result.pairs_for("1000", 0, 1)
    assert [(p.phrase1.text, p.phrase2.text, p.label) for p in hats] == [
        ("an orange hat", "a bright orange hat", VGPLabel.ENTAILMENT_2_TO_1)
    ]
    # Caption 3's phrase is phrase1 of the record but the later caption: swapped class.
    (hat,) = result.pairs[("1000", 1, 3)]
    assert (hat.phrase1.text, hat.phrase2.text) == ("a bright orange hat", "an orange hat")
    assert hat.label == VGPLabel.ENTAILMENT_1_TO_2

    assert result.pairs_for("1001", 0, 1) == [
        PhrasePair(captions["1001"][0].phrases[0], captions["1001"][1].phrases[0], VGPLabel(1))
    ]
    # Either order of the captions; swapping swaps classes 1 and 2 and the phrases.
    (swapped,) = result.pairs_for("1001", 1, 0)
    assert (swapped.phrase1.text, swapped.phrase2.text) == ("A child", "A girl")
    assert swapped.label == VGPLabel.ENTAILMENT_2_TO_1

    # Different chains (man vs dogs) and an image without captions: reported, not lost.
    assert [r.line for r in result.unmatched] == [4, 5]
    assert [r.image_id in captions for r in result.unmatched] == [True, False]
    assert result.conflicts == []


def test_match_pairs_skips_notvisual_and_same_caption():
    caption = parse_caption("[/EN#0/notvisual his lunch] and [/EN#0/notvisual his lunch]")
    other = parse_caption("[/EN#0/notvisual his lunch]")
    records = [VGPRecord("1", "his lunch", "his lunch", VGPLabel.EQUIVALENCE, 2)]
    result = match_pairs(records, {"1": [caption, other]})
    assert result.pairs == {} and result.unmatched == records


def test_match_pairs_duplicates_and_conflicts():
    c1 = parse_caption("[/EN#5/people A man] sits")
    c2 = parse_caption("[/EN#5/people The guy] sits")
    records = [
        VGPRecord("1", "a man", "the guy", VGPLabel.EQUIVALENCE, 2),
        VGPRecord("1", "the guy", "a man", VGPLabel.EQUIVALENCE, 3),  # same pair, reversed
        VGPRecord("1", "a man", "the guy", VGPLabel.ALTERNATION, 4),  # conflicting label
    ]
    result = match_pairs(records, {"1": [c1, c2]})
    assert result.pairs == {("1", 0, 1): [PhrasePair(c1.phrases[0], c2.phrases[0], VGPLabel(3))]}
    assert [r.line for r in result.conflicts] == [4]


HEADER = "image,original_phrase1,original_phrase2,type_label\n"


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("image,original_phrase1,type_label\n1.jpg,a,0\n", 1, "original_phrase2", "missing column"),
        (HEADER + "1.jpg,a,b,3\n1.jpg,a,b,5\n", 3, "type_label", "expected an integer in 0..4"),
        (HEADER + "1.jpg,a,b,x\n", 2, "type_label", "got 'x'"),
        (HEADER + "1.jpg,a,,3\n", 2, "original_phrase2", "empty value"),
        (HEADER + "1.jpg,a,b\n", 2, "type_label", "empty value"),
    ],
)
def test_read_vgp_csv_malformed(tmp_path, text, line, field, message):
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    with pytest.raises(FormatError, match=message) as info:
        read_vgp_csv(path)
    assert (info.value.line, info.value.field) == (line, field)
    assert str(info.value).startswith(f"{path}, line {line}, field {field}: ")


def test_read_vgp_csv_bom_and_bad_utf8(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"1.jpg,a,b,3\n")
    assert read_vgp_csv(path)[0].label == VGPLabel.EQUIVALENCE
    path.write_bytes(HEADER.encode() + b"1.jpg,a,b,3\n2.jpg,\xff,b,3\n")
    with pytest.raises(FormatError, match="line 3: not valid UTF-8"):
        read_vgp_csv(path)


def test_screen_records_counts_what_the_public_release_holds():
    rows = [
        VGPRecord("1", "a guy", "the man", VGPLabel.EQUIVALENCE, 2),
        VGPRecord("1", 'a guy</font> give a kiss to <font color="red">a guy', "x", VGPLabel(0), 3),
        VGPRecord("1", "a guy", "the man", VGPLabel.EQUIVALENCE, 4),  # listed twice
        VGPRecord("1", "a guy", "the man", VGPLabel.ALTERNATION, 5),  # another label: matched later
        VGPRecord("9", "a dog", "the dog", VGPLabel.EQUIVALENCE, 6),  # image of another split
        VGPRecord("1", "1 < 2 > 0", "a sign", VGPLabel.INDEPENDENCE, 7),  # not a tag
    ]
    kept, dropped = screen_records(rows, {"1", "2"})
    assert [r.line for r in kept] == [2, 5, 7]
    assert dropped == {HTML_ROWS: 1, REPEATED_ROWS: 1, OUTSIDE_ROWS: 1}
