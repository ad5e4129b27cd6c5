"""Bench report outputs: a rich table, ``report.json``, ``report.md`` and ``chart.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Stages grouped for the chart's stacked bars (the table keeps them apart).
CHART_GROUPS = {
    "preprocess": ("preprocess", "tokenize"),
    "vision + projector": ("vision_encoder", "projector"),
    "embed + merge": ("embed", "merge"),
    "prefill": ("prefill",),
    "decode": ("decode", "sample", "detokenize", "other"),
}
COLUMNS = (
    ("load s", lambda c: _fmt(c.get("load_s"), 2)),
    ("vision s", lambda c: _fmt(_stage(c, "vision_encoder"), 3)),
    ("prefill s", lambda c: _fmt(_stage(c, "prefill"), 3)),
    ("TTFT s", lambda c: _fmt(_metric(c, "ttft"), 3)),
    ("TTFT p90", lambda c: _fmt(_metric(c, "ttft", "p90"), 3)),
    ("decode tok/s", lambda c: _fmt(_metric(c, "decode_tokens_per_s"), 1)),
    ("end-to-end s", lambda c: _fmt(_metric(c, "total"), 2)),
    ("peak RSS MiB", lambda c: _fmt(c.get("peak_rss_mb"), 0)),
    ("graphs MB", lambda c: _fmt(sum(c["graph_mb"].values()), 1) if c.get("graph_mb") else "-"),
    ("roofline", lambda c: f"{c['roofline']['fraction']:.0%}" if c.get("roofline") else "-"),
    ("TTFT x", lambda c: _fmt(c.get("ratios", {}).get("ttft_speedup"), 2)),
    ("decode x", lambda c: _fmt(c.get("ratios", {}).get("decode_speedup"), 2)),
    ("RSS x", lambda c: _fmt(c.get("ratios", {}).get("peak_rss_ratio"), 2)),
    ("TTFT x peer", lambda c: _fmt(c.get("ratios_vs_peer", {}).get("ttft_speedup"), 2)),
    ("decode x peer", lambda c: _fmt(c.get("ratios_vs_peer", {}).get("decode_speedup"), 2)),
    ("RSS x peer", lambda c: _fmt(c.get("ratios_vs_peer", {}).get("peak_rss_ratio"), 2)),
)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _stage(config: dict, stage: str, stat: str = "median") -> float | None:
    return config.get("stages", {}).get(stage, {}).get(stat)


def _metric(config: dict, metric: str, stat: str = "median") -> float | None:
    return config.get("metrics", {}).get(metric, {}).get(stat)


def rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    for config in report["configurations"]:
        if "error" in config:
            out.append([config["name"], f"failed: {config['error']}"] + [""] * (len(COLUMNS) - 1))
        else:
            out.append([config["name"]] + [render(config) for _, render in COLUMNS])
    return out


def rich_table(report: dict[str, Any]):
    """Metrics down, configurations across: a terminal is narrower than a report."""
    from rich.table import Table

    settings = report["settings"]
    table = Table(
        title=f"vlm-export bench: {settings['threads']} threads, {settings['new_tokens']} forced new tokens, "
        f"medians of {settings['runs']} runs; x = ratio vs {report['baseline']}"
    )
    table.add_column("metric")
    body = rows(report)
    for row in body:
        table.add_column(row[0], justify="right", overflow="fold")
    for i, (name, _) in enumerate(COLUMNS, start=1):
        table.add_row(name, *(row[i] for row in body))
    return table


def markdown(report: dict[str, Any]) -> str:
    env, settings, bw = report["environment"], report["settings"], report["bandwidth"]
    lines = [
        "# vlm-export bench",
        "",
        f"- created {report['created']}; schema {report['schema_version']}",
        f"- CPU: {env['cpu']['model']} ({env['cpu']['architecture']}, {env['cpu']['logical_cores']} logical cores,"
        f" ISA {', '.join(env['cpu']['isa']) or 'none detected'}); {env['os']}; Python {env['python']}",
        f"- libraries: {', '.join(f'{k} {v}' for k, v in env['libraries'].items())}",
        f"- {settings['threads']} threads; image {settings['image_size'][0]}x{settings['image_size'][1]}; "
        f"prompt {settings['prompt']!r}; {settings['new_tokens']} forced new tokens; "
        f"{settings['warmup']} warm-up + {settings['runs']} measured runs; each configuration in a fresh process",
        f"- memory bandwidth ({bw['method']}, {bw['threads']} threads): {bw['gb_per_s']} GB/s; roofline = "
        "decoder bytes per token x tokens/s / bandwidth",
        f"- ratios against: {report['baseline']} (x > 1 is faster; RSS x < 1 is smaller); 'x peer' columns:"
        " against optimum-intel (OpenVINO, f32 inference hint) at the same decoder weight precision",
        *_recommendation(report.get("recommended")),
        "",
        "| configuration | " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    lines += ["", "## Stages (median seconds per request; p90 in brackets)", ""]
    stages = [s for s in _stage_names(report)]
    lines.append("| configuration | " + " | ".join(stages) + " |")
    lines.append("|---|" + "---:|" * len(stages))
    for config in report["configurations"]:
        if "error" in config:
            continue
        cells = []
        for stage in stages:
            median, p90 = _stage(config, stage), _stage(config, stage, "p90")
            cells.append("-" if median is None else f"{median:.4f} ({p90:.4f})")
        lines.append(f"| {config['name']} | " + " | ".join(cells) + " |")
    sized = [c for c in report["configurations"] if c.get("graph_mb")]
    if sized:
        lines += ["", "## Graph files (MB, precision)", ""]
        for config in sized:
            parts = [f"{role} {mb:.1f} ({config['precision'][role]})" for role, mb in config["graph_mb"].items()]
            lines.append(f"- {config['name']}: " + ", ".join(parts))
    return "\n".join(lines) + "\n"


def _recommendation(recommended: dict[str, Any] | None) -> list[str]:
    if not recommended:
        return []
    detail = "; ".join(
        f"{precision}: decode {picks['decode']}, TTFT {picks['ttft']}"
        for precision, picks in recommended["per_precision"].items()
    )
    overall = f"**{recommended['backend']}**" if recommended["backend"] else "no single backend (a tie)"
    return [f"- recommended backend on this CPU: {overall} ({detail})"]


def _stage_names(report: dict[str, Any]) -> list[str]:
    from vlm_export.report.bench import STAGES

    present = {stage for config in report["configurations"] for stage in config.get("stages", {})}
    return [stage for stage in (*STAGES, "other") if stage in present]


def chart(report: dict[str, Any], path: Path) -> Path | None:
    """Stacked per-stage bars and decode tokens/s per configuration; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    configs = [c for c in report["configurations"] if "error" not in c]
    names = [c["name"] for c in configs]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, 1.2 + 0.7 * len(configs)), gridspec_kw={"width_ratios": [3, 1]}
    )
    starts = [0.0] * len(configs)
    for group, stages in CHART_GROUPS.items():
        widths = [sum(_stage(c, s) or 0.0 for s in stages) for c in configs]
        if group == "preprocess" or any(widths):
            left.barh(names, widths, left=starts, label=group)
            starts = [a + b for a, b in zip(starts, widths)]
    left.set_xlabel("seconds per request (median)")
    left.invert_yaxis()
    left.legend(loc="lower right", fontsize="small")
    speeds = [_metric(c, "decode_tokens_per_s") or 0.0 for c in configs]
    right.barh(names, speeds, color="tab:green")
    right.set_yticks(range(len(names)), [""] * len(names))
    right.invert_yaxis()
    right.set_xlabel("decode tokens/s (median)")
    fig.suptitle(f"vlm-export bench ({report['settings']['threads']} threads)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(report: dict[str, Any], out_dir: Path) -> dict[str, Path | None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path = out_dir / "report.md"
    md_path.write_text(markdown(report))
    chart_path = chart(report, out_dir / "chart.png")
    report.setdefault("files", {}).update(
        {"json": str(json_path), "markdown": str(md_path), "chart": str(chart_path) if chart_path else None}
    )
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    return {"json": json_path, "markdown": md_path, "chart": chart_path}
