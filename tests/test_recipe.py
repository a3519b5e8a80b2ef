"""The generalization recipe (issue 13): logit-adjusted T-SNet loss, mixup targets, the robust
augmentation, and training crops framed by pyfer.facenorm."""
from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from pyfer.preprocess import PreprocessSpec  # noqa: E402
from training.data import ROBUST_AUGMENT, AugmentSpec, augment  # noqa: E402
from training.train import (decoupled_kl, epoch_order, kd_loss, recipe_loss,  # noqa: E402
                            sampled_label_shift, zscore)

PREP = PreprocessSpec(32)


def test_recipe_loss_without_extensions_is_the_tsnet_loss():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    y = torch.randint(0, 8, (6,), generator=g)
    T, a = 8.0, 0.4
    # by hand: a * T^2 * KL(p_T || q_T) + (1 - a) * CE
    p = F.softmax(t / T, 1)
    kl = (p * (p.log() - F.log_softmax(s / T, 1))).sum(1).mean()
    want = a * T * T * kl + (1 - a) * F.cross_entropy(s, y)
    assert torch.allclose(kd_loss(s, t, y, T, a), want, atol=1e-5)
    assert torch.allclose(recipe_loss(s, y, p, T, a), want, atol=1e-5)


def test_standardized_kd_ignores_the_scale_and_offset_of_either_side():
    """Logit standardization: the KL term compares z-scored logits, so a student whose logits are
    the teacher's times 0.3 plus a constant has nothing left to learn from it; plain KD still
    pulls that student towards the teacher's scale."""
    g = torch.Generator().manual_seed(1)
    t = 3.0 * torch.randn(5, 7, generator=g)
    s = 0.3 * t + 2.0
    y = torch.randint(0, 7, (5,), generator=g)
    assert kd_loss(s, t, y, 8.0, 1.0, standardize=True).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(s, t, y, 8.0, 1.0).item() > 0.05
    # z-scored rows: mean 0, standard deviation 1
    z = zscore(t)
    assert torch.allclose(z.mean(1), torch.zeros(5), atol=1e-6)
    assert torch.allclose(z.std(1), torch.ones(5), atol=1e-5)
    # the same loss, written out: a * T^2 * KL(softmax(zt/T) || softmax(zs/T)) + (1 - a) * CE(s)
    s2 = torch.randn(5, 7, generator=g)
    p = F.softmax(zscore(t) / 8.0, 1)
    kl = (p * (p.log() - F.log_softmax(zscore(s2) / 8.0, 1))).sum(1).mean()
    want = 0.4 * 64 * kl + 0.6 * F.cross_entropy(s2, y)
    assert torch.allclose(kd_loss(s2, t, y, 8.0, 0.4, standardize=True), want, atol=1e-5)


def test_decoupled_kl_recombines_into_the_kl():
    """DKD's identity: KL(p || q) = TCKD + (1 - p_target) * NCKD, face by face, and both parts vanish
    when the student's answer is the teacher's."""
    g = torch.Generator().manual_seed(2)
    p = F.softmax(2.0 * torch.randn(6, 7, generator=g), 1)
    log_q = F.log_softmax(2.0 * torch.randn(6, 7, generator=g), 1)
    gt = torch.randint(0, 7, (6,), generator=g)
    tckd, nckd = decoupled_kl(log_q, p, gt)
    kl = (p * (p.log() - log_q)).sum(1)
    p_target = p[torch.arange(6), gt]
    assert torch.allclose(tckd + (1 - p_target) * nckd, kl, atol=1e-5)
    assert (tckd >= -1e-6).all() and (nckd >= -1e-6).all()
    same_t, same_n = decoupled_kl(p.log(), p, gt)
    assert torch.allclose(same_t, torch.zeros(6), atol=1e-6) and torch.allclose(same_n, torch.zeros(6), atol=1e-6)
    # weighting NCKD up changes the loss, and soft targets pick their top class
    s = torch.randn(6, 7, generator=g)
    t = torch.randn(6, 7, generator=g)
    soft = F.one_hot(gt, 7).float() * 0.7 + 0.3 / 7
    probs = F.softmax(t / 4.0, 1)
    dkd = recipe_loss(s, soft, probs, 4.0, 1.0, dkd_beta=8.0)
    tckd_s, nckd_s = decoupled_kl(F.log_softmax(s / 4.0, 1), probs, gt)
    assert torch.allclose(dkd, 16.0 * (tckd_s + 8.0 * nckd_s).mean(), atol=1e-5)
    assert not torch.allclose(dkd, recipe_loss(s, soft, probs, 4.0, 1.0), atol=1e-3)


