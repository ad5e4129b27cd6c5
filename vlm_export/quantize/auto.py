"""``quantize --auto``: the smallest preset whose measured loss stays within a budget.

Presets are tried from the smallest upward; each is written to a scratch folder, compared with the
fp32 source (:func:`~vlm_export.quantize.report.compare_folders`) and kept if its accuracy drop is within
``max_drop`` percentage points. For an export of the shipped model the drop is task accuracy (fp32 minus
quantized exact-answer accuracy on held-out questions, as ``vlm-export eval`` measures it); for any other
model, which has no task to score, it is the share of greedy tokens that differ from fp32 over the
report's prompts.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vlm_export.errors import VLMExportError
from vlm_export.quantize.apply import quantize_folder
from vlm_export.quantize.report import compare_folders

# smallest first (the decoder dominates: int4-all < int4 < int8 < fp16 < fp32)
AUTO_ORDER = ("int4-all", "int4", "int8", "fp16", "fp32")


@dataclass
class Trial:
    preset: str
    mb: float
    drop: float  # percentage points: task accuracy lost, or greedy tokens that differ from fp32
    within_budget: bool
    metric: str = "greedy tokens"  # or "task accuracy"


@dataclass
class AutoResult:
    chosen: str
    trials: list[Trial] = field(default_factory=list)


def auto_quantize(
    source: Path,
    out: Path,
    max_drop: float,
    target_cpu: str | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> AutoResult:
    from vlm_export.export.atomic import check_output
    from vlm_export.quantize.spec import parse_quant

    step = progress or (lambda _m: None)
    check_output(Path(out), overwrite)
    result = AutoResult(chosen="")
    with tempfile.TemporaryDirectory(prefix="vlm-export-auto-") as scratch:
        for preset in AUTO_ORDER:
            spec = parse_quant(preset, target_cpu)
            candidate = Path(scratch) / preset
            step(f"trying {preset}")
            if preset == "fp32":
                trial = Trial(preset, _folder_mb(source), 0.0, True)
            else:
                quantize_folder(source, candidate, spec)
                report = compare_folders(source, candidate)
                if report.task is not None:
                    drop, metric = report.task.drop, "task accuracy"
                else:
                    drop, metric = 100.0 * (1.0 - report.token_agreement), "greedy tokens"
                trial = Trial(preset, report.total_mb, drop, drop <= max_drop, metric)
            result.trials.append(trial)
            if trial.within_budget:
                result.chosen = preset
                break
            shutil.rmtree(candidate, ignore_errors=True)
        if not result.chosen:  # pragma: no cover - fp32 always fits
            raise VLMExportError("no preset fits the budget")
        quantize_folder(source, out, parse_quant(result.chosen, target_cpu), overwrite=overwrite)
    return result


def _folder_mb(folder: Path) -> float:
    from vlm_export.manifest import Manifest

    manifest = Manifest.load(folder)
    return sum((Path(folder) / name).stat().st_size for g in manifest.graphs.values() for name in g.files) / 1e6
