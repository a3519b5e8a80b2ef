"""Data loaders: the FERPlus majority protocol on the real data, manifests, RAF-DB, bad input."""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from pyfer.preprocess import EMOTIONS, PreprocessSpec
from training.data import (AugmentSpec, DataError, augment, load_dataset, load_ferplus, load_manifest,
                           load_rafdb, majority_protocol, plurality_protocol, read_ferplus_labels)

PREP = PreprocessSpec(48)


def test_majority_protocol_rules():
    votes = np.array([
        [6, 1, 1, 0, 0, 0, 0, 0, 1, 1],   # singles dropped -> 6/6: neutral
        [3, 3, 0, 0, 0, 0, 0, 0, 0, 0],   # tie: no majority
        [0, 0, 0, 0, 0, 0, 0, 0, 8, 2],   # unknown wins: dropped
        [2, 0, 0, 0, 0, 0, 0, 0, 0, 8],   # NF wins: dropped
        [0, 0, 4, 3, 0, 0, 0, 0, 0, 0],   # 4 of 7: surprise
    ])
    keep, labels, shares = majority_protocol(votes)
    assert keep.tolist() == [True, False, False, False, True]
    assert labels[0] == EMOTIONS.index("neutral") and labels[4] == EMOTIONS.index("surprise")
    np.testing.assert_allclose(shares[4, 2:4], [4 / 7, 3 / 7])


@pytest.mark.parametrize("split,n,counts", [
    ("train", 25045, [8733, 7284, 3136, 3022, 2098, 116, 536, 120]),
    ("valid", 3191, [1180, 862, 411, 348, 289, 25, 60, 16]),
])
def test_ferplus_majority_counts(ferplus_dir, split, n, counts):
    data = load_ferplus(ferplus_dir, split, PREP)
    assert len(data) == n
    assert data.class_counts().tolist() == counts
    assert data.images.shape == (n, 48, 48) and data.images.dtype == np.uint8
    np.testing.assert_allclose(data.targets.sum(1), 1, atol=1e-6)
    assert (data.targets.argmax(1) == data.labels).all()


def test_plurality_protocol_rules():
    votes = np.array([
        [6, 1, 1, 0, 0, 0, 0, 0, 1, 1],   # a majority face: kept as it is
        [3, 0, 0, 3, 0, 0, 0, 0, 0, 0],   # tie: kept, the first class in order (neutral)
        [0, 0, 0, 3, 0, 4, 0, 0, 3, 0],   # 4 of 10, no majority: disgust
        [3, 0, 0, 0, 0, 0, 0, 0, 4, 0],   # unknown on top: dropped
        [0, 0, 0, 0, 0, 0, 0, 0, 3, 3],   # no emotion votes left: dropped
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],   # only single votes: dropped
    ])
    keep, labels, shares = plurality_protocol(votes)
    assert keep.tolist() == [True, True, True, False, False, False]
    assert [EMOTIONS[i] for i in labels[:3]] == ["neutral", "neutral", "disgust"]
    np.testing.assert_allclose(shares[2, [3, 5]], [3 / 7, 4 / 7])


def test_plurality_adds_only_no_majority_faces_on_the_real_labels(ferplus_dir):
    _, votes = read_ferplus_labels(ferplus_dir / "FER2013Train" / "label.csv")
    major, major_labels, _ = majority_protocol(votes)
    plural, plural_labels, _ = plurality_protocol(votes)
    assert (plural | ~major).all()  # every majority face stays
    assert (plural_labels[major] == major_labels[major]).all()  # with its label
    extra = plural & ~major
    assert major.sum() == 25045 and extra.sum() == 3340
    # the faces it adds, by class: rare classes grow most (disgust by 65%, contempt by 40%)
    assert np.bincount(plural_labels[extra], minlength=8).tolist() == [1562, 242, 421, 508, 365, 75, 119, 48]


def test_each_protocol_has_its_own_decoded_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYFER_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "fer" / "FER2013Train"
    rows = ['fer0.png,"(0, 0, 48, 48)",6,0,0,0,0,0,0,0,0,0', 'fer1.png,"(0, 0, 48, 48)",3,0,0,3,0,0,0,0,0,0']
    folder.mkdir(parents=True)
    (folder / "label.csv").write_text("\n".join(rows) + "\n")
    for i, value in enumerate((30, 200)):
        _write_png(folder / f"fer{i}.png", value, (48, 48))
    for protocol, n in (("plurality", 2), ("majority", 1), ("plurality", 2)):  # each read after the other
        data = load_dataset(f"ferplus:{tmp_path / 'fer'}", PREP, "train", protocol=protocol)
        assert data.names == ["fer0.png", "fer1.png"][:n] and len(data.images) == n
    with pytest.raises(ValueError, match="protocol"):
        load_ferplus(tmp_path / "fer", "train", PREP, "everything")