def test_logit_adjustment_shifts_the_minimiser_by_the_prior():
    """With the shift tau*log(prior), the loss is minimal where the raw logits equal the target's
    log-odds minus tau*log(prior): a rare class gets a larger raw logit than its frequency."""
    prior = torch.tensor([0.7, 0.2, 0.1])
    shift = torch.log(prior)
    target = prior.view(1, 3)  # the training distribution itself
    z = torch.zeros(1, 3, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    for _ in range(500):
        opt.zero_grad()
        recipe_loss(z, target, None, 1.0, 0.0, logit_shift=shift).backward()
        opt.step()
    # balanced posterior: the raw logits become equal (the prior is divided out)
    assert torch.allclose(F.softmax(z.detach(), 1), torch.full((1, 3), 1 / 3), atol=1e-3)
    z2 = torch.zeros(1, 3, requires_grad=True)
    opt = torch.optim.SGD([z2], lr=1.0)
    for _ in range(500):
        opt.zero_grad()
        recipe_loss(z2, target, None, 1.0, 0.0).backward()
        opt.step()
    assert torch.allclose(F.softmax(z2.detach(), 1), prior.view(1, 3), atol=1e-3)


def test_epoch_order_permutes_at_power_one_and_draws_classes_as_prior_to_the_power():
    """--sample-power 1 keeps the plain permutation (so runs resume as before); below 1 the classes
    of the drawn faces come in proportion to prior^power, and the draws are seeded by the epoch."""
    labels = np.repeat(np.arange(4), [6000, 3000, 800, 200])
    rng = np.random.default_rng([0, 3])
    assert np.array_equal(epoch_order(labels, 0, 3), rng.permutation(len(labels)))
    prior = np.bincount(labels) / len(labels)
    for power in (0.0, 0.5):
        order = epoch_order(labels, 0, 3, power)
        assert len(order) == len(labels) and np.array_equal(order, epoch_order(labels, 0, 3, power))
        share = np.bincount(labels[order], minlength=4) / len(order)
        expected = prior ** power / (prior ** power).sum()
        np.testing.assert_allclose(share, expected, atol=0.015)
    assert not np.array_equal(epoch_order(labels, 0, 3, 0.5), epoch_order(labels, 0, 4, 0.5))


@pytest.mark.parametrize("power", [0.0, 0.5])
def test_sampled_label_shift_keeps_the_raw_logits_the_balanced_posterior(power):
    """Faces drawn with classes in proportion to prior^power carry labels distributed as
    prior^power (here: the whole training distribution, resampled). With sampled_label_shift in the
    label term and the full shift in the KL term, both terms are minimal at the same raw logits,
    the class-balanced posterior (equal logits), as without resampling."""
    prior = torch.tensor([0.7, 0.2, 0.1])
    shift = torch.log(prior)
    sampled = prior ** power / (prior ** power).sum()
    teacher = prior.view(1, 3)  # the teacher's answer is not resampled
    z = torch.zeros(1, 3, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    for _ in range(800):
        opt.zero_grad()
        recipe_loss(z, sampled.view(1, 3), teacher, 1.0, 0.4, logit_shift=shift,
                    label_shift=sampled_label_shift(shift, power)).backward()
        opt.step()
    assert torch.allclose(F.softmax(z.detach(), 1), torch.full((1, 3), 1 / 3), atol=1e-3)
    assert sampled_label_shift(shift, 1.0) is None and sampled_label_shift(None, 0.5) is None


def test_robust_augment_is_seeded_bounded_and_differs_from_basic():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8, generator=g)
    a = augment(x, PREP, ROBUST_AUGMENT, torch.Generator().manual_seed(3))
    b = augment(x, PREP, ROBUST_AUGMENT, torch.Generator().manual_seed(3))
    c = augment(x, PREP, AugmentSpec(), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.isfinite(a).all() and a.min() >= -1.0 - 1e-6 and a.max() <= 1.0 + 1e-6


@pytest.mark.parametrize("effect", ["blur_prob", "noise_prob", "lowres_prob", "jpeg_prob"])
def test_each_photometric_effect_changes_images(effect):
    x = torch.from_numpy(np.tile(np.arange(32, dtype=np.uint8) * 8, (4, 1, 32, 1)))
    x[:, :, ::2] = 255 - x[:, :, ::2]  # stripes: blur, low-res and JPEG all change them
    base = dict(max_rotate_deg=0.0, scale=(1.0, 1.0), max_shift=0.0, flip=False, brightness=0.0,
                contrast=(1.0, 1.0), erase_prob=0.0)
    plain = augment(x, PREP, AugmentSpec(**base), torch.Generator().manual_seed(1))
    changed = augment(x, PREP, AugmentSpec(**base, **{effect: 1.0}), torch.Generator().manual_seed(1))
    assert (plain - changed).abs().mean() > 0.01


def test_unfold_batchnorm_reproduces_the_export_and_trains():
    from training.models import ModelSpec, fold_batchnorm, randomize_batchnorm, unfold_batchnorm

    spec = ModelSpec("shufflenetv2")
    torch.manual_seed(0)
    trained = randomize_batchnorm(spec.build(dropout=0.0)).eval()
    folded = fold_batchnorm(trained, spec)
    x = torch.randn(64, 1, 64, 64)
    model = unfold_batchnorm(folded, spec, x, dropout=0.0)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), folded(x), atol=1e-4, rtol=1e-4)
        # train mode (batch statistics of these same images) is close too
        assert torch.allclose(model.train()(x), folded(x), atol=2e-2, rtol=2e-2)
    assert any(p.requires_grad for p in model.parameters())


