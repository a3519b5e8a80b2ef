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
