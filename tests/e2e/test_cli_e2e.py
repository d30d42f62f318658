"""The `cnnc` commands a new user runs: compile, train, evaluate, predict."""
import subprocess
import sys

from .conftest import EXAMPLES, TINY_FLOWERS


def cnnc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cnnc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_train_evaluate_predict_on_an_image_folder(tmp_path, image_folder):
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY_FLOWERS)
    ck = tmp_path / "ck" / "tiny.npz"
    r = cnnc("train", spec, "--data", image_folder, "--epochs", 3, "--batch-size", 8, "--checkpoint", ck,
             "--build-dir", tmp_path / "gen", "-q")
    assert r.returncode == 0, r.stderr
    assert "held-out test" in r.stdout and ck.exists()
    r = cnnc("evaluate", spec, "--data", image_folder, "--checkpoint", ck, "--build-dir", tmp_path / "gen",
             "--threads", 1)
    assert r.returncode == 0 and "accuracy" in r.stdout, r.stderr
    img = next((image_folder / "red").iterdir())
    r = cnnc("predict", spec, img, "--checkpoint", ck, "--build-dir", tmp_path / "gen")
    assert r.returncode == 0, r.stderr
    assert str(img) in r.stdout and "%" in r.stdout
    for name in ("red", "green", "blue"):
        assert name in r.stdout


def test_threads_option_must_be_a_positive_count(tmp_path):
    for bad in ("0", "two"):
        r = cnnc("train", EXAMPLES / "digits.cnn", "--threads", bad, "--build-dir", tmp_path / "gen")
        assert r.returncode == 2 and "1 or more" in r.stderr and "Traceback" not in r.stderr


def test_train_rejects_data_that_does_not_fit(tmp_path):
    r = cnnc("train", EXAMPLES / "flowers.cnn", "--epochs", 1, "--build-dir", tmp_path / "gen")
    assert r.returncode == 1
    assert "built-in digits" in r.stderr and "--data" in r.stderr and "Traceback" not in r.stderr


def test_compile_writes_an_importable_package(tmp_path):
    r = cnnc("compile", EXAMPLES / "mnist.cnn", "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "mnist").is_dir()


def test_emit_c_only(tmp_path):
    r = cnnc("compile", EXAMPLES / "mnist.cnn", "-o", tmp_path, "--emit-c")
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "mnist").glob("*.c")) and not list((tmp_path / "mnist").glob("*.so"))