def _write_png(path, value=128, size=(40, 30)):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size[1], size[0], 3), value, np.uint8)
    img[5:10, 5:10] = 255 - value
    cv2.imwrite(str(path), img)


def test_manifest_loader(tmp_path):
    for i, name in enumerate(["a.png", "sub/b.png", "c.png"]):
        _write_png(tmp_path / name, 40 * i)
    (tmp_path / "m.csv").write_text("path,label\na.png,happy\nsub/b.png,Anger\nc.png,contempt\n")
    data = load_manifest(tmp_path / "m.csv", None, PREP)
    assert data.labels.tolist() == [EMOTIONS.index(x) for x in ("happiness", "anger", "contempt")]
    assert data.images.shape == (3, 48, 48)
    assert (data.targets.argmax(1) == data.labels).all()


def test_a_16_bit_manifest_image_is_scaled_by_its_own_maximum(tmp_path):
    """A 12-bit scan saved as a 16-bit PNG (values up to 4095) is stretched to 0-255 by its own
    maximum, as 8 bits would show it; scaled by 65535 it loaded nearly black."""
    import cv2

    from training.data import _read_gray

    ramp = (np.arange(48 * 48).reshape(48, 48) * 4095 // (48 * 48 - 1)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), ramp)
    gray = _read_gray(tmp_path / "deep.png", "m.csv:2")
    assert gray.dtype == np.uint8 and gray.max() == 255 and gray.min() == 0


def test_rafdb_loader(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text(
        "train_00001.jpg 5\ntrain_00002.jpg 7\ntest_0001.jpg 4\ntest_0002.jpg 1\n")
    for n in ("train_00001", "train_00002", "test_0001", "test_0002"):
        _write_png(tmp_path / "Image" / "aligned" / f"{n}_aligned.jpg")
    train = load_rafdb(tmp_path, "train", PREP)
    test = load_dataset(f"rafdb:{tmp_path}", PREP, "valid")
    assert [EMOTIONS[i] for i in train.labels] == ["sadness", "neutral"]
    assert [EMOTIONS[i] for i in test.labels] == ["happiness", "surprise"]


def test_bad_input_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_ferplus(tmp_path / "nowhere", "train", PREP)

    folder = tmp_path / "fer" / "FER2013Train"
    folder.mkdir(parents=True)
    (folder / "label.csv").write_text('fer0.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0\nfer1.png,bad row\n')
    with pytest.raises(DataError, match=r"label\.csv:2: expected 12 columns"):
        load_ferplus(tmp_path / "fer", "train", PREP)

    (folder / "label.csv").write_text('fer0.png,"(0, 0, 48, 48)",x,0,0,1,3,2,0,0,0,0\n')
    with pytest.raises(DataError, match=r"label\.csv:1: vote counts must be integers"):
        load_ferplus(tmp_path / "fer", "train", PREP)

    _write_png(tmp_path / "ok.png")
    (tmp_path / "m.csv").write_text("path,label\nok.png,grumpy\n")
    with pytest.raises(DataError, match=r"m\.csv:2: unknown label 'grumpy'"):
        load_manifest(tmp_path / "m.csv", None, PREP)

    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "m2.csv").write_text("path,label\nok.png,happy\nbroken.png,sad\n")
    with pytest.raises(DataError, match=r"m2\.csv:3: cannot decode image .*broken\.png"):
        load_manifest(tmp_path / "m2.csv", None, PREP)

    (tmp_path / "m3.csv").write_text("file,emotion\nok.png,happy\n")
    with pytest.raises(DataError, match="path,label"):
        load_manifest(tmp_path / "m3.csv", None, PREP)


def test_a_folder_without_its_kind_is_told_how_to_name_it(tmp_path):
    (tmp_path / "FER2013Valid").mkdir()
    with pytest.raises(DataError, match=re.escape(f"{tmp_path} is a folder, not a manifest CSV: give ferplus:{tmp_path} ")):
        load_dataset(str(tmp_path), PREP)
    with pytest.raises(DataError, match="manifest not found: .*a data source is ferplus:DIR, rafdb:DIR or a manifest"):
        load_dataset(str(tmp_path / "none.csv"), PREP)


def test_decoding_draws_no_progress_bar_when_stderr_is_not_a_terminal(tiny_sets, capsys):
    data = load_dataset(tiny_sets[0], PREP, "valid")  # decoded now: the cache is the fixture's own
    assert len(data) == 16 and capsys.readouterr().err == ""
    load_manifest(tiny_sets[1], None, PREP)
    assert capsys.readouterr().err == ""


def test_augment_is_seeded_and_normalised():
    import torch

    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 1, 48, 48), dtype=np.uint8))
    a = augment(x, PREP, AugmentSpec(), torch.Generator().manual_seed(3))
    b = augment(x, PREP, AugmentSpec(), torch.Generator().manual_seed(3))
    c = augment(x, PREP, AugmentSpec(), torch.Generator().manual_seed(4))
    assert a.shape == (8, 1, 48, 48) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    assert a.min() >= -1.0 - 1e-6 and a.max() <= 1.0 + 1e-6


