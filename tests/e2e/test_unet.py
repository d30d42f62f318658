"""examples/unet.cnn: a small U-Net (concatenated skips, conv_transpose and upsample) trained on
a per-pixel target derived from the built-in digits, from Python and from `cnnc train`."""
import subprocess
import sys

import numpy as np
import pytest

from cnnc import pipeline
from cnnc.runtime import data
from cnnc.runtime.train import evaluate, fit

from .conftest import EXAMPLES


def test_digit_segments_marks_ink_with_its_digit():
    x = np.zeros((2, 3, 3, 1), np.float32)
    x[0, 1, 1], x[1, 0, 2], x[1, 2, 2] = 0.9, 0.6, 0.4
    seg = data.digit_segments(x, np.array([7, 0]))
    assert seg.dtype == np.int32 and seg.shape == (2, 3, 3)
    assert seg[0, 1, 1] == 8 and seg[1, 0, 2] == 1           # 1 + the digit on ink
    assert seg.sum() == 9                                    # 0.4 is below the threshold: background


def test_unet_checks_with_skips_at_both_scales():
    g = pipeline.check(EXAMPLES / "unet.cnn")
    assert str(g.outputs["logits"].type) == "f32[N, 8, 8, 11]"
    ops = {n.op for n in g.nodes}
    assert {"concat", "conv2d_transpose", "resize", "max_pool"} <= ops
    concats = [n for n in g.nodes if n.op == "concat"]
    assert [str(n.out.type) for n in concats] == ["f32[N, 4, 4, 64]", "f32[N, 8, 8, 48]"]


def test_unet_learns_the_pixels_in_a_few_steps(compiled):
    """Four epochs of the digits (180 steps, a few seconds): the loss falls by half, held-out
    pixels beat the all-background guess (71% of them are background) by 10 points, and most
    ink pixels get their digit (chance among the ten is 10%). Measured: 88% and 62%."""
    x, y, xt, yt = data.load_digits()
    seg, seg_t = data.digit_segments(x, y), data.digit_segments(xt, yt)
    model = compiled("unet").Model(seed=0)
    hist = fit(model, x, seg, epochs=4, batch_size=32, seed=0, verbose=0)
    losses = hist.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    background = float((seg_t == 0).mean())
    assert evaluate(model, xt, seg_t)["pixel_accuracy"] > background + 0.1
    ink = seg_t > 0
    assert (model.forward(image=xt)["logits"].argmax(-1)[ink] == seg_t[ink]).mean() > 0.4


@pytest.mark.parametrize("spec,words", [("unet", "held-out test"), ("digits", "must be i32[N, 8, 8]")])
def test_cli_trains_on_segments_and_rejects_a_class_label(tmp_path, build_dir, spec, words):
    r = subprocess.run([sys.executable, "-m", "cnnc", "train", str(EXAMPLES / f"{spec}.cnn"), "--target", "segments",
                        "--epochs", "1", "-q", "--build-dir", str(build_dir), "--checkpoint", str(tmp_path / "u.npz")],
                       capture_output=True, text=True, timeout=600)
    assert (r.returncode == 0) == (spec == "unet"), r.stderr
    assert words in r.stdout + r.stderr and "Traceback" not in r.stderr
