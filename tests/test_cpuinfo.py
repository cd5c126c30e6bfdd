"""edgeclf.edge_app.cpuinfo: the int8-relevant features of x86 and Arm CPUs, read from /proc/cpuinfo samples.

The samples in tests/data/cpuinfo/ are written here in the shape real kernels print (field names, tabs, the
trailing Raspberry Pi lines, each CPU's real feature list): a Xeon with AVX-512 VNNI, a Zen 2 EPYC with AVX2
only, a Pi 4 (Cortex-A72) under 64-bit and 32-bit kernels, a Pi 5 (Cortex-A76)."""

from pathlib import Path

import pytest

from edgeclf.edge_app import cpuinfo

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it

SAMPLES = Path(__file__).parent / "data" / "cpuinfo"


def sample(name: str) -> str:
    return (SAMPLES / f"{name}.txt").read_text()


@pytest.mark.parametrize(
    ("name", "model", "board", "arch", "cores", "features", "dot"),
    [
        (
            "xeon_vnni",
            "Intel(R) Xeon(R) CPU @ 2.80GHz",
            None,
            "x86",
            2,
            ("avx2", "fma", "avx512f", "avx512_vnni"),
            True,
        ),
        ("epyc_avx2", "AMD EPYC 7B12", None, "x86", 2, ("avx2", "fma"), False),
        ("pi4_64bit", "Cortex-A72", "Raspberry Pi 4 Model B Rev 1.4", "arm", 4, ("asimd",), False),
        ("pi4_32bit", "Cortex-A72", "Raspberry Pi 4 Model B Rev 1.4", "arm", 4, ("neon",), False),
        ("pi5", "Cortex-A76", "Raspberry Pi 5 Model B Rev 1.0", "arm", 4, ("asimd", "asimddp"), True),
    ],
)
def test_parse_samples(name, model, board, arch, cores, features, dot):
    info = cpuinfo.parse(sample(name))
    assert (info.model, info.board, info.arch, info.cores) == (model, board, arch, cores)
    assert info.features == features
    assert info.int8_dot_product is dot


def test_frequency_from_cpufreq_first_then_cpu_mhz():
    assert cpuinfo.parse(sample("epyc_avx2")).max_mhz == pytest.approx(2249.998)
    assert cpuinfo.parse(sample("epyc_avx2"), "3300000\n").max_mhz == 3300.0  # kHz, as cpuinfo_max_freq says
    assert cpuinfo.parse(sample("pi5"), "2400000\n").max_mhz == 2400.0
    assert cpuinfo.parse(sample("pi4_64bit")).max_mhz is None  # Arm has no `cpu MHz` line
    assert cpuinfo.parse(sample("pi4_64bit"), "garbage").max_mhz is None


def test_summary_lines():
    assert (
        cpuinfo.parse(sample("xeon_vnni")).summary()
        == "Intel(R) Xeon(R) CPU @ 2.80GHz, 2 cores, 2800 MHz, avx2 fma avx512f avx512_vnni: int8 dot-product yes"
    )
    assert (
        cpuinfo.parse(sample("epyc_avx2")).summary()
        == "AMD EPYC 7B12, 2 cores, 2250 MHz, avx2 fma: int8 dot-product no"
    )
    assert (
        cpuinfo.parse(sample("pi4_64bit"), "1800000").summary()
        == "Raspberry Pi 4 Model B Rev 1.4, Cortex-A72, 4 cores, 1800 MHz, asimd: int8 dot-product no"
    )
    assert (
        cpuinfo.parse(sample("pi5"), "2400000").summary()
        == "Raspberry Pi 5 Model B Rev 1.0, Cortex-A76, 4 cores, 2400 MHz, asimd asimddp: int8 dot-product yes"
    )


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "\x00\x00garbage without colons\n", "processor\t: 0\nvendor_id\t: Unknown\n", ": : :\n"],
)
def test_empty_or_broken_text_is_unknown_not_an_error(text):
    info = cpuinfo.parse(text)
    assert info.int8_dot_product is None and info.features == () and info.arch is None
    assert info.summary().endswith("int8 dot-product unknown")