def test_export_bakes_the_prior_shift_into_the_classifier(tmp_path):
    """prior_shift * log(prior) is added to the logits, and the prior and shift travel in the
    metadata (for Recognizer(prior_shift=...))."""
    from training.export import export_model, from_safetensors, read_metadata
    from training.models import ModelSpec

    spec = ModelSpec("shufflenetv2")
    torch.manual_seed(0)
    model = spec.build(dropout=0.0).eval()
    prior = np.array([8, 7, 3, 3, 2, 0.5, 0.5, 0.2])
    export_model(model, spec, PreprocessSpec(64), tmp_path / "a.safetensors")
    export_model(model, spec, PreprocessSpec(64), tmp_path / "b.safetensors", class_prior=prior, prior_shift=0.3)
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        a = from_safetensors(tmp_path / "a.safetensors")(x)
        b = from_safetensors(tmp_path / "b.safetensors")(x)
    bias = torch.as_tensor(0.3 * np.log(prior / prior.sum()), dtype=torch.float32)
    assert torch.allclose(b - a, bias.expand(3, 8), atol=1e-5)
    adj = read_metadata(tmp_path / "b.safetensors")["logit_adjustment"]
    assert adj["prior_shift"] == 0.3 and np.allclose(adj["class_prior"], prior / prior.sum())
    assert "logit_adjustment" not in read_metadata(tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match="class_prior"):
        export_model(model, spec, PreprocessSpec(64), tmp_path / "c.safetensors", prior_shift=0.3)


def test_init_from_a_shifted_export_starts_from_the_raw_logits(tmp_path):
    """--init from an export with a baked prior shift (the shipped student) takes the shift out:
    training goes on from the logits its loss was written for."""
    import argparse

    from training.export import export_model
    from training.models import ModelSpec
    from training.train import initial_model

    spec, prep = ModelSpec("shufflenetv2"), PreprocessSpec(64)
    torch.manual_seed(0)
    model = spec.build(dropout=0.0).eval()
    prior = np.array([8, 7, 3, 3, 2, 0.5, 0.5, 0.2])
    export_model(model, spec, prep, tmp_path / "raw.safetensors")
    export_model(model, spec, prep, tmp_path / "shifted.safetensors", class_prior=prior, prior_shift=0.4)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 1, 64, 64), dtype=np.uint8))
    started = [initial_model(argparse.Namespace(init=str(tmp_path / name), pretrained=None, seed=0, dropout=0.0), spec, prep,
                             images).eval() for name in ("raw.safetensors", "shifted.safetensors")]
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(started[0](x), started[1](x), atol=1e-4)
        assert torch.allclose(started[0](x), model(x), atol=1e-3)


def test_detection_cache_is_keyed_on_the_detector_settings(tmp_path, monkeypatch, sfew_faces):
    """training.framing caches YuNet's boxes; a changed detector setting must detect again."""
    import pyfer.yunet
    from training import framing

    monkeypatch.setenv("PYFER_CACHE", str(tmp_path))
    images, names = [sfew_faces[0]], ["sfew_0"]
    first = framing.detect_faces(images, names, "test")
    assert first[2][0] > 0.5, "the test face is found"
    assert len(list(tmp_path.glob("yunet_*.npz"))) == 1
    framing.detect_faces(images, names, "test")  # same settings: the cache answers
    assert len(list(tmp_path.glob("yunet_*.npz"))) == 1
    real_init = pyfer.yunet.YuNetDetector.__init__

    def stricter(self, *a, **kw):
        real_init(self, *a, **{**kw, "score_threshold": 0.99})
    monkeypatch.setattr(pyfer.yunet.YuNetDetector, "__init__", stricter)
    framing.detect_faces(images, names, "test")
    assert len(list(tmp_path.glob("yunet_*.npz"))) == 2, "another detector setting, another cache entry"


