"""Checkpoints carry a digest of what a prediction depends on (weights, configs, threshold): load_checkpoint refuses
one that changed or has none, and with trusted keys one that is not signed by them. Training state is outside it."""

from __future__ import annotations

import pytest

from sranet.errors import ArtifactError, IntegrityError
from sranet.model.checkpoint import checkpoint_digest, load_checkpoint, sign_checkpoint, verify_checkpoint
from tests.helpers import tiny_model, write_checkpoint

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt_integrity") / "best.pt", threshold=0.3)


def _edited(tmp_path, ckpt, edit, *, reseal=False):
    data = torch.load(ckpt, weights_only=True)
    edit(data)
    if reseal:
        data["integrity"] = {"content_sha256": checkpoint_digest(data)}
    path = tmp_path / "edited.pt"
    torch.save(data, path)
    return path


def test_digest_is_recorded_and_checked(ckpt, tmp_path):
    data = torch.load(ckpt, weights_only=True)
    assert data["integrity"]["content_sha256"] == checkpoint_digest(data) == verify_checkpoint(ckpt)
    assert load_checkpoint(ckpt).threshold == 0.3
    name = sorted(data["model_state"])[0]
    for edit in (lambda d: d["model_state"][name].view(-1)[0].add_(1e-6),
                 lambda d: d.update(threshold=0.0),
                 lambda d: d["preprocess_config"].update(window_hu=[-500.0, 1500.0]),
                 lambda d: d["model_state"].pop(name)):
        with pytest.raises(IntegrityError, match="does not match the digest"):
            load_checkpoint(_edited(tmp_path, ckpt, edit))
    # training state is not part of what a prediction depends on
    assert load_checkpoint(_edited(tmp_path, ckpt, lambda d: d["train_config"].update(lr=1.0))).threshold == 0.3
    with pytest.raises(IntegrityError, match="has no content digest"):
        load_checkpoint(_edited(tmp_path, ckpt, lambda d: d.pop("integrity")))


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -0.1, 1.5])
def test_a_threshold_that_is_not_a_probability_is_refused(ckpt, tmp_path, threshold):
    with pytest.raises(ArtifactError, match="is not a probability"):
        write_checkpoint(tmp_path / "bad.pt", tiny_model(), threshold=threshold)
    with pytest.raises(ArtifactError, match="is not a probability"):
        load_checkpoint(_edited(tmp_path, ckpt, lambda d: d.update(threshold=threshold), reseal=True))


def test_signed_checkpoints(ckpt, tmp_path):
    pytest.importorskip("cryptography")
    from tests.robustness.inputs import make_keys

    (private, public), (_, other) = make_keys(tmp_path, "a"), make_keys(tmp_path, "b")
    copy = tmp_path / "signed.pt"
    copy.write_bytes(ckpt.read_bytes())
    with pytest.raises(IntegrityError, match="is not signed"):
        load_checkpoint(copy, trusted_keys=[public])
    sign_checkpoint(copy, private)
    assert load_checkpoint(copy, trusted_keys=[public]).threshold == 0.3
    with pytest.raises(IntegrityError, match="not a trusted key"):
        load_checkpoint(copy, trusted_keys=[other])
    # the digest recomputed after an edit: the signature no longer verifies
    resealed = _edited(tmp_path, copy, lambda d: d.update(threshold=0.0))
    data = torch.load(resealed, weights_only=True)
    data["integrity"]["content_sha256"] = checkpoint_digest(data)
    torch.save(data, resealed)
    assert load_checkpoint(resealed).threshold == 0.0  # without a trusted key only the digest is checked
    with pytest.raises(IntegrityError, match="signature does not verify"):
        load_checkpoint(resealed, trusted_keys=[public])


def test_unpickling_refusal_is_one_line(tmp_path):
    import os

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": "sranet-checkpoint/1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ArtifactError) as info:
        load_checkpoint(tmp_path / "evil.pt")
    assert "\n" not in str(info.value) and "posix.system" in str(info.value) and not marker.exists()
