"""Tests of groundattn/data/flickr30k.py on hand-written Flickr30k Entities files."""

import re
from pathlib import Path

import pytest

from groundattn.data.errors import FormatError
from groundattn.data.flickr30k import (
    Flickr30kEntities,
    Phrase,
    parse_caption,
    read_annotations,
    read_sentences,
    read_split,
)

ROOT = Path(__file__).parent / "fixtures" / "flickr30k"


def test_parse_caption_text_and_phrases():
    caption = parse_caption(
        "[/EN#18/people A man] in [/EN#19/clothing an orange hat] starring at [/EN#20/other something] ."
    )
    assert caption.text == "A man in an orange hat starring at something ."
    assert caption.phrases == [
        Phrase("A man", "18", ("people",), 0, (0, 5)),
        Phrase("an orange hat", "19", ("clothing",), 3, (9, 22)),
        Phrase("something", "20", ("other",), 8, (35, 44)),
    ]
    words = caption.text.split()
    for phrase in caption.phrases:
        assert caption.text[slice(*phrase.char_span)] == phrase.text
        start, end = phrase.word_span
        assert " ".join(words[start:end]) == phrase.text


def test_parse_caption_multiple_types_notvisual_punctuation_and_end_phrase():
    caption = parse_caption(
        '" [/EN#18/people The  man] , eating [/EN#0/notvisual his lunch] , '
        "rides [/EN#6729/vehicles/scene a double-decker bus]"
    )
    assert caption.text == '" The man , eating his lunch , rides a double-decker bus'
    man, lunch, bus = caption.phrases
    assert (man.text, man.first_word, man.char_span) == ("The man", 1, (2, 9))
    assert lunch.chain_id == "0" and lunch.types == ("notvisual",) and not lunch.is_visual
    assert bus.types == ("vehicles", "scene") and bus.is_visual
    assert bus.char_span[1] == len(caption.text)
    assert bus.word_span == (9, 12)


def test_parse_caption_closing_bracket_after_space():
    caption = parse_caption("[/EN#3/people two men ] talk")
    assert caption.text == "two men talk"
    assert caption.phrases[0].text == "two men"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[/EN#18/people A man in a hat .", "unbalanced '['"),
        ("A man ] in a hat .", "unbalanced ']'"),
        ("[/EN#18/people A [/EN#19/clothing hat] ]", "nested '['"),
        ("[/EN18/people A man] .", "malformed phrase header"),
        ("[/EN#18 A man] .", "malformed phrase header"),
        ("[/EN#18/people] sits .", "empty phrase"),
        ("[/EN#18/people ] sits .", "empty phrase"),
        ("[/EN#18/people A m]an] .", "bracket inside the word"),
    ],
)
def test_parse_caption_malformed(line, message):
    with pytest.raises(FormatError, match=re.escape(message)) as info:
        parse_caption(line, path="Sentences/12.txt", line_no=3)
    assert str(info.value).startswith("Sentences/12.txt, line 3: ")
    assert "column" in str(info.value)


def test_read_sentences_fixture():
    captions = read_sentences(ROOT / "Sentences" / "1000.txt")
    assert len(captions) == 5
    assert captions[1].phrases[-1].text == "a bright orange hat"  # phrase ends the caption
    assert captions[2].text.startswith("The man , who")
    assert [p.chain_id for p in captions[2].phrases] == ["18", "0", "6729"]


def test_read_sentences_error_names_file_and_line(tmp_path):
    path = tmp_path / "12.txt"
    path.write_text("[/EN#1/people A man] sits .\nfine words\n[/EN#2/other a hat .\n")
    with pytest.raises(FormatError) as info:
        read_sentences(path)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{path}, line 3: unbalanced '['")


def test_read_sentences_empty_line_and_bad_utf8(tmp_path):
    path = tmp_path / "1.txt"
    path.write_text("A caption .\n\nAnother .\n")
    with pytest.raises(FormatError, match="line 2: empty line"):
        read_sentences(path)
    path.write_bytes(b"A caption .\nbad \xff byte\n")
    with pytest.raises(FormatError, match="line 2: not valid UTF-8"):
        read_sentences(path)