def test_weight_averaging_means_floats_and_remeasures_batchnorm():
    """training.average: the mean of two state dicts, and BN statistics measured over the data."""
    import torch

    from training.average import average_state, recompute_batchnorm

    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    b = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    b[1].num_batches_tracked.fill_(7)
    mean = average_state([a.state_dict(), b.state_dict()])
    assert torch.allclose(mean["0.weight"], (a[0].weight + b[0].weight) / 2)
    assert mean["1.num_batches_tracked"] == a[1].num_batches_tracked  # integers are not averaged
    a.load_state_dict(mean)
    x = torch.randn(300, 1, 9, 9) * 3 + 1
    recompute_batchnorm(a, x, batch=64)  # several batches: the cumulative average must equal one pass
    with torch.no_grad():
        z = a[0](x)
    assert not a.training
    assert torch.allclose(a[1].running_mean, z.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(a[1].running_var, z.var((0, 2, 3)), rtol=1e-2)
    with pytest.raises(SystemExit):
        average_state([a.state_dict(), torch.nn.Sequential(torch.nn.Conv2d(1, 5, 3)).state_dict()])


def test_per_class_recall_table_counts_by_hand_and_marks_absent_classes():
    """Recall per class after the bias, "-" for a class a set lacks (SFEW has no contempt)."""
    from training.prior_shift import per_class_recall_table

    eye = np.eye(8, dtype=np.float32)
    labels = {"FERPlus valid": np.array([0, 0, 1, 7]), "SFEW": np.array([0, 1, 1, 1])}
    logits = {"FERPlus valid": eye[[0, 1, 1, 7]], "SFEW": eye[[0, 1, 0, 0]]}
    md, recall = per_class_recall_table(logits, labels, np.zeros(8))
    assert recall["FERPlus valid"]["neutral"] == 0.5 and recall["FERPlus valid"]["contempt"] == 1.0
    assert recall["SFEW"]["happiness"] == pytest.approx(1 / 3) and recall["SFEW"]["contempt"] is None
    assert md.splitlines()[3].startswith("| SFEW | 100.0 | 33.3 | - |")
    bias = np.zeros(8, dtype=np.float32)
    bias[1] = 2.0  # everything becomes happiness
    _, shifted = per_class_recall_table(logits, labels, bias)
    assert shifted["FERPlus valid"]["happiness"] == 1.0 and shifted["FERPlus valid"]["neutral"] == 0.0


def test_per_class_biases_undo_a_known_offset_and_never_lower_the_rule():
    """Logits that would be right but for a bias against one class: the search finds a bias that
    scores at least as well as none, and favours that class."""
    from training.prior_shift import tune_class_biases, worst_ratio

    rng = np.random.default_rng(0)
    labels, logits = {}, {}
    for name, n in (("FERPlus valid", 400), ("SFEW", 200)):
        y = rng.integers(0, 8, n)
        z = rng.normal(0, 1, (n, 8)).astype(np.float32)
        z[np.arange(n), y] += 2.0
        z[:, 3] -= 2.5  # class 3 is suppressed
        labels[name], logits[name] = y, z
    idx = {k: np.arange(len(v)) for k, v in labels.items()}
    bias, score = tune_class_biases(logits, labels, idx, sweeps=2)
    assert score >= worst_ratio(logits, labels, np.zeros(8), idx)
    assert score > worst_ratio(logits, labels, np.zeros(8), idx) + 0.05
    assert bias[3] - np.delete(bias, 3).mean() > 1.0


def test_engine_teacher_matches_its_pytorch_rebuild():
    from conftest import REPO
    from training.predict import load_model
    from training.train import EngineTeacher

    path = REPO / "models" / "teacher_effresnet18_fp16.safetensors"
    model, _, prep = load_model(str(path))
    x = torch.randn(3, 1, prep.input_size, prep.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval()(x)
    torch.testing.assert_close(EngineTeacher(str(path), 1)(x), expected, rtol=1e-4, atol=1e-4)


def _recording_pair(answer=lambda v: torch.zeros(len(v), 8)):
    """A teacher and a fresh student that record every batch shown to them (in ``seen``)."""
    from training.models import ModelSpec

    seen = {"teacher": [], "student": []}

    def teacher(v):
        seen["teacher"].append(v.clone())
        return answer(v)

    student = ModelSpec("shufflenetv2").build(dropout=0.0)
    student.register_forward_pre_hook(lambda _m, inp: seen["student"].append(inp[0].detach().clone()))
    return seen, teacher, student


def _tiny_distillation(epochs: int = 1):
    """Training flags, 16 random 32x32 faces and their labels for train_epoch checks (robust
    augmentation, mixup, batches of 8)."""
    from training.train import build_parser

    # the real parser, so that every flag train_epoch reads has its default
    args = build_parser().parse_args(["distill", "--out", "unused", "--augment", "robust", "--batch-size", "8",
                                      "--epochs", str(epochs), "--quiet", "--T", "4", "--alpha", "0.4",
                                      "--mixup", "0.4"])
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 8, (16,), generator=g)
    return args, x, y


def test_live_teacher_answers_on_the_mixed_view_the_student_sees():
    """Consistent teaching: with mixup, the live teacher must see the very batch the student sees
    (mixed and augmented), not the clean faces or the views before mixing."""
    from training.train import train_epoch

    seen, teacher, student = _recording_pair()
    args, x, y = _tiny_distillation()
    opt = torch.optim.SGD(student.parameters(), lr=0.01)
    train_epoch(args, 0, student, opt, PREP, x, y, F.one_hot(y, 8).float(), teacher, None, None, False)
    assert len(seen["teacher"]) == len(seen["student"]) == 2
    for t_view, s_view in zip(seen["teacher"], seen["student"]):
        assert torch.equal(t_view, s_view)
    unmixed = augment(x[:8], PREP, ROBUST_AUGMENT, torch.Generator().manual_seed(0))
    assert not torch.allclose(seen["teacher"][0], unmixed)  # mixup did change the view


def test_mixup_mixes_the_targets_and_the_cached_teacher_answers_as_it_mixes_the_faces(monkeypatch):
    """Each mixed face's target is lam x its label + (1 - lam) x its partner's, and so is its cached
    teacher answer: rows that sum to 1 and mix two classes, not the unmixed one-hot rows or answers."""
    import training.train as train_module
    from training.train import teacher_softmax, train_epoch

    seen = []

    def recording_loss(logits, target, teacher_probs, *rest, **kw):
        seen.append((target.detach().clone(), teacher_probs.detach().clone()))
        return logits.sum() * 0

    monkeypatch.setattr(train_module, "recipe_loss", recording_loss)
    args, x, y = _tiny_distillation()
    y = torch.arange(16) % 8  # every class twice: a partner is mostly of another class
    cached = torch.randn(16, 8, generator=torch.Generator().manual_seed(2)) * 3
    student = _recording_pair()[2]
    opt = torch.optim.SGD(student.parameters(), lr=0.01)
    train_epoch(args, 0, student, opt, PREP, x, y, F.one_hot(y, 8).float(), None, cached, None, False)
    assert len(seen) == 2
    unmixed = teacher_softmax(cached, args.T)
    for target, probs in seen:
        assert torch.allclose(target.sum(1), torch.ones(8)) and torch.allclose(probs.sum(1), torch.ones(8), atol=1e-5)
        assert ((target > 1e-6).sum(1) == 2).sum() >= 4  # most rows mix two classes
        nearest = torch.cdist(probs, unmixed).min(1).values
        assert (nearest > 1e-4).sum() >= 4  # most answers are mixes, not one face's own


def test_cutmix_box_has_the_drawn_area_inside_the_image_and_is_clipped_at_edges():
    from training.train import cutmix_box, paste_box

    rng = np.random.default_rng(3)
    x, other = torch.zeros(2, 1, 40, 50), torch.ones(2, 1, 40, 50)
    shares = []
    for lam in rng.uniform(0.05, 0.95, 200):
        top, bottom, left, right = box = cutmix_box(float(lam), rng)
        assert 0.0 <= top <= bottom <= 1.0 and 0.0 <= left <= right <= 1.0
        assert (bottom - top) * (right - left) <= 1.0 - lam + 1e-9  # clipping only shrinks the box
        mixed, share = paste_box(x, other, box)
        # the returned share is what is really left of x, pixel for pixel, whatever lam was drawn
        assert share == pytest.approx(1.0 - mixed.mean().item())
        assert torch.equal(x, torch.zeros_like(x))  # the input is not written to
        shares.append(share)
    assert min(shares) < 0.4 and max(shares) > 0.9

    class Centre:  # a box centred in the image is not clipped: its area is exactly 1 - lam
        def random(self):
            return 0.5

    assert cutmix_box(0.75, Centre()) == (0.25, 0.75, 0.25, 0.75)
    assert paste_box(x[..., :40], other[..., :40], cutmix_box(0.75, Centre()))[1] == 0.75


def test_batch_mixer_draws_as_before_for_mixup_and_splits_batches_when_both_are_on():
    from training.train import batch_mixer

    assert batch_mixer(0.0, 0.0, np.random.default_rng(0)) is None
    # mixup alone: one Beta draw, as before --cutmix existed (a replayed run's views stay valid)
    rng, ref = np.random.default_rng(5), np.random.default_rng(5)
    assert batch_mixer(0.2, 0.0, rng) == ("mixup", float(ref.beta(0.2, 0.2)))
    assert rng.random() == ref.random()
    assert batch_mixer(0.0, 1.0, np.random.default_rng(1))[0] == "cutmix"
    rng = np.random.default_rng(2)
    kinds = [batch_mixer(0.2, 1.0, rng)[0] for _ in range(400)]
    assert 150 < kinds.count("cutmix") < 250
    # each kind draws lam from its own Beta: cutmix's Beta(1, 1) is uniform (sd 0.29), mixup's
    # Beta(0.2, 0.2) piles up near 0 and 1 (sd 0.42)
    rng = np.random.default_rng(3)
    draws = [batch_mixer(0.2, 1.0, rng) for _ in range(4000)]
    sd = {kind: np.std([lam for k, lam in draws if k == kind]) for kind in ("cutmix", "mixup")}
    assert 0.26 < sd["cutmix"] < 0.32 and 0.39 < sd["mixup"] < 0.45, sd


def test_live_teacher_answers_on_the_cutmix_view_the_student_sees():
    """With --cutmix the teacher sees the student's very batch: each face keeps its own pixels outside
    one rectangle and carries another face of the batch inside it."""
    from training.train import train_epoch

    seen, teacher, student = _recording_pair()
    args, x, y = _tiny_distillation()
    args.mixup, args.cutmix = 0.0, 1.0
    opt = torch.optim.SGD(student.parameters(), lr=0.01)
    train_epoch(args, 0, student, opt, PREP, x, y, F.one_hot(y, 8).float(), teacher, None, None, False)
    assert len(seen["teacher"]) == len(seen["student"]) == 2
    for t_view, s_view in zip(seen["teacher"], seen["student"]):
        assert torch.equal(t_view, s_view)
    # the first batch before mixing: the epoch's order and augmentation draws (seed 0, epoch 0)
    first = torch.from_numpy(epoch_order(y.numpy(), 0, 0)[:8])
    unmixed = augment(x[first], PREP, ROBUST_AUGMENT, torch.Generator().manual_seed(0))
    changed = (seen["student"][0] != unmixed).any(0).any(0)  # (H, W): the pasted pixels
    rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
    assert 0 < changed.sum() < changed.numel()
    assert changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # one rectangle


def test_teacher_views_replay_earlier_epochs_and_skip_the_teacher(tmp_path):
    """--teacher-views K: epoch e repeats the batches of epoch e % K exactly, the teacher answers only
    in the first K epochs, and the kept answers survive a restart (but not a change of draws)."""
    from training.train import TeacherViews, train_epoch

    seen, teacher, student = _recording_pair(lambda v: v.flatten(1)[:, :8] * 3.0)  # view-dependent answers
    args, x, y = _tiny_distillation(epochs=3)
    opt = torch.optim.SGD(student.parameters(), lr=0.01)
    path = tmp_path / "teacher_views.pt"
    views = TeacherViews(2, 2, 8, 8, path, "key")
    for epoch in range(3):
        train_epoch(args, epoch, student, opt, PREP, x, y, F.one_hot(y, 8).float(), teacher, None, None, False,
                    views=views)
        views.epoch_done(epoch)
    assert len(seen["teacher"]) == 4 and len(seen["student"]) == 6  # no teacher in epoch 3
    for b in range(2):
        assert torch.equal(seen["student"][4 + b], seen["student"][b])  # epoch 3 replays epoch 1
        torch.testing.assert_close(views.logits[0, b], teacher(seen["student"][b]))
    assert not torch.equal(seen["student"][2], seen["student"][0])  # epoch 2 drew its own views
    again = TeacherViews(2, 2, 8, 8, path, "key")
    assert again.filled == [True, True] and torch.equal(again.logits, views.logits)
    assert TeacherViews(2, 2, 8, 8, path, "other draws").filled == [False, False]


def test_cached_teacher_answers_follow_the_teachers_contents_not_its_path(tmp_path, capsys):
    """The keys train_in keeps teacher answers under: a resumed run whose teacher file moved keeps
    its kept views and logits; another file at the old path does not reuse them, and says so; a
    folder written before the keys named the contents (the path's key) still resumes."""
    import shutil

    from training.data import FaceSet
    from training.train import TeacherViews, build_parser, teacher_cache_keys

    first = tmp_path / "teacher.safetensors"
    first.write_bytes(b"weights of the first teacher")
    moved = tmp_path / "elsewhere" / "teacher.safetensors"
    moved.parent.mkdir()
    shutil.copy(first, moved)
    faces = FaceSet(np.zeros((4, 8, 8), np.uint8), np.zeros(4, np.int64), None, ["a.png", "b.png", "c.png", "d.png"])

    def keys(teacher, kind="views", *flags):
        args = build_parser().parse_args(["distill", "--teacher", str(teacher), "--out", str(tmp_path / "run"),
                                          *flags])
        return teacher_cache_keys(args, faces, kind)

    for kind in ("views", "logits"):
        assert keys(first, kind)[0] == keys(moved, kind)[0]
        assert keys(first, kind)[1] != keys(moved, kind)[1]  # the pre-session-30 key named the path
    assert keys(first)[0] != keys(first, "views", "--seed", "1")[0]  # other draws, other views
    path = tmp_path / "teacher_views.pt"
    views = TeacherViews(1, 2, 8, 8, path, keys(first))
    views.epoch_done(0)
    assert TeacherViews(1, 2, 8, 8, path, keys(moved)).filled == [True]
    assert "taught again" not in capsys.readouterr().err
    old = TeacherViews(1, 2, 8, 8, tmp_path / "old_views.pt", keys(first)[1])  # written under the path's key
    old.epoch_done(0)
    assert TeacherViews(1, 2, 8, 8, tmp_path / "old_views.pt", keys(first)).filled == [True]
    first.write_bytes(b"weights of another teacher")
    assert TeacherViews(1, 2, 8, 8, path, keys(first)).filled == [False]
    assert "taught again" in capsys.readouterr().err


def test_peer_mixes_the_live_and_the_replayed_teacher_answers_and_views_keep_the_teachers_own(tmp_path):
    """--peer with --teacher-views: the peer gets the teacher's answer and the view it answered on,
    live and replayed alike; the kept views stay the teacher's own answers."""
    from training.train import TeacherViews, train_epoch

    seen, teacher, student = _recording_pair(lambda v: v.flatten(1)[:, :8] * 3.0)
    args, x, y = _tiny_distillation(epochs=2)
    calls = []

    def peer(t_out, view):
        calls.append((t_out.clone(), view.clone()))
        return t_out + 1.0

    opt = torch.optim.SGD(student.parameters(), lr=0.01)
    views = TeacherViews(1, 2, 8, 8, tmp_path / "teacher_views.pt", "key")
    for epoch in range(2):
        train_epoch(args, epoch, student, opt, PREP, x, y, F.one_hot(y, 8).float(), teacher, None, None, False,
                    views=views, peer=peer)
        views.epoch_done(epoch)
    assert len(seen["teacher"]) == 2 and len(calls) == 4  # epoch 2 replays, the peer still answers
    for b in range(2):
        torch.testing.assert_close(views.logits[0, b], teacher(seen["student"][b]))  # not + 1
        for t_out, view in (calls[b], calls[2 + b]):
            torch.testing.assert_close(t_out, views.logits[0, b])
            assert torch.equal(view, seen["student"][b])


def test_a_clahe_student_and_its_teacher_see_the_same_augmented_mixed_view_of_their_own_crops():
    """--student-clahe: the student trains on equalized crops while the live teacher answers on the
    unequalized faces under the very same augmentation and mixup draws."""
    from training.data import clahe_crops
    from training.train import parse_clahe, train_epoch

    args, x, y = _tiny_distillation()
    x_eq = torch.from_numpy(clahe_crops(x[:, 0].numpy(), 2.0, 4)).unsqueeze(1)

    def views(x_train, x_teacher):
        seen, teacher, student = _recording_pair()
        opt = torch.optim.SGD(student.parameters(), lr=0.01)
        train_epoch(args, 0, student, opt, PREP, x_train, y, F.one_hot(y, 8).float(), teacher, None, None,
                    False, x_teacher=x_teacher)
        return seen

    for mixing in ("mixup", "cutmix"):  # (cutmix pastes the teacher's own faces into its view)
        args.mixup, args.cutmix = (0.4, 0.0) if mixing == "mixup" else (0.0, 1.0)
        split = views(x_eq, x)
        plain = views(x, None)
        equalized = views(x_eq, None)
        for i in range(2):
            torch.testing.assert_close(split["teacher"][i], plain["student"][i])  # teacher: the raw faces
            torch.testing.assert_close(split["student"][i], equalized["student"][i])  # student: its own crops
            assert not torch.allclose(split["teacher"][i], split["student"][i])
    assert parse_clahe("2/4") == (2.0, 4)
    for bad in ("2", "a/4", "0/4", "2/0"):
        with pytest.raises(SystemExit, match="student-clahe"):
            parse_clahe(bad)


def test_a_teacher_at_another_input_size_sees_the_student_view_resized():
    """A student trained at 80 px from a 64 px teacher: the teacher answers on the student's own
    view, resized to its size (so a face resized first gives the same answer), and --init from a
    64 px export starts an 80 px student."""
    import argparse

    from conftest import REPO
    from training.models import ModelSpec
    from training.predict import load_model
    from training.train import AtInputSize, EngineTeacher, initial_model, load_teacher

    path = str(REPO / "models" / "teacher_effresnet18_fp16.safetensors")
    prep80 = PreprocessSpec(80)
    rebuilt, size = load_teacher(path, prep80, torch.device("cpu"))
    assert size == 64
    with pytest.raises(SystemExit, match="differs"):
        load_teacher(path, PreprocessSpec(80, mean=0.4), torch.device("cpu"))
    x80 = torch.randn(3, 1, 80, 80, generator=torch.Generator().manual_seed(0))
    x64 = F.interpolate(x80, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        expected = rebuilt(x64)
        torch.testing.assert_close(AtInputSize(rebuilt, 64)(x80), expected)
    torch.testing.assert_close(AtInputSize(EngineTeacher(path, 1), 64)(x80), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(rebuilt(x80[..., :64, :64]), expected)  # not a crop: the whole view

    student64 = REPO / "pyfer" / "models" / "tsnet_student.safetensors"
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 1, 80, 80), dtype=np.uint8))
    model = initial_model(argparse.Namespace(init=str(student64), pretrained=None, seed=0, dropout=0.0),
                          ModelSpec("shufflenetv2"), prep80, images).eval()
    _, _, prep64 = load_model(str(student64))
    assert prep64.input_size == 64
    with torch.no_grad():
        assert model(x80).shape == (3, 8)


