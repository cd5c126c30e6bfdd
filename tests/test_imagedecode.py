"""The shared image decoder: header probing, pixel and memory budgets, reduced JPEG decoding, bombs
skipped (not fatal) in run / datasets / bench, cv2.error caught. Uses the shipped models (no TensorFlow)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app import datasets, imagedecode, sources
from edge_app.imagedecode import DecodeBusy, DecodeLimits, ImageRejected, MemoryBudget
from edge_app.imageheader import probe
from tests.conftest import ROOT
from tests.fakes import pattern

TINY_MODEL = ROOT / "models" / "airbench_tiny_int8.tflite"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid-looking PNG header declaring a huge 8-bit grey image, with a few compressed zero rows."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def one_bit_png(side: int) -> bytes:
    """A real, fully valid 1-bit PNG of side x side black pixels: a few KB that decode to side^2 x 3 bytes."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    idat = zlib.compress(row * side, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gif(image_bgr: np.ndarray) -> bytes:
    """GIF bytes through Pillow (OpenCV has no GIF writer)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_bgr[:, :, ::-1]).save(buf, format="GIF")
    return buf.getvalue()


def spy_imdecode(monkeypatch):
    """Record the size of every buffer cv2.imdecode is asked to decode."""
    seen: list[int] = []
    real = cv2.imdecode

    def spy(buf, flags):
        seen.append(len(buf))
        return real(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", spy)
    return seen


@pytest.mark.parametrize(
    "ext",
    [".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm", ".pgm", "GIF", "progressive"],
)
def test_probe_reads_the_dimensions_every_format_declares(ext):
    image = pattern(37, 23, seed=3)
    if ext == "progressive":
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
        data = data.tobytes()
    elif ext == "GIF":
        data = gif(image)
    else:
        ok, data = cv2.imencode(ext, image if ext != ".pgm" else image[:, :, 0])
        data = data.tobytes()
    header = probe(data)
    assert header is not None and (header.width, header.height) == (37, 23), header
    assert header.progressive == (ext == "progressive")
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (23, 37)


def test_probe_refuses_non_images_and_broken_headers():
    jpeg = cv2.imencode(".jpg", pattern(16, 16))[1].tobytes()
    png_cut = b"\x89PNG\r\n\x1a\n" + b"\x00" * 4
    broken = (b"", b"hello", b"\xff\xd8", jpeg[:20], png_cut, b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    for data in broken:
        assert probe(data) is None, data[:24]
    assert probe(bomb_png()) is not None and probe(bomb_png()).pixels == 900_000_000


def test_bombs_are_refused_before_decoding(monkeypatch):
    seen = spy_imdecode(monkeypatch)
    with pytest.raises(ImageRejected, match="30000x30000"):
        imagedecode.decode(bomb_png())
    with pytest.raises(ImageRejected, match="MiB to decode"):
        imagedecode.decode(one_bit_png(9000))  # 81 Mpx: under the pixel limit, over the memory limit
    assert seen == []


def test_large_jpeg_is_decoded_at_reduced_scale_with_the_same_top1(tmp_path):
    from edge_app.classifier import Classifier
    from edge_app.live import FrameStep

    photo = cv2.resize(cv2.imread(str(ROOT / "models" / "samples" / "cat.jpg")), (4000, 3000), cv2.INTER_CUBIC)
    data = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    small = imagedecode.decode(data)
    assert small.shape == (750, 1000, 3)  # 1/4 scale keeps the short side >= 512
    step = FrameStep(Classifier(TINY_MODEL), top_k=1)
    assert step(small).top[0][0] == step(photo).top[0][0] == "cat"
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    frame = sources.ImageSource(str(path))
    frame.open()
    assert np.array_equal(frame.read().image, small)  # `run` and uploads decode a photo identically


def test_cv2_errors_are_one_line_rejections(tmp_path, monkeypatch):
    def broken(buf, flags):
        raise cv2.error("OpenCV(5.0.0) loadsave.cpp: error: (-215:Assertion failed) in function 'imdecode'")

    path = tmp_path / "x.png"
    cv2.imwrite(str(path), pattern(8, 8))
    monkeypatch.setattr(cv2, "imdecode", broken)
    with pytest.raises(ImageRejected, match="corrupt PNG image"):
        imagedecode.load(path)
    assert sources.read_image(path) is None


def test_memory_budget_serialises_big_decodes_and_times_out():
    budget = MemoryBudget(100, wait=0.2)
    budget.acquire(80)
    with pytest.raises(DecodeBusy):
        budget.acquire(30)
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (budget.acquire(30), got.set()))
    budget.wait = 5
    waiter.start()
    assert not got.wait(0.1)
    budget.release(80)
    assert got.wait(5) and budget.used == 30
    waiter.join()
    shared = MemoryBudget(10 * 1024 * 1024)
    limits = DecodeLimits(10_000_000, 10 * 1024 * 1024, shared)
    assert imagedecode.decode(cv2.imencode(".png", pattern(20, 10))[1].tobytes(), limits).shape == (10, 20, 3)
    with pytest.raises(ImageRejected):
        imagedecode.decode(cv2.imencode(".png", pattern(64, 64))[1].tobytes()[:80], limits)
    assert shared.used == 0  # released after each decode, failed or not


def test_run_skips_a_bomb_in_a_folder_and_classifies_the_rest(tmp_path, monkeypatch, capsys):
    from edge_app.run import main as run_main

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a_cat.jpg", "z_dog.jpg"):
        (folder / name).write_bytes((ROOT / "models" / "samples" / name[2:]).read_bytes())
    (folder / "m_bomb.png").write_bytes(bomb_png())
    seen = spy_imdecode(monkeypatch)
    code = run_main(["--model", str(TINY_MODEL), "--source", str(folder), "--no-display"])
    out, err = capsys.readouterr()
    assert code == 0 and len(out.strip().splitlines()) == 2
    assert [line for line in err.splitlines() if "m_bomb.png" in line] == [
        f"warning: skipped {folder / 'm_bomb.png'}: image is 30000x30000 pixels, more than the limit of 200,000,000"
    ]
    assert len(seen) == 2  # the bomb was never handed to OpenCV


def test_datasets_skip_and_count_a_bomb(colour_folder, tmp_path, monkeypatch, capsys):
    (colour_folder / "train" / "red" / "bomb.png").write_bytes(bomb_png())
    seen = spy_imdecode(monkeypatch)
    classes = datasets.class_names(colour_folder / "train")
    data = datasets.load_folder(colour_folder / "train", classes, (8, 8), use_cache=False)
    assert len(data) == 36 and data.skipped == 1 and len(seen) == 36
    assert "skipped 1 corrupt, non-image or oversized file(s)" in capsys.readouterr().err


def test_bench_data_with_a_bomb_has_no_traceback(tmp_path, monkeypatch, capsys):
    from edge_app.classifier import Classifier

    labels = Classifier(TINY_MODEL).info.labels
    root = tmp_path / "data"
    for i, label in enumerate(labels[:2]):
        (root / label).mkdir(parents=True)
        cv2.imwrite(str(root / label / f"{i}.png"), pattern(32, 32, seed=i))
    (root / labels[0] / "bomb.png").write_bytes(bomb_png())

    def broken(buf, flags):  # what a real allocation failure inside OpenCV looks like
        if len(buf) == len(bomb_png()):
            raise cv2.error("OpenCV(5.0.0) alloc.cpp:73: error: (-4:Insufficient memory) Failed to allocate")
        return real(buf, flags)

    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", broken)
    monkeypatch.setattr(imagedecode, "check", lambda header, limits: (1, 0))  # as if the header check let it by
    data = datasets.load_folder(root, tuple(sorted(labels[:2])), (32, 32), use_cache=False)
    assert len(data) == 2 and data.skipped == 1
    assert "Traceback" not in capsys.readouterr().err


def test_opencv_pixel_limit_is_set_before_cv2_loads():
    code = (
        "from edge_app import preprocess; import os; cv2 = preprocess._cv2(); "
        "print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip() == str(1 << 28), out.stderr


def test_upload_decoder_refuses_the_one_bit_png_bomb():
    from edge_app.web.uploads import BadUpload, decode

    with pytest.raises(BadUpload, match="6000x6000 PNG image needs about"):
        decode(one_bit_png(6000))
    assert decode(one_bit_png(2000)).shape == (2000, 2000, 3)


def test_file_limits_refuse_huge_files(tmp_path, monkeypatch):
    path = tmp_path / "huge.jpg"
    path.write_bytes(cv2.imencode(".jpg", pattern(8, 8))[1].tobytes())
    monkeypatch.setattr(imagedecode, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImageRejected, match="larger than any image"):
        imagedecode.load(path)
    with pytest.raises(ImageRejected, match="cannot read it"):
        imagedecode.load(Path(tmp_path / "missing.jpg"))


def test_serve_fixes_the_glibc_mmap_threshold(monkeypatch, tmp_path):
    from edge_app import malloc
    from edge_app.web import serve

    assert malloc.return_large_blocks() is True  # glibc here, as on Raspberry Pi OS
    calls = []
    monkeypatch.setattr(malloc, "return_large_blocks", lambda: calls.append(1) or True)
    monkeypatch.setattr(serve, "make_app", lambda args: (_ for _ in ()).throw(RuntimeError("stop here")))
    with pytest.raises(RuntimeError, match="stop here"):
        serve._serve(None, None, {})
    assert calls == [1]
