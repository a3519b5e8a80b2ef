"""training.framing: YuNet re-framing of training and evaluation faces."""
from __future__ import annotations

from pyfer.facenorm import FaceFraming
from pyfer.preprocess import PreprocessSpec
from training.framing import load_framed


def test_framing_draws_no_progress_bar_when_stderr_is_not_a_terminal(tiny_sets, capsys):
    framed = load_framed(str(tiny_sets[1]), PreprocessSpec(48), "valid", FaceFraming(mode="align"))
    assert framed.images.shape == (14, 48, 48)
    err = capsys.readouterr().err
    # neither the decoding bar nor YuNet's (a nohup log fills with \r lines): one line for the YuNet pass
    assert "\r" not in err and err.splitlines() == [err.strip()] and "YuNet on 14 images, once" in err, err
    load_framed(str(tiny_sets[1]), PreprocessSpec(48), "valid", FaceFraming(mode="align"))
    assert capsys.readouterr().err == ""  # cached: nothing to say


def test_a_manifest_named_two_ways_shares_its_cache(tiny_sets, capsys, monkeypatch):
    """`training.evaluate --manifest ../shared/...` and `training.prior_shift`'s absolute default
    name the same files: YuNet runs on them once (it ran twice, about 30 s each on SFEW)."""
    manifest = tiny_sets[1]
    load_framed(str(manifest), PreprocessSpec(48), "valid", FaceFraming(mode="align"))
    assert "YuNet on 14 images, once" in capsys.readouterr().err
    monkeypatch.chdir(manifest.parent.parent)
    relative = f"./{manifest.parent.name}/../{manifest.parent.name}/{manifest.name}"
    again = load_framed(relative, PreprocessSpec(48), "valid", FaceFraming(mode="align"))
    assert capsys.readouterr().err == "" and again.images.shape == (14, 48, 48)