def test_read_annotations_fixture():
    annotation = read_annotations(ROOT / "Annotations" / "1000.xml")
    assert (annotation.width, annotation.height) == (500, 333)
    # 1-based inclusive 11..110 becomes continuous [10, 110]: 100 pixels wide.
    assert annotation.boxes["18"] == [(10.0, 20.0, 110.0, 220.0)]
    # An object with two <name>s gives its box to both chains.
    assert annotation.boxes["20"] == annotation.boxes["23"] == [(0.0, 0.0, 10.0, 10.0)]
    # A chain with two objects has two boxes, in file order.
    assert annotation.boxes["24"] == [(200.0, 200.0, 300.0, 300.0), (300.0, 200.0, 400.0, 300.0)]
    assert annotation.scene == {"6729"}
    assert annotation.nobox == {"21"}
    assert "6729" not in annotation.boxes and "21" not in annotation.boxes


ANNOTATION = """<annotation><size><width>10</width><height>10</height></size>{}</annotation>"""


@pytest.mark.parametrize(
    ("objects", "field", "message"),
    [
        ("<object><bndbox/></object>", "object[1]", "<name>"),
        (
            "<object><name>1</name><bndbox><xmin>1</xmin><ymin>a</ymin><xmax>2</xmax>"
            "<ymax>2</ymax></bndbox></object>",
            "object[1]/bndbox/ymin",
            "expected a number",
        ),
        (
            "<object><name>1</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
            "</bndbox></object>",
            "object[1]/bndbox",
            "expected one <ymax>",
        ),
        ("<object><name>1</name><scene>0</scene></object>", "object[1]", "expected a <bndbox>"),
        ("<object><name>1</name><scene>2</scene></object>", "object[1]/scene", "0 or 1"),
        (
            "<object><name>1</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>2</xmax>"
            "<ymax>2</ymax></bndbox></object>",
            "object[1]/bndbox",
            "xmin <= xmax",
        ),
    ],
)
def test_read_annotations_malformed_names_element(tmp_path, objects, field, message):
    path = tmp_path / "1.xml"
    path.write_text(ANNOTATION.format(objects))
    with pytest.raises(FormatError, match=message) as info:
        read_annotations(path)
    assert info.value.field == field
    assert str(info.value).startswith(f"{path}, field {field}: ")


def test_read_annotations_bad_xml_size_and_dtd(tmp_path):
    path = tmp_path / "1.xml"
    path.write_text("<annotation>\n<size>\n</annotation>\n")
    with pytest.raises(FormatError, match="invalid XML") as info:
        read_annotations(path)
    assert info.value.line == 3
    path.write_text("<annotation><size><width>0</width><height>5</height></size></annotation>")
    with pytest.raises(FormatError, match="positive size"):
        read_annotations(path)
    path.write_text('<!DOCTYPE a [<!ENTITY x "boom">]><annotation>&x;</annotation>')
    with pytest.raises(FormatError, match="DTD"):
        read_annotations(path)


def test_read_split(tmp_path):
    assert read_split(ROOT / "train.txt") == ["1000"]
    assert read_split(ROOT / "val.txt") == ["1001"]
    assert read_split(ROOT / "test.txt") == []
    path = tmp_path / "train.txt"
    path.write_text("1\n2\n1\n")
    with pytest.raises(FormatError, match="line 3: image id 1 already listed on line 1"):
        read_split(path)
    path.write_text("1 2\n")
    with pytest.raises(FormatError, match="line 1: expected one image id"):
        read_split(path)


def test_dataset_index():
    dataset = Flickr30kEntities(ROOT)
    assert dataset.splits == {"train": ["1000"], "val": ["1001"], "test": []}
    assert dataset.image_ids() == ["1000", "1001"]
    assert "1001" in dataset and "9" not in dataset
    image = dataset["1001"]
    assert image.image_id == "1001"
    assert [c.text for c in image.captions] == ["A girl jumps into the water .", "A child swims ."]
    assert image.annotation.boxes["30"] == [(0.0, 0.0, 640.0, 480.0)]
    assert image.annotation.scene == image.annotation.nobox == {"31"}


def test_dataset_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="Sentences"):
        Flickr30kEntities(tmp_path)