# every effect off: each test below turns on one
NO_AUGMENT = AugmentSpec(max_rotate_deg=0.0, scale=(1.0, 1.0), max_shift=0.0, flip=False, brightness=0.0,
                         contrast=(1.0, 1.0), erase_prob=0.0)


def _unnormalised(x):
    return x * PREP.std + PREP.mean  # back to [0, 1]


def test_augment_flips_about_half_the_faces_left_to_right():
    import torch

    ramp = torch.linspace(0, 255, 48).round().to(torch.uint8).expand(256, 1, 48, 48).contiguous()
    out = _unnormalised(augment(ramp, PREP, replace(NO_AUGMENT, flip=True), torch.Generator().manual_seed(0)))
    mirrored = (out[:, 0, :, 0] > out[:, 0, :, -1]).all(1)  # brighter on the left: turned round
    assert 0.35 < mirrored.float().mean() < 0.65
    plain = _unnormalised(augment(ramp, PREP, NO_AUGMENT, torch.Generator().manual_seed(0)))
    assert torch.allclose(plain, ramp.float() / 255, atol=1e-5)  # with every effect off: the face as it is


def test_augment_erases_a_rectangle_in_about_erase_prob_of_the_faces():
    """erase_prob 0.25: about a quarter of 400 flat gray faces get a rectangle of one other value."""
    import torch

    flat = torch.full((400, 1, 48, 48), 128, dtype=torch.uint8)
    out = _unnormalised(augment(flat, PREP, replace(NO_AUGMENT, erase_prob=0.25), torch.Generator().manual_seed(1)))
    erased = ((out - 128 / 255).abs() > 1e-3).flatten(1).any(1)
    assert 0.17 < erased.float().mean() < 0.33


def _centre_of_mass(out):
    import torch

    ys, xs = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    mass = out[:, 0].clamp(min=0).flatten(1).sum(1)
    return (out[:, 0] * xs).flatten(1).sum(1) / mass, (out[:, 0] * ys).flatten(1).sum(1) / mass


def test_augment_rotates_by_up_to_max_rotate_deg_keeping_the_distance_from_the_centre():
    """max_rotate_deg 10: a dot 16 px above the centre turns about it by at most 10 degrees (in
    degrees, not radians: upside-down faces would be the result), staying 16 px from it (a turn,
    not a shear); a face's bright top half stays its brighter half."""
    import math

    import torch

    dot = torch.zeros((200, 1, 48, 48), dtype=torch.uint8)
    dot[:, :, 6:10, 22:26] = 255  # around (23.5, 7.5): 16 px above the centre (23.5, 23.5)
    out = _unnormalised(augment(dot, PREP, replace(NO_AUGMENT, max_rotate_deg=10.0), torch.Generator().manual_seed(5)))
    cx, cy = _centre_of_mass(out)
    turned = torch.rad2deg(torch.atan2(cx - 23.5, 23.5 - cy)).abs()
    distance = torch.hypot(cx - 23.5, cy - 23.5)
    assert turned.max() <= 10.0 + 0.5 and turned.max() > 6.0, turned.max()
    assert ((distance - 16).abs() < 1.0).all(), distance.min()
    top = torch.zeros((100, 1, 48, 48), dtype=torch.uint8)
    top[:, :, :24] = 255
    out = _unnormalised(augment(top, PREP, replace(NO_AUGMENT, max_rotate_deg=15.0), torch.Generator().manual_seed(6)))
    assert (out[:, 0, :24].mean((1, 2)) > out[:, 0, 24:].mean((1, 2)) + 0.5).all()
    assert math.radians(15.0) < 1  # (what a turn in radians would have been: up to 15 rad)


