"""facekit.core.names.check_name: one canonical spelling of a person's name, hostile names refused
with an error that names the problem and the fix (issue 13)."""

from __future__ import annotations

import unicodedata

import pytest

from facekit.core.names import InvalidNameError, check_name, check_names, is_generated_name

HOSTILE = ["", "   ", "\t", "../x", "..", ".", "/abs/path", "a/b", "a\\b", ".hidden", "a\nb", "a\x00b",
           "a\x1bb", "evil\u202etxt.jpg", "x" * 65, "é" * 101, "unknown", "UNKNOWN", "singletons",
           "Singletons", "person_01", "PERSON_7", "...", "CON", "nul.txt", "a:b", "a*b", 'a"b', "a|b",
           "a?b", "<b>", None, 3, b"bytes", ["a"]]


@pytest.mark.parametrize("name", HOSTILE, ids=[repr(h)[:20] for h in HOSTILE])
def test_hostile_names_refused_with_the_fix(name):
    with pytest.raises(InvalidNameError, match="Fix:") as err:
        check_name(name)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("name", ["Ada Lovelace", "ada_lovelace", "José", "李小龙", "Zoë O'Neil", "Jean-Luc",
                                  "Martin Luther King Jr.", "x" * 64, "person_01 (me)", "person", "R2-D2"])
def test_real_names_accepted(name):
    assert check_name(name) == unicodedata.normalize("NFC", name)


def test_canonical_form_is_nfc_and_stripped():
    decomposed = "Zoe\u0308"  # e + combining diaeresis
    assert check_name(f"  {decomposed} ") == "Zoë" == check_name("Zoë")


def test_generated_names_and_batches():
    assert is_generated_name("person_03") and is_generated_name("singletons") and not is_generated_name("Ada")
    assert check_names(["Ada", "Bob "]) == ["Ada", "Bob"]
    with pytest.raises(InvalidNameError, match="name #1"):
        check_names(["Ada", "../etc"])
