"""Tests of groundattn/data/errors.py."""

import pickle

from groundattn.data.errors import FormatError, UnsafePickleError


def test_message_names_file_line_and_field():
    assert str(FormatError("Sentences/12.txt", "unbalanced '['", line=3)) == (
        "Sentences/12.txt, line 3: unbalanced '['"
    )
    error = FormatError("pairs.csv", "expected 0..4", line=7, field="type_label")
    assert str(error) == "pairs.csv, line 7, field type_label: expected 0..4"
    assert (
        str(FormatError("a.xml", "bad", field="object[2]/bndbox"))
        == "a.xml, field object[2]/bndbox: bad"
    )
    assert isinstance(error, ValueError)


def test_errors_survive_pickling():
    """DataLoader workers send exceptions back to the main process pickled."""
    error = pickle.loads(pickle.dumps(UnsafePickleError("refs.p", "refused", field="refs[1]")))
    assert type(error) is UnsafePickleError and isinstance(error, ValueError)
    assert (error.path, error.line, error.field, error.message) == (
        "refs.p",
        None,
        "refs[1]",
        "refused",
    )
    assert str(error) == "refs.p, field refs[1]: refused"