def test_augment_light_effects_go_both_ways_and_keep_what_they_should():
    """On flat 0.5 gray faces: brightness moves the level up and down by at most its amount; gamma
    darkens some and lightens others; contrast keeps each face's mean; blur keeps a flat face as
    it is (its kernel sums to 1)."""
    import torch

    flat = torch.full((300, 1, 48, 48), 128, dtype=torch.uint8)
    level = 128 / 255

    def means(**effect):
        out = _unnormalised(augment(flat, PREP, replace(NO_AUGMENT, **effect), torch.Generator().manual_seed(7)))
        return out.mean((1, 2, 3))

    bright = means(brightness=0.2)
    assert (bright - level).abs().max() <= 0.2 + 1e-5 and (bright < level - 0.05).any() and (bright > level + 0.05).any()
    gamma = means(gamma=0.6)
    assert (gamma < level - 0.05).any() and (gamma > level + 0.05).any()
    assert torch.allclose(means(blur_prob=1.0), torch.full((300,), level), atol=1e-4)
    ramp = torch.linspace(40, 200, 48).round().to(torch.uint8).expand(300, 1, 48, 48).contiguous()
    out = _unnormalised(augment(ramp, PREP, replace(NO_AUGMENT, contrast=(0.6, 1.4)), torch.Generator().manual_seed(8)))
    assert torch.allclose(out.mean((1, 2, 3)), (ramp.float() / 255).mean((1, 2, 3)), atol=1e-4)
    assert out.flatten(1).std(1).std() > 0.01  # (the contrast did change)


def test_augment_erases_rectangles_of_either_shape_with_a_gray_of_their_own():
    """Each erased rectangle has its own height and width (not a square) and its own fill value,
    drawn, not black."""
    import torch

    flat = torch.full((300, 1, 48, 48), 128, dtype=torch.uint8)
    out = _unnormalised(augment(flat, PREP, replace(NO_AUGMENT, erase_prob=1.0), torch.Generator().manual_seed(9)))
    erased = (out[:, 0] - 128 / 255).abs() > 1e-3
    heights = erased.any(2).sum(1)
    widths = erased.any(1).sum(1)
    assert (heights != widths).float().mean() > 0.5
    fills = torch.stack([out[i, 0][erased[i]].mean() for i in range(300) if erased[i].any()])
    assert fills.std() > 0.1 and (fills > 0.05).float().mean() > 0.8


def test_jpeg_augmentation_keeps_each_face_in_its_place():
    """_jpeg round-trips only the faces chosen, each into its own place in the batch."""
    import torch

    from training.data import _jpeg

    x = torch.stack([torch.full((1, 48, 48), v) for v in (0.1, 0.4, 0.7, 0.9)])
    x[:, :, 10:20, 10:20] += 0.05  # some detail for the codec
    out = _jpeg(x, torch.tensor([False, True, False, True]), torch.full((4,), 60.0))
    assert torch.equal(out[[0, 2]], x[[0, 2]])
    assert ((out[[1, 3]] - x[[1, 3]]).abs().mean((1, 2, 3)) < 0.02).all()


def test_augment_shifts_the_face_by_up_to_max_shift():
    """max_shift 0.1 on 48 px: a one-pixel dot moves by up to 4.8 px each way, and by more than 3
    px in some of 200 faces."""
    import torch

    dot = torch.zeros((200, 1, 48, 48), dtype=torch.uint8)
    dot[:, :, 24, 24] = 255
    out = _unnormalised(augment(dot, PREP, replace(NO_AUGMENT, max_shift=0.1), torch.Generator().manual_seed(2)))
    ys, xs = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    mass = out[:, 0].clamp(min=0).flatten(1).sum(1)
    cx = (out[:, 0] * xs).flatten(1).sum(1) / mass
    cy = (out[:, 0] * ys).flatten(1).sum(1) / mass
    moved = torch.maximum((cx - 24).abs(), (cy - 24).abs())
    assert moved.max() <= 4.8 + 0.6 and moved.max() > 3.0
