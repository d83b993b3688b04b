"""The crop phantoms (the demo's training data) are pinned: the same seed gives the same bytes.

The hashes were taken from the generator before its modules were reorganised; any change to the drawing code, its
random-number order or its defaults shows up here. Changing the phantoms on purpose means updating these hashes
(and rerunning the demo whose committed metrics depend on them).
"""

import hashlib
import json

import numpy as np
import pytest

from sranet.data.synthetic import generate_case

SMALL = {"shape": (48, 64, 64), "spacing_mm": (1.0, 0.8, 0.8)}
GOLDEN = [
    (11, 0, SMALL, "e4e71b6a4967bda5"),
    (11, 1, SMALL, "903c34ab93231e2d"),
    (11, 2, SMALL, "c234e59259907c3a"),
    (11, 3, SMALL, "c42067a473f04942"),
    (11, 4, SMALL, "fb0e60535402b04a"),
    (3, 4, {"shape": (40, 56, 48)}, "9976dd75c969c3ae"),
    (1234567, 3, {"shape": (32, 48, 48), "side": "L"}, "32744fa1c6083c88"),
    (99, 2, {"shape": (32, 40, 48), "side": "R"}, "93fddb8284a73356"),
]


def case_hash(case) -> str:
    """SHA-256 (16 hex digits) of the HU, the lesion mask and every geometric fact of a case."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(case.hu).tobytes())
    h.update(np.ascontiguousarray(case.lesion_mask).tobytes())
    meta = {"roi": case.roi, "side": case.side, "spacing": case.spacing_mm, "origin": case.origin_mm,
            "centre": case.head_center_mm, "radius": case.head_radius_mm}
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("seed, stage, kwargs, expected", GOLDEN)
def test_crop_phantoms_are_bit_identical(seed, stage, kwargs, expected):
    assert case_hash(generate_case(seed, stage, **kwargs)) == expected


def test_default_size_phantom_is_bit_identical():
    assert case_hash(generate_case(5, 4)) == "acaf60889bdae5d7"


def test_shape_parameters_are_pinned():
    p = generate_case(11, 4, **SMALL).params
    assert p["radius"] == 12.48 and p["gap"] == pytest.approx(1.2620537487484498, abs=0)
    assert p["collapse"] == pytest.approx(2.429828234603652, abs=0)
    assert p["acet_sclerosis"] == pytest.approx(215.71975997104667, abs=0)
    assert p["u_les"] == pytest.approx([0.8901382776887754, -0.178124553125318, 0.4194347269446897], abs=0)
