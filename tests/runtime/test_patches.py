"""The patch grid: blocks in the model's patch order, centres, and refusals."""

import numpy as np
import pytest

from sranet.errors import InputError
from sranet.runtime.patches import patch_blocks, patch_centres


def test_blocks_follow_the_models_patch_order():
    torch = pytest.importorskip("torch")
    from sranet.model.sranet import patchify

    x = np.random.default_rng(0).standard_normal((12, 12, 12)).astype(np.float32)
    blocks = patch_blocks(x, 3).reshape(27, 4, 4, 4)  # patch n = 9 i + 3 j + k
    model_patches = patchify(torch.from_numpy(x)[None, None], 3)[:, 0].numpy()  # (N, p, p, p)
    np.testing.assert_array_equal(blocks, model_patches)
    assert blocks[9 * 1 + 3 * 2 + 0].tolist() == x[4:8, 8:12, 0:4].tolist()


def test_centres_sit_in_the_middle_of_their_blocks():
    c = patch_centres(4, 16)
    assert c.shape == (64, 3)
    assert c[0].tolist() == [1.5, 1.5, 1.5] and c[16 * 1 + 4 * 2 + 3].tolist() == [5.5, 9.5, 13.5]


@pytest.mark.parametrize(("shape", "grid", "message"), [((8, 8, 6), 4, "cubic"), ((9, 9, 9), 4, "not divisible"),
                                                         ((8, 8, 8), 0, "not divisible")])
def test_bad_grids_are_refused(shape, grid, message):
    with pytest.raises(InputError, match=message):
        patch_blocks(np.zeros(shape), grid)