def test_tta_views_zoom_about_the_centre_and_keep_the_template_mirror_symmetric():
    """scripts/tta_views.py: a zoomed or vertically moved template must stay left-right symmetric
    (flip averaging relies on it), and zoom 1 with no shift is the Recognizer's own framing."""
    import importlib.util

    from conftest import REPO
    from pyfer.facenorm import FaceFraming

    spec = importlib.util.spec_from_file_location("tta_views", REPO / "scripts" / "tta_views.py")
    tta = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tta)
    base = FaceFraming(mode="align")
    assert np.allclose(tta.view_framing(base, 1.0, 0.0, 0.0).template, base.template)
    for zoom, dy in ((0.9, 0.0), (1.1, 0.0), (1.0, 0.04)):
        t = np.asarray(tta.view_framing(base, zoom, 0.0, dy).template)
        mirrored = np.stack([1 - t[:, 0], t[:, 1]], 1)[[1, 0, 2, 4, 3]]
        assert np.allclose(t, mirrored)
        spread = np.linalg.norm(t - t.mean(0), axis=1)
        assert np.allclose(spread, zoom * np.linalg.norm(np.asarray(base.template) - np.asarray(base.template).mean(0), axis=1))


def test_sharpness_match_softens_detail_and_keeps_flat_faces():
    """scripts/sharpness_match.py: the round trip keeps the size and a flat image, and removes
    detail a 48 px source could not hold (a one-pixel checkerboard)."""
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("sharpness_match", REPO / "scripts" / "sharpness_match.py")
    sm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sm)
    flat = np.full((2, 64, 64), 117, np.uint8)
    assert np.array_equal(sm.soften(flat, 48), flat)
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)[None]
    soft = sm.soften(checker, 48)
    assert soft.shape == checker.shape
    assert soft.astype(float).std() < 0.5 * checker.astype(float).std()