def test_cores_that_differ_count_only_the_common_features():
    """big.LITTLE (e.g. Cortex-A76 + Cortex-A55 on an RK3588 or Orion): a feature counts when all cores have it."""
    big = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\n"
    little = "processor\t: 1\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\nCPU part\t: 0xd05\n\n"
    info = cpuinfo.parse(big + little)
    assert info.model == "Cortex-A76 + Cortex-A55" and info.features == ("asimd", "asimddp") and info.cores == 2
    unknown_part = cpuinfo.parse("processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xfff\n")
    assert unknown_part.model == "Arm part 0xfff" and unknown_part.int8_dot_product is False


def test_describe_reads_the_files_and_survives_their_absence(tmp_path):
    (tmp_path / "cpuinfo").write_text(sample("pi5"))
    (tmp_path / "max_freq").write_text("2400000\n")
    info = cpuinfo.describe(tmp_path / "cpuinfo", tmp_path / "max_freq")
    assert info.model == "Cortex-A76" and info.max_mhz == 2400.0 and info.int8_dot_product is True
    missing = cpuinfo.describe(tmp_path / "absent", tmp_path / "absent")
    assert missing.int8_dot_product is None and missing.model  # platform's name stands in
    assert missing.to_dict() == {
        "cpu": missing.model,
        "max_mhz": None,
        "cpu_features": [],
        "int8_dot_product": None,
    }


def test_throttled_without_vcgencmd_is_none(monkeypatch):
    monkeypatch.setattr(cpuinfo.shutil, "which", lambda name: None)
    assert cpuinfo.throttled() is None


# --- the benchmark report's device section (edgeclf.benchmarks.device, edgeclf.benchmarks.report) --------------

RESULTS = Path(__file__).parent.parent / "benchmarks" / "results"


def test_benchmark_device_section_records_the_cpu_features(monkeypatch):
    from edgeclf.benchmarks import device

    monkeypatch.setattr(cpuinfo, "CPUINFO", SAMPLES / "pi5.txt")  # describe()'s default, read at call time
    monkeypatch.setattr(cpuinfo, "CPUFREQ_MAX", SAMPLES / "absent")
    d = device.describe()
    assert d["cpu"] == device.cpu_name() == "Cortex-A76"
    assert (d["max_mhz"], d["cpu_features"], d["int8_dot_product"]) == (None, ["asimd", "asimddp"], True)
    assert d["cores"] >= 1 and "pi_model" in d


def _report(device: dict) -> dict:
    return {"device": device, "mode": "full", "thermal": {"before": {}, "after": {}}, "rows": [], "reference": {}}


def test_report_device_line_shows_features_and_the_verdict():
    from edgeclf.benchmarks.report import to_markdown

    device = {"machine": "aarch64", "cores": 4, "os": "Linux", "python": "3.11.2", "numpy": "1.26.4"}
    pi4 = cpuinfo.parse(sample("pi4_64bit"), "1800000")
    md = to_markdown(_report({**device, "pi_model": pi4.board, **pi4.to_dict()}))
    assert "- CPU: 1800 MHz; features: asimd; int8 dot-product: no (int8 gains come only from smaller data" in md
    pi5 = cpuinfo.parse(sample("pi5"))
    md = to_markdown(_report({**device, "pi_model": pi5.board, **pi5.to_dict()}))
    assert "- CPU: max MHz not readable; features: asimd asimddp; int8 dot-product: yes (VNNI on x86, SDOT" in md
    empty = cpuinfo.parse("")
    md = to_markdown(_report({**device, "pi_model": None, **empty.to_dict(), "cpu": "mystery"}))
    assert "features: none of the int8-relevant ones; int8 dot-product: unknown" in md


def test_an_earlier_report_says_its_cpu_features_were_not_recorded():
    import json

    from edgeclf.benchmarks.report import to_markdown

    old = json.loads((RESULTS / "x86_64-2core-2026-11-27" / "report.json").read_text())
    assert "cpu_features" not in old["device"]  # measured on the Xeon before the features were recorded
    md = to_markdown(old)
    assert "- CPU: max MHz, features and int8 dot-product not recorded" in md
    assert "Intel(R) Xeon(R) Processor @ 2.50GHz, 2 cores" in md
