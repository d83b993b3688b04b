"""Typed errors: the path leads the message for every error class, and errors survive pickling (worker processes)."""

import pickle

import pytest

import sranet.errors as errors


def _error_classes():
    return [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.SranetError)]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_path_and_hint_are_in_the_message_and_survive_pickling(cls):
    err = cls("is broken.", path="/data/case 1/slice.dcm", hint="Re-export it.")
    assert str(err) == "/data/case 1/slice.dcm: is broken. Re-export it."
    assert err.path == "/data/case 1/slice.dcm"  # ImportError subclasses must not lose it
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and str(back) == str(err) and back.path == err.path


def test_choices_suggest_without_correcting():
    with pytest.raises(errors.ConfigError, match="Did you mean 'softmax'"):
        errors.check_choice("attention_norm", "softmx", ("minshift", "softmax"))
    assert errors.suggest("zzz", ("minshift", "softmax")) == ""