def test_lighting_match_normalizes_contrast_and_keeps_flat_faces():
    """scripts/lighting_match.py: moment matching sets each crop's mean and spread and leaves a
    flat crop flat; equalization and CLAHE keep the shape and stretch a dim, low-contrast crop."""
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("lighting_match", REPO / "scripts" / "lighting_match.py")
    lm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lm)
    rng = np.random.default_rng(0)
    dim = rng.integers(20, 60, (3, 64, 64)).astype(np.uint8)  # dark and flat-ish, like a low-key frame
    out = lm.match_moments(dim, 128.0, 50.0)
    assert out.shape == dim.shape and out.dtype == np.uint8
    assert np.allclose(out.mean(axis=(1, 2)), 128, atol=1.5) and np.allclose(out.std(axis=(1, 2)), 50, atol=1.5)
    flat = np.full((1, 64, 64), 30, np.uint8)
    assert np.array_equal(lm.match_moments(flat, 128.0, 50.0), np.full_like(flat, 128))
    for fn in (lm.equalize, lm.clahe_crops):
        eq = fn(dim)
        assert eq.shape == dim.shape and eq.astype(float).std() > 2 * dim.astype(float).std()


def test_similarity_kd_sees_only_which_faces_are_alike():
    """SP-KD compares the batch's row-normalised Gram matrices: a rotated, rescaled or zero-padded
    copy of the teacher's features costs nothing, different features do."""
    from training.train import similarity_kd

    g = torch.Generator().manual_seed(0)
    teacher = torch.rand(16, 12, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(12, 12, generator=g))
    assert similarity_kd(3.0 * teacher @ rotation, teacher) < 1e-10
    assert similarity_kd(torch.cat([teacher, torch.zeros(16, 20)], 1), teacher) < 1e-10
    assert similarity_kd(torch.rand(16, 32, generator=g), teacher) > 1e-4


