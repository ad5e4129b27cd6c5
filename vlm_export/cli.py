"""The ``vlm-export`` command line: a thin layer over the Python API.

    convert   checkpoint -> exported folder (ONNX graphs + manifest), with a parity gate
    run       exported folder + images + prompt -> text (streamed), or one JSON object
    inspect   what an exported folder holds
    quantize  an fp32 export -> a quantized one, with an accuracy report or an automatic recipe search
    bench     per-stage latency, tokens/s and memory reports
    eval      accuracy of an export of the shipped model on held-out questions
    demo      the shipped model, converted and asked three questions

Errors the user can act on print one line with the fix and exit non-zero; torch is imported only by
``convert``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vlm_export.errors import VLMExportError

app = typer.Typer(
    name="vlm-export",
    help="Split vision-language models into ONNX graphs and run them fast on CPUs, without torch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

FolderArg = Annotated[Path, typer.Argument(help="An exported folder (the OUT of `vlm-export convert`).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text and tables.")]
QuantOpt = typer.Option(
    "--quant",
    help="Precision per graph: a preset (fp32, fp16, int8, int4, int4-all) or e.g. "
    "decoder=int4:block=32,vision=int8,projector=fp32,embed=int4.",
)
BackendOpt = Annotated[str, typer.Option("--backend", help="Runtime backend: onnxruntime or openvino.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="Intra-op threads (default: all cores).")]


def _parse_quant(text: str, target_cpu: str | None = None):
    from vlm_export.quantize.spec import parse_quant

    return parse_quant(text, target_cpu)


def _fail(error: VLMExportError) -> None:
    err.print(
        f"[bold red]error:[/] {error.message}" + (f" [dim]({error.fix})[/]" if error.fix else ""),
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(error.exit_code)


@app.command()
def convert(
    model: Annotated[str, typer.Argument(help="A checkpoint folder (save_pretrained layout) or a hub id.")],
    output: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write; created atomically.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists and is not empty.")] = False,
    no_validate: Annotated[
        bool, typer.Option("--no-validate", help="Skip the parity gate against transformers.")
    ] = False,
    opset: Annotated[
        int, typer.Option("--opset", min=18, max=23, help="ONNX opset: 23 is fastest; 18 for older runtimes.")
    ] = 23,
    quant: Annotated[str | None, QuantOpt] = None,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            help="onnxruntime (default), or openvino: also write OpenVINO IR; --quant then compresses the IR "
            "with NNCF and the ONNX graphs stay fp32.",
        ),
    ] = "onnxruntime",
    as_json: JsonOpt = False,
) -> None:
    """Export a Hugging Face VLM to ONNX graphs (vision, projector, embeddings, KV-cache decoder).

    With --quant, the fp32 export passes the parity gate first, then each graph is compressed.

    Example: vlm-export convert ./llava-checkpoint ./llava-int4 --quant int4
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
        ) as progress:
            task = progress.add_task("starting", total=None)

            def step(message: str) -> None:
                progress.update(task, description=message)
                progress.console.print(f"[dim]·[/] {message}", highlight=False)

            from vlm_export.export.convert import convert as run_convert

            if target not in ("onnxruntime", "openvino"):
                raise VLMExportError(f"unknown --target {target!r}", fix="use onnxruntime or openvino")
            spec = _parse_quant(quant) if quant else None
            onnx_spec = spec if target == "onnxruntime" else None
            if target == "openvino":
                from vlm_export.export.openvino_ir import check_openvino_spec

                check_openvino_spec(spec)
            result = run_convert(
                model,
                output,
                overwrite=overwrite,
                validate=not no_validate,
                opset=opset,
                progress=step,
                quant=onnx_spec,
            )
            if target == "openvino":
                from vlm_export.export.openvino_ir import to_openvino

                result.manifest = to_openvino(result.folder, quant=spec, progress=step)
    except VLMExportError as error:
        report = getattr(error, "report", None)
        if report is not None:
            _print_validation(report.as_dict(), err)
        _fail(error)
    if as_json:
        print(json.dumps({"folder": str(result.folder), "validation": result.manifest.validation}, indent=2))
        return
    if result.manifest.validation:
        _print_validation(result.manifest.validation, out)
    out.print(f"[green]exported[/] {result.manifest.family} to {result.folder}")


