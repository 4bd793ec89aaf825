from groundattn.viz import layout_positions, region_label, token_labels


def test_labels_follow_the_layout():
    labels = token_labels(["[CLS]", "a", "red", "circle", "[SEP]"], [None, "red circle", None])
    assert labels == [
        "[CLS]", "a", "red", "circle", "[SEP]",
        "[IMG:0 whole image]", "[IMG:1 red circle]", "[IMG:2]", "[END]",
    ]  # fmt: skip


def test_repeated_tokens_get_unique_readable_labels():
    text = ["[CLS]", "the", "dog", "[SEP]", "the", "dog", "[SEP]"]
    labels = token_labels(text, [None, "dog", "dog"], with_end=False)
    assert len(set(labels)) == len(labels) == len(text) + 3
    assert labels[:7] == ["[CLS]", "the", "dog", "[SEP]", "the (2)", "dog (2)", "[SEP] (2)"]
    assert labels[-2:] == ["[IMG:1 dog]", "[IMG:2 dog]"]


def test_suffix_does_not_collide_with_an_existing_label():
    labels = token_labels(["a", "a (2)", "a"], [], with_end=False)
    assert labels == ["a", "a (2)", "a (3)"]


def test_region_label_names_and_whitespace():
    assert region_label(0) == "[IMG:0 whole image]"
    assert region_label(0, "sky") == "[IMG:0 sky]"
    assert region_label(3, "  red \n circle ") == "[IMG:3 red circle]"
    assert region_label(3, "") == "[IMG:3]"


def test_layout_positions():
    assert layout_positions(3, 2) == ([0, 1, 2], [3, 4])
