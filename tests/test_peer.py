"""The peer (training.peer): face-api.js's expression model ported to PyTorch, checked against
TensorFlow.js's own output, and its mapping onto pyfer's classes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from pyfer.preprocess import EMOTIONS  # noqa: E402
import training.peer  # noqa: E402
from pyfer.preprocess import PreprocessSpec  # noqa: E402
from training.data import to_model_input  # noqa: E402
from training.peer import (ABSENT_LOGIT, AS_EMOTION, FACE_API_CLASSES, FaceExpressionNet, PeerMix,  # noqa: E402
                           as_peer_input, averaged, face_api_state, in_emotion_order, main, peer_logits,
                           tf_same_pad)

GOLDEN = Path(__file__).parent / "golden" / "faceapi_expression_tfjs.json"


def golden_images() -> np.ndarray:
    """The two images scripts/faceapi_golden.cjs builds, as (2, 3, 112, 112) RGB."""
    i, j, c = np.meshgrid(np.arange(112), np.arange(112), np.arange(3), indexing="ij")
    pattern = (i * 7 + j * 13 + c * 29) % 256
    waves = np.floor(127.5 + 100 * np.sin(i / 9) * np.cos(j / 7)) + 10 * c
    return np.stack([pattern, waves]).astype(np.float32).transpose(0, 3, 1, 2)


@pytest.fixture(scope="module")
def published():
    """The real weights from npm (cached after the first fetch); skipped where npm cannot reach
    the registry."""
    from training.peer import load_face_api_expression

    try:
        return load_face_api_expression()
    except SystemExit as exc:
        pytest.skip(str(exc))


def test_port_computes_what_tensorflow_js_computes(published):
    golden = json.loads(GOLDEN.read_text())
    assert tuple(golden["classes"]) == FACE_API_CLASSES
    with torch.no_grad():
        probs = torch.softmax(published(torch.from_numpy(golden_images())), 1).numpy()
    np.testing.assert_allclose(probs, golden["probabilities"], atol=2e-5)


@pytest.mark.parametrize("height,width,stride,rows,cols", [
    (112, 112, 2, (0, 1), (0, 1)), (7, 7, 2, (1, 1), (1, 1)), (8, 8, 1, (1, 1), (1, 1)),
    (7, 8, 2, (1, 1), (0, 1)), (6, 5, 2, (0, 1), (1, 1))])
def test_same_padding_puts_the_odd_pixel_at_the_bottom_right(height, width, stride, rows, cols):
    x = torch.zeros(1, 1, height, width)
    x[..., 0, 0] = 1
    padded = tf_same_pad(x, 3, stride)
    assert padded.shape[-2:] == (height + sum(rows), width + sum(cols))
    assert padded[0, 0, rows[0], cols[0]] == 1
    out = F.conv2d(padded, torch.ones(1, 1, 3, 3), stride=stride)
    assert out.shape[-2:] == (-(-height // stride), -(-width // stride))


def one_hot_peer(face_api_class: str) -> FaceExpressionNet:
    """A net whose answer is one class, whatever the face."""
    net = FaceExpressionNet().eval()
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.bias.copy_(torch.tensor([5.0 if c == face_api_class else 0.0 for c in FACE_API_CLASSES]))
    return net


@pytest.mark.parametrize("face_api_class", FACE_API_CLASSES)
def test_peer_logits_land_in_pyfer_class_order_without_contempt(face_api_class):
    faces = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    logits = peer_logits(one_hot_peer(face_api_class), faces)
    assert logits.shape == (3, len(EMOTIONS))
    assert (logits.argmax(1) == EMOTIONS.index(AS_EMOTION[face_api_class])).all()
    assert (logits[:, EMOTIONS.index("contempt")] == ABSENT_LOGIT).all()


def test_peer_logits_average_the_face_and_its_mirror_at_112_px():
    net = FaceExpressionNet().eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    faces = np.random.default_rng(1).integers(0, 256, (2, 112, 112), dtype=np.uint8)
    rgb = torch.from_numpy(faces).float()[:, None].expand(-1, 3, -1, -1)
    with torch.no_grad():
        expected = ((net(rgb) + net(rgb.flip(3))) / 2).numpy()
    got = peer_logits(net, faces, batch=1)
    column = [EMOTIONS.index(AS_EMOTION[c]) for c in FACE_API_CLASSES]
    np.testing.assert_allclose(got[:, column], expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got[:, column], net(rgb).detach().numpy(), atol=1e-4)


def test_state_from_face_api_arrays_fills_every_weight():
    rng = np.random.default_rng(0)
    arrays = {}
    cin = 3
    for i, cout in enumerate(FaceExpressionNet.WIDTHS):
        for j in range(4):
            p = f"dense{i}/conv{j}/"
            if i == 0 and j == 0:
                arrays[p + "filters"] = rng.normal(size=(3, 3, 3, cout)).astype(np.float32)
            else:
                c = cin if j == 0 else cout
                arrays[p + "depthwise_filter"] = rng.normal(size=(3, 3, c, 1)).astype(np.float32)
                arrays[p + "pointwise_filter"] = rng.normal(size=(1, 1, c, cout)).astype(np.float32)
            arrays[p + "bias"] = rng.normal(size=cout).astype(np.float32)
        cin = cout
    arrays["fc/weights"] = rng.normal(size=(256, 7)).astype(np.float32)
    arrays["fc/bias"] = rng.normal(size=7).astype(np.float32)
    net = FaceExpressionNet()
    net.load_state_dict(face_api_state(arrays))  # strict: every weight, no extra
    # TensorFlow.js's depthwise (kh, kw, in, 1) becomes PyTorch's (in, 1, kh, kw)
    np.testing.assert_array_equal(net.dense[1].convs[0].depthwise.weight[5, 0].detach().numpy(),
                                  arrays["dense1/conv1/depthwise_filter"][:, :, 5, 0])
    np.testing.assert_array_equal(net.fc.weight.detach().numpy(), arrays["fc/weights"].T)


def test_average_keeps_the_model_on_contempt_and_mixes_the_rest():
    g = torch.Generator().manual_seed(0)
    model = torch.randn(4, len(EMOTIONS), generator=g)
    peer = in_emotion_order(torch.randn(4, 7, generator=g))
    contempt = EMOTIONS.index("contempt")
    none = averaged(model, peer, 0.0)
    torch.testing.assert_close(none, torch.log_softmax(model, 1))
    half = averaged(model, peer, 0.5)
    torch.testing.assert_close(half[:, contempt], none[:, contempt])
    known = [i for i in range(len(EMOTIONS)) if i != contempt]
    expected = 0.5 * none[:, known] + 0.5 * torch.log_softmax(peer[:, known], 1)
    torch.testing.assert_close(half[:, known], expected)


def test_peer_mix_sees_the_pixels_of_the_normalised_batch(monkeypatch):
    """--peer: the teacher's answer on a normalised training batch is averaged with the peer's
    answer on those very faces (back in 0-255, at 112 px)."""
    net = FaceExpressionNet().eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    monkeypatch.setattr(training.peer, "load_face_api_expression", lambda: net)
    prep = PreprocessSpec(64, mean=0.4, std=0.3)
    faces = torch.randint(0, 256, (3, 1, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    teacher = torch.randn(3, len(EMOTIONS), generator=torch.Generator().manual_seed(3))
    got = PeerMix(0.3, prep, torch.device("cpu"))(teacher, to_model_input(faces, prep))
    with torch.no_grad():
        expected = averaged(teacher, in_emotion_order(net(as_peer_input(faces.float()))), 0.3)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not any(p.requires_grad for p in net.parameters())


def test_cli_rejects_a_missing_model_and_bad_weights(tmp_path):
    with pytest.raises(SystemExit, match="no such model"):
        main(["--with", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="between 0 and 1"):
        main(["--peer-weights", "1.5", "--out", str(tmp_path / "x")])


@pytest.mark.parametrize("flags,message", [
    (["--peer", "1"], "in \\[0, 1\\)"),
    (["--peer", "0.2", "--teacher-cache"], "live teacher"),
])
def test_train_rejects_a_peer_it_cannot_use(tmp_path, flags, message):
    from training.train import main as train_main

    with pytest.raises(SystemExit, match=message):
        train_main(["distill", "--teacher", "t.safetensors", "--out", str(tmp_path / "r"), *flags])


def test_zoom_spreads_the_template_about_the_centre_and_keeps_it_mirror_symmetric():
    from pyfer.facenorm import FaceFraming
    from training.peer import zoomed

    base = FaceFraming()
    assert zoomed(base, 1.0) == base
    t, z = np.array(base.template), np.array(zoomed(base, 1.5).template)
    np.testing.assert_allclose(z - 0.5, 1.5 * (t - 0.5))
    np.testing.assert_allclose(z[0, 0], 1 - z[1, 0])  # the eyes stay mirror images


def test_cli_rejects_an_absurd_zoom(tmp_path):
    with pytest.raises(SystemExit, match="zooms"):
        main(["--zooms", "3", "--out", str(tmp_path / "x")])


def test_the_peer_is_the_size_the_docs_give():
    """README's and RESULTS.md's 0.32M parameters (323,687) and 51.5M MACs at 112 px RGB come from
    here; ``python -m training.peer`` prints them too."""
    from training.evaluate import count_macs
    from training.peer import FaceExpressionNet

    net = FaceExpressionNet()
    assert sum(p.numel() for p in net.parameters()) == 323_687
    assert round(count_macs(net, 112, 3) / 1e6, 1) == 51.5