def test_feature_teacher_gives_the_engine_features_and_the_teacher_logits(tmp_path):
    """--feature-kd on an export: the engine runs a copy with an identity classifier, whose output
    is the PyTorch teacher's pooled features, and ``logits`` turns them into the teacher's logits."""
    from conftest import REPO
    from training.predict import load_model
    from training.train import FeatureTeacher

    path = REPO / "models" / "teacher_effresnet18_fp16.safetensors"
    model, _, prep = load_model(str(path))
    model.eval()
    x = torch.randn(3, 1, prep.input_size, prep.input_size, generator=torch.Generator().manual_seed(0))
    teacher = FeatureTeacher(model, str(path), tmp_path, 1, torch.device("cpu"))
    assert (tmp_path / "teacher_features.safetensors").is_file()
    with torch.no_grad():
        features = teacher(x)
        torch.testing.assert_close(features, model.features(x).mean((2, 3)), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(teacher.logits(features), model(x), rtol=1e-4, atol=1e-4)


def test_feature_kd_trains_on_the_teacher_features_and_replays_them(tmp_path):
    """With --feature-kd the teacher views keep the teacher's features (its logits follow from its
    classifier), and the similarity term changes what the student learns from the same teacher."""
    from training.models import ModelSpec
    from training.train import TeacherViews, train_epoch

    head = torch.nn.Linear(16, 8)

    class RecordingFeatureTeacher:
        def __init__(self):
            self.calls = 0

        def __call__(self, v):
            self.calls += 1
            features = v.flatten(1)[:, :16].abs() * 2.0
            return features if self.gives_features else self.logits(features)

        def logits(self, features):
            return head(features)

    def trained(weight: float, views=None):
        args, x, y = _tiny_distillation(epochs=2)
        args.feature_kd = weight
        torch.manual_seed(0)
        student = ModelSpec("shufflenetv2").build(dropout=0.0)
        opt = torch.optim.SGD(student.parameters(), lr=0.05)
        teacher = RecordingFeatureTeacher()
        teacher.gives_features = weight > 0  # the same teacher, as a logit teacher without feature KD
        for epoch in range(2):
            train_epoch(args, epoch, student, opt, PREP, x, y, F.one_hot(y, 8).float(), teacher, None, None,
                        False, views=views)
            if views is not None:
                views.epoch_done(epoch)
        return student, teacher

    views = TeacherViews(1, 2, 8, 16, tmp_path / "views.pt", "key")
    with_sp, teacher = trained(100.0, views)
    assert teacher.calls == 2 and views.filled == [True]  # epoch 2 replayed the kept features
    assert (views.logits >= 0).all() and views.logits.abs().sum() > 0
    without, _ = trained(0.0)
    assert not torch.allclose(with_sp.fc.weight, without.fc.weight)
