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

from edgeclf.benchmarks.web_memory import grey_png, one_bit_png
from edgeclf.edge_app import datasets, imagedecode, sources
from edgeclf.edge_app.imagedecode import DecodeBusy, DecodeLimits, ImageRejected, MemoryBudget, decode, reads_gif
from edgeclf.edge_app.imageheader import probe
from tests.conftest import ROOT
from tests.fakes import pattern

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it

TINY_MODEL = ROOT / "models" / "airbench_tiny_int8.tflite"


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid-looking PNG header declaring a huge 8-bit grey image, with a few compressed zero rows."""
    return grey_png(width, height, 8, b"\x00" * (width + 1) * 4)


def gif(image_bgr: np.ndarray) -> bytes:
    """GIF bytes through Pillow (OpenCV has no GIF writer)."""
    Image = pytest.importorskip("PIL.Image", reason="writes its GIF with Pillow (the dev extra)")

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
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if ext == "GIF" and not reads_gif():
        with pytest.raises(ImageRejected, match="no GIF reader"):  # opencv-python's 4.x wheels
            decode(data)
        return
    assert decoded.shape[:2] == (23, 37)


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
    from edgeclf.edge_app.classifier import Classifier
    from edgeclf.edge_app.live import FrameStep

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
    from edgeclf.edge_app.run import main as run_main

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
    from edgeclf.edge_app.classifier import Classifier

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
        "from edgeclf.edge_app import preprocess; import os; cv2 = preprocess._cv2(); "
        "print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip() == str(1 << 28), out.stderr


def test_upload_decoder_refuses_the_one_bit_png_bomb():
    from edgeclf.edge_app.web.uploads import BadUpload, decoded

    with pytest.raises(BadUpload, match="6000x6000 PNG image needs about"), decoded(one_bit_png(6000)):
        pass
    with decoded(one_bit_png(2000)) as image:
        assert image.shape == (2000, 2000, 3)


def test_file_limits_refuse_huge_files(tmp_path, monkeypatch):
    path = tmp_path / "huge.jpg"
    path.write_bytes(cv2.imencode(".jpg", pattern(8, 8))[1].tobytes())
    monkeypatch.setattr(imagedecode, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImageRejected, match="larger than any image"):
        imagedecode.load(path)
    with pytest.raises(ImageRejected, match="cannot read it"):
        imagedecode.load(Path(tmp_path / "missing.jpg"))


def test_serve_fixes_the_glibc_mmap_threshold(monkeypatch, tmp_path):
    from edgeclf.edge_app import malloc
    from edgeclf.edge_app.web import serve

    assert malloc.return_large_blocks() is True  # glibc here, as on Raspberry Pi OS
    calls = []
    monkeypatch.setattr(malloc, "return_large_blocks", lambda: calls.append(1) or True)
    monkeypatch.setattr(serve, "make_app", lambda *args: (_ for _ in ()).throw(RuntimeError("stop here")))
    with pytest.raises(RuntimeError, match="stop here"):
        serve._serve(None, serve.ServeConfig(model=tmp_path / "m.tflite"), {})
    assert calls == [1]


# --- headers that two readers could understand differently (review of issue 12) -----------------------


def segment(marker: int, body: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + (2 + len(body)).to_bytes(2, "big") + body


def test_jpeg_markers_are_found_as_libjpeg_finds_them():
    """FF 00 before the first segment and a fake 16x16 frame inside a comment: libjpeg skips both and
    reads the real frame, so the probe must too (it used to report 16x16 for a 15000x15000 image)."""
    real = cv2.imencode(".jpg", pattern(640, 480))[1].tobytes()
    fake_sof = b"\xff\xc0\x00\x0b\x08\x00\x10\x00\x10\x01\x01\x11\x00"
    comment = segment(0xFE, b"\x00\x00" + fake_sof)
    crafted = b"\xff\xd8" + b"\xff\x00" + (8).to_bytes(2, "big") + comment + real[2:]
    header = probe(crafted)
    assert header is not None and (header.width, header.height) == (640, 480), header
    assert cv2.imdecode(np.frombuffer(crafted, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (480, 640)


def test_jpeg_with_a_marker_libjpeg_refuses_is_not_an_image():
    real = cv2.imencode(".jpg", pattern(64, 48))[1].tobytes()
    assert probe(real[:2] + b"\xff\xf0\x00\x04ab" + real[2:]) is None  # JPG0: unknown to libjpeg before a scan
    assert probe(real[:2] + segment(0xC0, b"\x08\x00\x10\x00\x10\x01\x01\x11\x00") + real[2:]) is None  # two frames


def one_scan_per_component(width: int, height: int) -> bytes:
    """A baseline (SOF0) JPEG with three components sent in three scans: libjpeg buffers every coefficient."""
    frame = b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    one = bytes([1] + [0] * 15) + b"\x00"
    out = b"\xff\xd8" + segment(0xDB, b"\x00" + b"\x01" * 64) + segment(0xC0, frame)
    out += segment(0xC4, b"\x00" + one + b"\x10" + one)
    nbits = 2 * -(-width // 8) * -(-height // 8)
    data = b"\x00" * (nbits // 8) + (bytes([(1 << (8 - nbits % 8)) - 1]) if nbits % 8 else b"")
    for component in (1, 2, 3):
        out += segment(0xDA, bytes([1, component, 0x00, 0, 63, 0])) + data
    return out + b"\xff\xd9"


def test_non_interleaved_baseline_jpeg_counts_its_coefficient_buffer():
    header = probe(one_scan_per_component(800, 600))
    assert header is not None and not header.progressive
    assert header.coefficient_bytes == 3 * 100 * 75 * 128  # three full-size planes of 8x8 blocks, 2 bytes a sample
    big = probe(one_scan_per_component(6000, 6000))
    with pytest.raises(ImageRejected, match="MiB to decode"):  # 3.7 MB at 1/8 scale, but 220 MB of coefficients
        imagedecode.check(big, DecodeLimits(40_000_000, 64 * 1024 * 1024, MemoryBudget(64 * 1024 * 1024)))


def test_jpeg_with_too_many_scans_is_refused():
    """Each progressive scan is a pass over every block: thousands of tiny scans are a CPU bomb."""
    progressive = cv2.imencode(".jpg", pattern(64, 48), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert probe(progressive) is not None
    sos = progressive.index(b"\xff\xda", progressive.index(b"\xff\xda") + 2)  # the second scan: an AC refinement
    end = progressive.index(b"\xff", sos + 4 + int.from_bytes(progressive[sos + 2 : sos + 4], "big"))
    while progressive[end + 1] == 0 or 0xD0 <= progressive[end + 1] <= 0xD7:
        end = progressive.index(b"\xff", end + 2)
    bomb = progressive[:end] + progressive[sos:end] * 200 + progressive[end:]
    assert probe(bomb) is None


def tiff(entries: list[tuple[int, int, int, int]], strip: bytes) -> bytes:
    """A little-endian one-strip TIFF with these (tag, type, count, value) entries; tag 273 points at the strip."""
    start = 8 + 2 + 12 * len(entries) + 4
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, kind, n, value in entries:
        value = start if tag == 273 else value
        out += struct.pack("<HHIHH", tag, kind, n, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind, n, value)
    return out + b"\x00" * 4 + strip


def test_tiff_width_given_twice_is_refused_and_large_tiffs_are_read():
    strip = zlib.compress(b"\x00" * 64 * 64)
    rest = [(257, 4, 1, 64), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1), (273, 4, 1, 0), (277, 3, 1, 1)]
    rest += [(278, 4, 1, 64), (279, 4, 1, len(strip))]
    good = tiff([(256, 4, 1, 64), *rest], strip)
    assert probe(good) is not None and probe(good).pixels == 64 * 64
    assert imagedecode.decode(good).shape == (64, 64, 3)
    assert probe(tiff([(256, 4, 1, 64), (256, 4, 1, 1), *rest], strip)) is None  # libtiff takes the first
    assert probe(tiff([(256, 4, 2, 64), *rest], strip)) is None  # a width that is not one value
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    big = cv2.imencode(".tiff", noise)[1].tobytes()  # libtiff writes its directory at the end
    assert len(big) > 65536 and imagedecode.decode(big).shape == (300, 300, 3)


def test_jpeg_with_large_metadata_is_read():
    real = cv2.imencode(".jpg", pattern(64, 48))[1].tobytes()
    exif_like = b"".join(segment(0xE1, b"Exif\x00\x00" + b"\x00" * 60000) for _ in range(3))  # 180 KB of APP1
    assert imagedecode.decode(real[:2] + exif_like + real[2:]).shape == (48, 64, 3)


@pytest.mark.parametrize("header", [b"P4 64#48\n", b"P4 64 48\n", b"P4\n# a comment 9999\n64 48\n", b"P4 64x48\n"])
def test_pnm_numbers_end_where_opencv_ends_them(header):
    """OpenCV consumes the byte after a number, so in 'P4 64#48' the '#' starts no comment and the height is
    48; a reader that took '#48' for a comment read the next number instead (12000x1 for a 12000x12000 bomb)."""
    data = header + b"\x00" * (8 * 48) + b"\n9999\n"
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    found = probe(data)
    assert found is not None and decoded is not None and (found.height, found.width) == decoded.shape[:2] == (48, 64)


def test_a_decode_larger_than_its_header_is_refused(monkeypatch):
    from edgeclf.edge_app import imageheader

    data = cv2.imencode(".png", pattern(64, 48))[1].tobytes()
    monkeypatch.setattr(imagedecode, "probe", lambda buf: imageheader.ImageHeader("PNG", 16, 16))
    with pytest.raises(ImageRejected, match="decoded to 64x48, more than the 16x16 its header declares"):
        imagedecode.decode(data)


def test_load_refuses_a_non_image_or_a_png_bomb_before_reading_on(tmp_path, monkeypatch):
    from edgeclf.edge_app import imageheader

    monkeypatch.setattr(imagedecode, "decode", lambda *a, **k: pytest.fail("read on and decoded"))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all" * 1000)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png() + b"\x00" * imageheader.HEAD_BYTES * 4)
    with pytest.raises(ImageRejected, match="not an image"):
        imagedecode.load(junk)
    with pytest.raises(ImageRejected, match="30000x30000"):
        imagedecode.load(bomb)


def test_a_cut_header_is_corrupt_not_a_non_image(tmp_path):
    jpeg = cv2.imencode(".jpg", pattern(64, 48))[1].tobytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg[:120])  # before the first scan
    with pytest.raises(ImageRejected, match="^corrupt JPEG image: its header is cut short or malformed$"):
        imagedecode.load(path)
    with pytest.raises(ImageRejected, match="^not an image"):
        imagedecode.decode(b"hello, I am text")


@pytest.mark.parametrize("chunk", ["IHDR", "IDAT", "IEND"])
def test_a_png_chunk_longer_than_the_file_never_reaches_the_decoder(chunk, monkeypatch):
    """OpenCV 4.11's PNG reader allocates each chunk's declared length before reading it: a 1.4 KB upload
    whose IHDR length field says 3.2 GB made the server allocate 2.9 GB (found by the upload fuzz test)."""
    import struct

    from edgeclf.benchmarks.web_memory import grey_png

    data = bytearray(grey_png(16, 16, 8, b"\x00" * (16 * 17)))
    at = {"IHDR": 8, "IDAT": 33, "IEND": len(data) - 12}[chunk]
    assert data[at + 4 : at + 8] == chunk.encode()
    data[at : at + 4] = struct.pack(">I", 0xC300D10D)
    seen = spy_imdecode(monkeypatch)
    with pytest.raises(ImageRejected, match=f"corrupt PNG image: its {chunk} chunk declares 3,271,610,637 bytes"):
        decode(bytes(data))
    assert seen == []


def test_valid_pngs_pass_the_chunk_walk():
    from edgeclf.benchmarks.web_memory import grey_png

    ok = grey_png(16, 16, 8, b"\x00" * (16 * 17)) + b"trailing bytes after IEND are ignored"
    assert decode(ok).shape == (16, 16, 3)
    assert decode(cv2.imencode(".png", pattern(300, 200))[1].tobytes()).shape == (200, 300, 3)