def _print_validation(report: dict, console: Console) -> None:
    table = Table(title="Parity with transformers (fp32)")
    for col in ("graph", "max abs diff", "tolerance", "cosine", "ok"):
        table.add_column(col)
    for g in report["graphs"]:
        ok = "[green]yes[/]" if g["passed"] else "[red]NO[/]"
        table.add_row(g["role"], f"{g['max_abs_diff']:.2e}", f"{g['tolerance']:.1e}", f"{g['cosine']:.7f}", ok)
    gen = report.get("generation")
    if gen:
        ok = "[green]yes[/]" if gen["passed"] else f"[red]NO (token {gen['first_mismatch']})[/]"
        same = sum(a == b for a, b in zip(gen["expected"], gen["got"]))
        table.add_row("greedy generation", f"{same}/{len(gen['expected'])} tokens equal", "exact", "", ok)
    console.print(table)


@app.command()
def run(
    folder: FolderArg,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The question or instruction.")],
    image: Annotated[
        list[Path] | None, typer.Option("--image", "-i", help="An image; repeat for several, in order.")
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Use the prompt verbatim: write one image placeholder per image yourself.")
    ] = False,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", min=1)] = 64,
    do_sample: Annotated[bool, typer.Option("--sample", help="Sample instead of greedy decoding.")] = False,
    temperature: Annotated[float, typer.Option("--temperature")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", min=0)] = 0,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="Stop at this text; repeatable.")] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="Runtime backend: onnxruntime or openvino.")
    ] = "onnxruntime",
    threads: ThreadsOpt = None,
    device: Annotated[str, typer.Option("--device", help="OpenVINO device: CPU, GPU, NPU.")] = "CPU",
    as_json: JsonOpt = False,
) -> None:
    """Generate text for a prompt and images with an exported folder (no torch needed).

    Example: vlm-export run ./llava-onnx --image cat.png --prompt "What is in the picture?"
    """
    from vlm_export.runtimes.pipeline import VLMPipeline

    images = list(image or [])
    options = dict(
        max_new_tokens=max_new_tokens,
        raw=raw,
        stop=list(stop or []),
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
    )
    try:
        pipe = VLMPipeline.from_pretrained(folder, backend=backend, threads=threads, device=device)
        if as_json:
            result = pipe.generate(prompt, images, **options)
            print(json.dumps(asdict(result), ensure_ascii=False))
            return
        pipe.generate(prompt, images, **options, on_text=_write)
        sys.stdout.write("\n")
    except (VLMExportError, ValueError) as error:
        _fail(error if isinstance(error, VLMExportError) else VLMExportError(str(error)))


@app.command()
def inspect(folder: FolderArg, as_json: JsonOpt = False) -> None:
    """Show the graphs of an exported folder: files, sizes, inputs and outputs, precision.

    Example: vlm-export inspect ./llava-onnx --json
    """
    from vlm_export.report.inspect import describe_folder

    try:
        info = describe_folder(folder)
    except VLMExportError as error:
        _fail(error)
    if as_json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return
    out.print(
        f"[bold]{info['family']}[/] from {info['source']['model']} "
        f"(format {info['format_version']}, {info['total_mb']:.1f} MB)"
    )
    table = Table()
    for col in ("graph", "MB", "precision", "opset", "inputs", "outputs"):
        table.add_column(col, overflow="fold")
    for g in info["graphs"]:
        table.add_row(
            g["role"],
            f"{g['mb']:.2f}",
            g["precision"] + (f" (OpenVINO IR: {g['openvino']['precision']})" if g.get("openvino") else ""),
            str(g["opset"]),
            _tensors(g["inputs"]),
            _tensors(g["outputs"]),
        )
    out.print(table)
    if info.get("image"):
        im = info["image"]
        out.print(f"image: {im['placeholder']!r} -> {im['tokens_per_tile']} x token {im['token_id']} per tile")
    cpu, ort = info["host"]["cpu"], info["host"]["onnxruntime"]
    out.print(
        f"this machine: {cpu['architecture']} {cpu['model']} ({', '.join(cpu['isa']) or 'no SIMD flags seen'}), "
        + (f"onnxruntime {ort['version']} on {ort['device']}" if ort else "onnxruntime not installed"),
        highlight=False,
    )


