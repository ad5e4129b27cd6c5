"""The bench report: schema, stage accounting, chart, ratios, and the CLI on a tiny model.

No test here asserts a speed; only that the numbers are measured, consistent and reported.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.conftest import DEFAULT_TINY, cli
from vlm_export.report.bench import (
    SCHEMA_VERSION,
    STAGES,
    BenchSettings,
    attach_ratios,
    build_prompt,
    run_bench,
    summarize,
)
from vlm_export.report.render import markdown

# A request's stages are disjoint parts of its end-to-end time; what they leave out ("other") is loop
# glue. Stated margin: glue stays under half the request plus 20 ms (tiny models make glue look large).
GLUE_MARGIN = (0.5, 0.020)


def test_summarize_accounts_for_every_second():
    runs = [
        {"preprocess": 0.1, "prefill": 0.2, "decode": 0.5, "total": 1.0, "ttft": 0.3, "prompt_tokens": 9},
        {"preprocess": 0.2, "prefill": 0.2, "decode": 0.4, "total": 0.9, "ttft": 0.4, "prompt_tokens": 9},
        {"preprocess": 0.3, "prefill": 0.3, "decode": 0.6, "total": 1.3, "ttft": 0.6, "prompt_tokens": 9},
    ]
    out = summarize({"load": 1.5, "peak_rss_mb": 100.0, "runs": runs})
    assert out["stages"]["preprocess"]["median"] == pytest.approx(0.2)
    assert out["stages"]["preprocess"]["p90"] == pytest.approx(0.28)
    assert out["stages"]["other"]["median"] == pytest.approx(0.1)
    for run in runs:
        assert sum(run.get(s, 0.0) for s in STAGES) + run["other"] == pytest.approx(run["total"])
    assert out["metrics"]["ttft"]["median"] == pytest.approx(0.4)


def test_prompt_tokens_lengthens_prompt(exported):
    tokenizer = exported(DEFAULT_TINY) / "tokenizer.json"
    from tokenizers import Tokenizer

    prompt = build_prompt(tokenizer, 40)
    assert len(Tokenizer.from_file(str(tokenizer)).encode(prompt, add_special_tokens=False).ids) == 40
    assert build_prompt(tokenizer, None) == "Describe the image."


@pytest.fixture(scope="module")
def report(exported, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    settings = BenchSettings(threads=1, image_size=(96, 64), new_tokens=6, runs=2, warmup=1)
    folder = exported(DEFAULT_TINY)
    return run_bench([folder, f"{folder}@openvino"], settings, out), out


def test_report_schema_and_files(report):
    data, out = report
    assert data["schema_version"] == SCHEMA_VERSION
    assert json.loads((out / "report.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert {"cpu", "os", "python", "libraries"} <= set(data["environment"])
    assert data["environment"]["cpu"]["logical_cores"] >= 1
    assert data["bandwidth"]["bytes_per_s"] > 0
    assert len(data["configurations"]) == 2
    for config in data["configurations"]:
        assert "error" not in config and "warning" not in config  # no torch in the runtime worker
        for stage in ("preprocess", "vision_encoder", "projector", "embed", "prefill", "decode"):
            assert config["stages"][stage]["median"] > 0
            assert config["stages"][stage]["p90"] >= config["stages"][stage]["median"]
        assert config["metrics"]["decode_tokens_per_s"]["median"] > 0
        assert config["peak_rss_mb"] > 10
        assert set(config["graph_mb"]) == {"vision_encoder", "projector", "embed_tokens", "decoder"}
        assert config["roofline"]["fraction"] > 0
        assert len(config["runs_raw"]) == 2
    assert data["configurations"][0]["ratios"]["decode_speedup"] == pytest.approx(1.0)
    assert [c["backend"]["backend"] for c in data["configurations"]] == ["onnxruntime", "openvino"]


def test_peer_ratios_pair_configurations_by_decoder_precision():
    def config(name, kind, ttft, tok_s, rss, **extra):
        metrics = {"ttft": {"median": ttft}, "decode_tokens_per_s": {"median": tok_s}}
        return {"name": name, "kind": kind, "metrics": metrics, "peak_rss_mb": rss, **extra}

    configs = [
        config("torch", "pytorch", 2.0, 10.0, 1000),
        config("peer fp32", "optimum-intel", 1.0, 40.0, 2000, backend={"weights": "fp32"}),
        config("peer int8", "optimum-intel", 0.8, 60.0, 1200, backend={"weights": "int8"}),
        config("ours fp32", "vlm-export", 0.5, 60.0, 1000, decoder_precision="fp32"),
        config("ours int8", "vlm-export", 0.4, 120.0, 600, decoder_precision="int8"),
        config("ours int4", "vlm-export", 0.4, 150.0, 500, decoder_precision="int4+int8"),
        {"name": "broken", "kind": "vlm-export", "error": "boom"},
    ]
    assert attach_ratios(configs) == "torch"
    assert configs[3]["ratios_vs_peer"]["peer"] == "peer fp32"
    assert configs[3]["ratios_vs_peer"]["decode_speedup"] == pytest.approx(1.5)
    assert configs[4]["ratios_vs_peer"]["ttft_speedup"] == pytest.approx(2.0)
    assert configs[4]["ratios_vs_peer"]["peak_rss_ratio"] == pytest.approx(0.5)
    assert "ratios_vs_peer" not in configs[5]  # no int4 peer in this run
    assert configs[4]["ratios"]["decode_speedup"] == pytest.approx(12.0)


def test_stages_sum_to_end_to_end(report):
    data, _ = report
    share, floor = GLUE_MARGIN
    for config in data["configurations"]:
        for run in config["runs_raw"]:
            staged = sum(run.get(s, 0.0) for s in STAGES)
            assert staged <= run["total"] + 1e-9
            assert run["total"] - staged <= share * run["total"] + floor, run


def test_chart_and_markdown(report):
    data, out = report
    with Image.open(out / "chart.png") as chart:
        assert chart.format == "PNG" and chart.width > 400
    text = (out / "report.md").read_text()
    assert text == markdown(data)
    assert "decode tok/s" in text and "roofline" in text


@pytest.mark.slow
def test_cli_bench_with_pytorch_baseline(exported, tiny_checkpoint, tmp_path):
    result = cli(
        "bench",
        str(exported(DEFAULT_TINY)),
        "--threads", "1", "--runs", "1", "--warmup", "0", "--new-tokens", "4", "--image-size", "80x60",
        "--compare-pytorch", str(tiny_checkpoint(DEFAULT_TINY)),
        "--out", str(tmp_path), "--format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    names = [c["name"] for c in data["configurations"]]
    assert data["baseline"] == names[0] == "pytorch eager fp32"
    torch_cfg, ours = data["configurations"]
    assert torch_cfg["metrics"]["ttft"]["median"] > 0
    assert ours["ratios"]["decode_speedup"] > 0
    assert (tmp_path / "chart.png").is_file()


def test_cli_bench_errors(tmp_path):
    result = cli("bench", str(tmp_path), "--out", str(tmp_path / "r"))
    assert result.returncode != 0 and "no manifest.json" in result.stderr
    result = cli("bench", str(tmp_path), "--image-size", "big")
    assert result.returncode != 0 and "WIDTHxHEIGHT" in result.stderr


def test_environment_names_arm_cores_and_isa(tmp_path):
    from vlm_export.report.environment import cpu_info

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp\nCPU implementer\t: 0x41\n"
        "CPU part\t: 0xd0c\n"
    )
    info = cpu_info(cpuinfo)
    assert info["model"] == "Arm Neoverse-N1"
    assert info["isa"] == ["NEON", "NEON-DOTPROD"]
    cpuinfo.write_text("model name\t: Some CPU\nflags\t\t: fpu avx2 avx512f avx512_vnni amx_tile\n")
    assert cpu_info(cpuinfo)["isa"] == ["AVX2", "AVX-512", "AVX512-VNNI", "AMX"]


def test_recommendation_picks_the_faster_backend_per_precision():
    from vlm_export.report.bench import recommend

    def config(name, backend, precision, tok_s, ttft, kind="vlm-export"):
        return {
            "name": name,
            "kind": kind,
            "decoder_precision": precision,
            "backend": {"backend": backend, "weights": precision},
            "metrics": {"decode_tokens_per_s": {"median": tok_s}, "ttft": {"median": ttft}},
        }

    configs = [
        config("a", "onnxruntime", "fp32", 40.0, 2.0),
        config("b", "openvino", "fp32", 20.0, 1.5),
        config("c", "onnxruntime", "int8", 90.0, 1.0),
        config("d", "openvino", "int8", 30.0, 1.2),
        config("peer", "optimum-intel", "int8", 200.0, 0.1, kind="optimum-intel"),  # not one of ours
        config("e", "onnxruntime", "int4", 99.0, 1.0),  # one backend only: nothing to choose
    ]
    picked = recommend(configs)
    assert picked["per_precision"] == {"fp32": {"decode": "a", "ttft": "b"}, "int8": {"decode": "c", "ttft": "c"}}
    assert picked["backend"] == "onnxruntime"  # two decode wins against none
    assert recommend(configs[:1]) is None
    split = [config("a", "onnxruntime", "fp32", 40.0, 2.0), config("b", "openvino", "fp32", 30.0, 1.0)]
    split += [config("c", "onnxruntime", "int8", 50.0, 1.0), config("d", "openvino", "int8", 60.0, 2.0)]
    assert recommend(split)["backend"] is None  # one decode win and one TTFT win each: a tie