@app.command("to-openvino")
def to_openvino_cmd(
    source: Annotated[Path, typer.Argument(metavar="IN", help="An exported folder (fp32 for --quant).")],
    output: Annotated[
        Path | None, typer.Argument(metavar="[OUT]", help="Write a copy here instead of adding the IR to IN.")
    ] = None,
    quant: Annotated[
        str | None,
        typer.Option(
            "--quant",
            help="NNCF weight compression per graph, same syntax as quantize: int8 = INT8_ASYM, "
            "int4[:block=N][:asym] = INT4 with group size N, fp16 = fp16 weights.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists and is not empty.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add OpenVINO IR (optionally NNCF-compressed) for every graph; `--backend openvino` then uses it.

    Example: vlm-export to-openvino ./llava-onnx --quant decoder=int4:block=64,vision=int8
    """
    from vlm_export.export.openvino_ir import to_openvino

    def step(message: str) -> None:
        err.print(f"[dim]·[/] {message}", highlight=False)

    try:
        spec = _parse_quant(quant) if quant else None
        manifest = to_openvino(source, output, spec, overwrite=overwrite, progress=step)
    except VLMExportError as error:
        _fail(error)
    if as_json:
        print(json.dumps({role: g.openvino for role, g in manifest.graphs.items()}, indent=2))
        return
    for role, graph in manifest.graphs.items():
        ir = graph.openvino or {}
        out.print(f"{role}: {ir.get('file')} ({ir.get('precision')}, {ir.get('compression') or 'no compression'})")
    out.print(f"[green]wrote[/] {output or source}")


@app.command()
def quantize(
    source: Annotated[Path, typer.Argument(metavar="IN", help="An fp32 exported folder.")],
    output: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write; created atomically.")],
    quant: Annotated[str | None, QuantOpt] = None,
    auto: Annotated[
        bool, typer.Option("--auto", help="Pick the smallest preset within --max-accuracy-drop (measured).")
    ] = False,
    max_accuracy_drop: Annotated[
        float,
        typer.Option(
            "--max-accuracy-drop",
            min=0,
            help="Budget for --auto in points: task accuracy for the shipped model, else greedy tokens that differ.",
        ),
    ] = 1.0,
    target_cpu: Annotated[
        str | None,
        typer.Option(
            "--target-cpu", help="int8 kernels to suit: portable (default), arm64, avx2, avx512, avx512_vnni."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists and is not empty.")] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Compare with IN: sizes, cosine per graph, greedy agreement (and task accuracy for tiny-shapes).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compress the graphs of an fp32 export, each with its own precision (needs the onnx package).

    Example: vlm-export quantize ./llava-onnx ./llava-int4 --quant decoder=int4,vision=int8 --report
    Example: vlm-export quantize ./llava-onnx ./llava-small --auto --max-accuracy-drop 1.0
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        _fail(VLMExportError("quantize needs the onnx package", fix='pip install "vlm-export[export]"'))
    from vlm_export.manifest import Manifest
    from vlm_export.quantize.apply import quantize_folder

    if (quant is None) == (not auto):
        _fail(VLMExportError("give either --quant SPEC or --auto", fix="see vlm-export quantize --help"))

    def step(message: str) -> None:
        err.print(f"[dim]·[/] {message}", highlight=False)

    try:
        if auto:
            from vlm_export.quantize.auto import auto_quantize

            chosen = auto_quantize(source, output, max_accuracy_drop, target_cpu, overwrite=overwrite, progress=step)
            _print_auto(chosen, max_accuracy_drop)
            manifest = Manifest.load(output)
        else:
            manifest = quantize_folder(
                source, output, _parse_quant(quant, target_cpu), overwrite=overwrite, progress=step
            )
        comparison = None
        if report:
            from vlm_export.quantize.report import compare_folders

            err.print("[dim]·[/] comparing with fp32")
            comparison = compare_folders(source, output).as_dict()
    except VLMExportError as error:
        _fail(error)
    if as_json:
        graphs = {role: {"precision": g.precision, **(g.quantization or {})} for role, g in manifest.graphs.items()}
        print(json.dumps({"folder": str(output), "graphs": graphs, "report": comparison}, indent=2))
        return
    if comparison:
        _print_quant_report(comparison)
    else:
        for role, graph in manifest.graphs.items():
            out.print(f"{role}: {graph.precision} ({(graph.quantization or {}).get('recipe')})", highlight=False)
    out.print(f"[green]wrote[/] {output}")


def _print_auto(result, budget: float) -> None:
    measured = [t.metric for t in result.trials if t.preset != "fp32"]
    metric = measured[0] if measured else "greedy tokens"
    table = Table(title=f"--auto: smallest preset within {budget:g} points of {metric} drop")
    for col in ("preset", "MB", "drop (points)", "within budget"):
        table.add_column(col)
    for trial in result.trials:
        table.add_row(trial.preset, f"{trial.mb:.2f}", f"{trial.drop:.1f}", "yes" if trial.within_budget else "no")
    err.print(table)
    err.print(f"chose [bold]{result.chosen}[/]")


def _print_quant_report(report: dict) -> None:
    table = Table(title="Quantized vs fp32")
    for col in ("graph", "precision", "MB", "fp32 MB", "cosine"):
        table.add_column(col, justify="right" if col != "graph" else "left")
    for g in report["graphs"]:
        table.add_row(g["role"], g["precision"], f"{g['mb']:.2f}", f"{g['fp32_mb']:.2f}", f"{g['cosine']:.5f}")
    table.add_row("total", "", f"{report['total_mb']:.2f}", f"{report['fp32_mb']:.2f}", f"x{report['size_ratio']:.2f}")
    out.print(table)
    out.print(
        f"greedy tokens equal to fp32: {report['token_agreement']:.0%} of positions, "
        f"{report['exact_generations']}/{report['generations']} generations identical ({report['new_tokens']} tokens)"
    )
    task = report.get("task")
    if task:
        out.print(
            f"task accuracy ({task['n']} held-out questions): fp32 {task['fp32']:.1f}%, "
            f"quantized {task['quantized']:.1f}% (drop {report['accuracy_drop']:.1f} points)"
        )


@app.command()
def bench(
    folders: Annotated[
        list[Path],
        typer.Argument(metavar="OUT...", help="Exported folders to compare; FOLDER@openvino runs one on that backend."),
    ],
    backend: Annotated[
        list[str] | None, typer.Option("--backend", "-b", help="Backend(s); each folder runs on each.")
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Threads for every configuration.")] = (
        os.cpu_count() or 1
    ),
    image_size: Annotated[str, typer.Option("--image-size", help="Input image, WIDTHxHEIGHT.")] = "512x512",
    prompt_tokens: Annotated[
        int | None, typer.Option("--prompt-tokens", min=1, help="Lengthen the text prompt to N tokens.")
    ] = None,
    new_tokens: Annotated[int, typer.Option("--new-tokens", min=2, help="Forced new tokens (EOS ignored).")] = 64,
    runs: Annotated[int, typer.Option("--runs", min=1)] = 5,
    warmup: Annotated[int, typer.Option("--warmup", min=0)] = 1,
    compare_pytorch: Annotated[
        str | None,
        typer.Option("--compare-pytorch", help="Also run this checkpoint in transformers (needs torch); baseline."),
    ] = None,
    compare_optimum_intel: Annotated[
        str | None,
        typer.Option(
            "--compare-optimum-intel",
            help="Also export this checkpoint with optimum-cli (OpenVINO) and run it: the 'x peer' ratios.",
        ),
    ] = None,
    optimum_weights: Annotated[
        str, typer.Option("--optimum-weights", help="Peer weight formats, comma-separated: fp32, int8, int4.")
    ] = "fp32,int8",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.json, report.md, chart.png.")] = Path(
        "vlm-export-bench"
    ),
    fmt: Annotated[str, typer.Option("--format", help="What to print: table, json or md.")] = "table",
) -> None:
    """Time every stage of one or more exported folders in one run (each in a fresh process).

    Example: vlm-export bench ./llava-onnx ./llava-int8 --threads 2 --compare-pytorch ./llava-checkpoint
    """
    from vlm_export.report.bench import BenchSettings, run_bench
    from vlm_export.report.render import markdown, rich_table

    if fmt not in ("table", "json", "md"):
        _fail(VLMExportError(f"unknown --format {fmt!r}", fix="use table, json or md"))
    try:
        width, height = (int(v) for v in image_size.lower().split("x"))
    except ValueError:
        _fail(VLMExportError(f"--image-size {image_size!r} is not WIDTHxHEIGHT", fix="for example 512x512"))
    settings = BenchSettings(
        threads=threads,
        image_size=(width, height),
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        runs=runs,
        warmup=warmup,
        backends=list(backend or ["onnxruntime"]),
        compare_pytorch=compare_pytorch,
        compare_optimum_intel=compare_optimum_intel,
        optimum_weights=[w.strip() for w in optimum_weights.split(",") if w.strip()],
    )
    try:
        report = run_bench(folders, settings, out_dir, progress=lambda m: err.print(f"[dim]·[/] {m}"))
    except VLMExportError as error:
        _fail(error)
    if fmt == "json":
        print(json.dumps(report, indent=2))
    elif fmt == "md":
        print(markdown(report))
    else:
        out.print(rich_table(report))
        files = report["files"]
        out.print(f"wrote {files['json']}, {files['markdown']}" + (f", {files['chart']}" if files["chart"] else ""))
    failed = [c["name"] for c in report["configurations"] if "error" in c]
    if failed:
        err.print(f"[bold red]error:[/] {len(failed)} configuration(s) failed: {', '.join(failed)}", soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def demo(
    cache: Annotated[Path, typer.Option("--cache", help="Where the export of the shipped model is kept.")] = Path(
        ".cache/vlm-export-demo"
    ),
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", min=1)] = 8,
) -> None:
    """Convert the shipped model (once, cached) and ask it three questions about a held-out picture.

    Example: vlm-export demo
    """
    from vlm_export.demo import run_demo

    out.print(
        "[bold]vlm-export demo[/]: tiny-shapes, a LLaVA (CLIP + MLP + Llama) trained on synthetic shapes, "
        "shipped with the package."
    )

    def on_question(question: str) -> None:
        out.print(f"\n[bold]Q:[/] {question}\n[bold]A:[/] ", end="")

    def step(message: str) -> None:
        err.print(f"[dim]·[/] {message}", highlight=False)

    try:
        result = run_demo(cache, max_new_tokens, on_question=on_question, on_piece=_write, progress=step)
    except VLMExportError as error:
        _fail(error)
    out.print(f"\n\nPicture: {result.image}")
    if result.validation:
        _print_validation(result.validation, out)
    table = Table(title=f"Answers and timings in milliseconds ({result.folder})")
    for col in ("question", "answer", "truth", "", "vision", "projector", "prefill", "TTFT", "decode tok/s"):
        table.add_column(col)
    for answer in result.answers:
        t = answer.result.timings
        table.add_row(
            answer.question,
            answer.result.text,
            answer.truth,
            "[green]✓[/]" if answer.correct else "[red]✗[/]",
            *(
                ("cached", "cached")  # the same picture as an earlier question: embeddings reused
                if t.get("cached_images") and "vision_encoder" not in t
                else (f"{1000 * t.get('vision_encoder', 0):.2f}", f"{1000 * t.get('projector', 0):.2f}")
            ),
            f"{1000 * t.get('prefill', 0):.2f}",
            f"{1000 * t.get('ttft', 0):.2f}",
            f"{t['decode_tokens_per_s']:.0f}" if t.get("decode_tokens_per_s") else "- (1 token)",
        )
    out.print(table)


@app.command("eval")
def eval_(
    folder: FolderArg,
    n: Annotated[int, typer.Option("--n", min=1, help="Test-split samples to score.")] = 500,
    backend: Annotated[
        str, typer.Option("--backend", help="Runtime backend: onnxruntime or openvino.")
    ] = "onnxruntime",
    threads: ThreadsOpt = None,
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="Also score this PyTorch checkpoint (folder or tiny-shapes) and compare."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Exact-answer accuracy of an export of the shipped model on the held-out shapes questions.

    Example: vlm-export eval ./tiny-shapes-int8 --reference tiny-shapes
    """
    from rich.progress import Progress

    from vlm_export.shapes.evaluate import evaluate

    try:
        with Progress(console=err, transient=True, disable=as_json) as bar:
            task_id = bar.add_task("answering", total=n)
            report = evaluate(
                folder, n, backend, threads, reference, progress=lambda done, _: bar.update(task_id, completed=done)
            )
    except VLMExportError as error:
        _fail(error)
    if as_json:
        print(json.dumps(report.to_json()))
        return
    table = Table(title=f"Exact-answer accuracy, % ({report.n} test samples, {report.backend})")
    table.add_column("question type")
    table.add_column("export", justify="right")
    if report.reference:
        table.add_column("PyTorch", justify="right")
    for kind, score in report.exported.per_type.items():
        row = [kind, f"{score:.1f}"]
        if report.reference:
            row.append(f"{report.reference.per_type.get(kind, 0):.1f}")
        table.add_row(*row)
    total = ["[bold]all[/]", f"[bold]{report.exported.accuracy:.1f}[/]"]
    if report.reference:
        total.append(f"[bold]{report.reference.accuracy:.1f}[/]")
    table.add_row(*total)
    out.print(table)
    if report.reference:
        out.print(f"Same answer as PyTorch on {report.agreement:.1f}% of the samples.")
    out.print(f"[dim]{report.seconds:.1f} s ({1000 * report.seconds / report.n:.1f} ms per question)[/]")


@app.command("train-tiny")
def train_tiny(
    out_dir: Annotated[Path, typer.Argument(help="Where to write the checkpoint (Hugging Face format).")],
    minutes: Annotated[float, typer.Option("--minutes", help="Safety cap on wall time.")] = 60.0,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Length of the schedule.")] = 8_000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: Annotated[int, typer.Option("--threads", min=1)] = 2,
) -> None:
    """Train the shipped model (tiny-shapes) on the synthetic shapes task from a seed, on CPU.

    Example: vlm-export train-tiny vlm_export/shapes/tiny-shapes --seed 0
    """
    from vlm_export.shapes.card import write_card
    from vlm_export.shapes.train import TrainConfig, train

    config = TrainConfig(seed=seed, minutes=minutes, max_steps=max_steps, threads=threads)

    def log(record: dict) -> None:
        if record.get("stage") == "vision":
            err.print(f"vision step {record['step']:>5}  patch-tagging loss {record['loss']:.4f}", highlight=False)
            return
        types = " ".join(f"{k} {v:.1f}" for k, v in record["per_type"].items())
        err.print(
            f"step {record['step']:>6} {record['seconds']:>7.0f} s  loss {record['loss']:.4f}  "
            f"validation {record['accuracy']:.1f}%  ({types})",
            highlight=False,
        )

    _, _, result = train(config, out_dir, log=log)
    err.print("[dim]·[/] scoring the checkpoint for its model card")
    write_card(out_dir)
    out.print(
        f"Saved to {out_dir}: best validation accuracy {result.validation_accuracy:.1f}% "
        f"at step {result.best_step} ({result.seconds / 60:.1f} min)"
    )


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _shape(tensor: dict) -> str:
    return "[" + ", ".join(str(d) for d in tensor["shape"]) + "]"


def _tensors(tensors: list[dict]) -> str:
    """One line per tensor, with the per-layer KV-cache tensors folded into one line each."""
    lines, layers = [], {}
    for t in tensors:
        prefix, _, rest = t["name"].partition(".")
        if prefix in ("past_key_values", "present") and rest.split(".")[0].isdigit():
            layers.setdefault(prefix, (t, set()))[1].add(int(rest.split(".")[0]))
            continue
        lines.append(f"{t['name']} {t['dtype']}{_shape(t)}")
    for prefix, (first, indices) in layers.items():
        lines.append(f"{prefix}.{{0..{max(indices)}}}.key/value {first['dtype']}{_shape(first)}")
    return "\n".join(lines)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
