"""Export a finished run to ONNX, with a ``preprocess.json`` to serve it without polytask.

The exported graph takes the encoded features as named inputs, ``numeric`` (float32, ``(batch,
p)``) and ``categorical`` (int64, ``(batch, c)``; left out when ``p`` or ``c`` is 0), and has
one output per task, named after the task: the task's **raw output**, exactly what the torch
model returns (a binary task's logit of its positive class, a multiclass task's logits, a
multilabel task's logit per label, a regression task's value in standardised units). The batch
dimension is dynamic. :func:`preprocess_spec` describes how to build the inputs from a raw row
and how to decode each output into what ``polytask predict`` writes; it is written beside the
model and also stored in the model's metadata (key ``polytask.preprocess``).

A model is written only once onnxruntime has loaded it and reproduced the torch outputs on two
batch sizes; anything the exporter refuses is a :class:`~polytask.errors.RunError` naming the
architecture and input block, with no file left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polytask.data.features import FeaturePreprocessor
from polytask.errors import ConfigError, RunError
from polytask.models.base import MultiTaskModel
from polytask.predict import LoadedRun, load_run
from polytask.tasks import Task
from polytask.training.checkpoint import atomic_path

FORMATS = ("onnx",)
"""The formats :func:`export_run` writes."""
PREPROCESS = "preprocess.json"
"""The file name of the input and output description, beside the exported model."""
METADATA_KEY = "polytask.preprocess"
"""The model metadata key holding the same description as ``preprocess.json``."""
INPUTS = ("numeric", "categorical")
OPSET = 17
EXPORTABLE_BLOCKS = ("tabular", "cnn", "gru")
"""Input blocks whose inputs ``preprocess.json`` can describe (text needs its encoder)."""
UNEXPORTABLE = {
    "text": "a fine-tuned sentence transformer needs its tokenizer, which the ONNX model cannot "
    "carry",
    "graph": "it builds each batch's molecular graph, whose numbers of atoms and bonds depend on "
    "the data, inside the model; a traced ONNX graph would fix them",
}
"""Why these input blocks cannot be exported."""
TOLERANCE = 1e-4
"""Largest difference between onnxruntime's and torch's outputs accepted at export (float32
kernels differ in their summation order; the tests check 1e-5 on real rows)."""
_DUMMY_BATCH = 3
_CHECK_BATCH = 5


@dataclass(frozen=True)
class Exported:
    """Where an export wrote the model and its ``preprocess.json``."""

    model: Path
    preprocess: Path


def export_run(
    run_dir: str | Path, output: str | Path | None = None, *, format: str = "onnx"
) -> Exported:
    """Export the run in ``run_dir`` to ``output`` (default ``RUN_DIR/model.onnx``) and write
    ``preprocess.json`` beside it. Needs the ``onnx`` extra."""
    if format not in FORMATS:
        raise ConfigError(f"--format: '{format}' is not one of {list(FORMATS)}")
    target = Path(run_dir) / "model.onnx" if output is None else Path(output)
    if target.is_dir():
        raise ConfigError(
            f"--output {target}: is a folder; give a file name, e.g. {target / 'model.onnx'}"
        )
    onnx, ort = _onnx_modules()
    run = load_run(run_dir)
    _check_exportable(run)
    spec = preprocess_spec(run, target.name)
    text = json.dumps(spec, indent=2, allow_nan=False) + "\n"
    model = run.model.to(device="cpu", dtype=torch.float32)  # the exported graph is float32
    graph = _Graph(model, run.tasks, run.preprocessor)
    preprocess = target.with_name(PREPROCESS)
    with atomic_path(target) as model_tmp, atomic_path(preprocess) as spec_tmp:
        _export(graph, model_tmp, _where(run))
        _add_metadata(onnx, model_tmp, text, _where(run))
        _verify(graph, model_tmp, ort, _where(run))
        spec_tmp.write_text(text)
    return Exported(target, preprocess)


def _add_metadata(onnx: Any, path: Path, text: str, where: str) -> None:
    """Store ``text`` (preprocess.json) in the model's metadata, then check the model."""
    try:
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, text
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
    except Exception as exc:  # onnx's checker and protobuf raise their own types
        raise RunError(f"the ONNX export of the {where} is not valid: {_first_line(exc)}") from exc


def _onnx_modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "polytask export needs onnx and onnxruntime: pip install 'polytask[onnx]'"
        ) from None
    return onnx, onnxruntime


def _where(run: LoadedRun) -> str:
    return (
        f"architecture '{run.config.model.arch}' with input block '{run.config.model.encoder.type}'"
    )


def _check_exportable(run: LoadedRun) -> None:
    """Refuse what a consumer could not feed from ``preprocess.json`` alone."""
    block = run.config.model.encoder.type
    features = run.preprocessor
    if block not in EXPORTABLE_BLOCKS or features.fine_tune:
        why = UNEXPORTABLE.get(block, "preprocess.json cannot describe its inputs")
        raise RunError(
            f"model.encoder.type: the input block '{block}' cannot be exported to ONNX ({why}); "
            f"export supports {list(EXPORTABLE_BLOCKS)}"
        )
    if features.text:
        raise RunError(
            f"features.text: the text columns {features.text} are embedded by the sentence "
            f"encoder '{features.text_model}' before the model, which preprocess.json cannot "
            "describe; ONNX export supports numeric and categorical features only"
        )
    clash = next((t.name for t in run.tasks if t.name in INPUTS), None)
    if clash is not None:
        raise RunError(
            f"task '{clash}' has the name of an input of the exported model ({list(INPUTS)}); "
            "ONNX names must be unique"
        )


class _Graph(nn.Module):
    """The model as the exported graph sees it: the present inputs as positional tensors, the
    task outputs as a tuple in task order."""

    def __init__(
        self, model: MultiTaskModel, tasks: Sequence[Task], features: FeaturePreprocessor
    ) -> None:
        super().__init__()
        self.model = model
        self.names = [t.name for t in tasks]
        widths = {"numeric": len(features.numeric), "categorical": len(features.categorical)}
        self.widths = widths
        self.inputs = [name for name in INPUTS if widths[name]]
        self.cardinalities = features.cardinalities
        self.eval()  # the exporter restores this mode on the whole graph after tracing

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        given = dict(zip(self.inputs, tensors, strict=True))
        batch = tensors[0].shape[0]
        dtypes = {"numeric": torch.float32, "categorical": torch.long}
        inputs = {
            name: given.get(name, torch.zeros(batch, 0, dtype=dtypes[name])) for name in INPUTS
        }
        outputs = self.model(inputs)
        return tuple(outputs[name] for name in self.names)

    def example(self, batch: int, seed: int = 0) -> tuple[Tensor, ...]:
        """Inputs of ``batch`` rows: standard-normal numeric values, valid category codes."""
        generator = torch.Generator().manual_seed(seed)
        tensors = []
        if "numeric" in self.inputs:
            tensors.append(torch.randn(batch, self.widths["numeric"], generator=generator))
        if "categorical" in self.inputs:
            codes = [torch.randint(0, n, (batch,), generator=generator) for n in self.cardinalities]
            tensors.append(torch.stack(codes, dim=1))
        return tuple(tensors)


def _export(graph: _Graph, path: Path, where: str) -> None:
    """Trace ``graph`` into ``path`` with torch's TorchScript-based exporter (it handles every
    built-in architecture and input block; its deprecation warning is silenced here)."""
    batch = {0: "batch"}
    axes = {name: batch for name in [*graph.inputs, *graph.names]}
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                graph.example(_DUMMY_BATCH),
                str(path),
                dynamo=False,
                input_names=graph.inputs,
                output_names=graph.names,
                dynamic_axes=axes,
                opset_version=OPSET,
            )
    except Exception as exc:  # the exporter raises many types for unsupported operators
        raise RunError(f"ONNX export of the {where} failed: {_first_line(exc)}") from exc


def _verify(graph: _Graph, path: Path, ort: Any, where: str) -> None:
    """Load ``path`` with onnxruntime and compare its outputs with torch's on two batch sizes
    (neither the export's), so a wrong or batch-size-specialised graph is never written."""
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RunError(f"onnxruntime cannot load the exported {where}: {_first_line(exc)}") from exc
    for batch in (1, _CHECK_BATCH):
        example = graph.example(batch, seed=batch)
        with torch.no_grad():
            expected = graph(*example)
        feed = {name: t.numpy() for name, t in zip(graph.inputs, example, strict=True)}
        try:
            found = session.run(graph.names, feed)
        except Exception as exc:
            raise RunError(
                f"onnxruntime cannot run the exported {where}: {_first_line(exc)}"
            ) from exc
        for name, want, got in zip(graph.names, expected, found, strict=True):
            want_np = want.numpy()
            if got.shape != want_np.shape:
                difference = f"shape {list(got.shape)} instead of {list(want_np.shape)}"
            elif not np.allclose(got, want_np, rtol=TOLERANCE, atol=TOLERANCE):
                difference = f"outputs differ by up to {float(np.abs(got - want_np).max()):.3g}"
            else:
                continue
            raise RunError(
                f"the ONNX export of the {where} does not reproduce task '{name}' on a batch "
                f"of {batch} ({difference}); nothing written"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


# -- preprocess.json --------------------------------------------------------------------------


def preprocess_spec(run: LoadedRun, model_file: str = "model.onnx") -> dict[str, Any]:
    """The JSON description of the exported model's inputs and outputs: how to build the inputs
    from a raw row and how to decode each output (schema in the README, "Export to ONNX")."""
    features = run.preprocessor
    inputs: dict[str, Any] = {}
    if features.numeric:
        inputs["numeric"] = {
            "dtype": "float32",
            "shape": ["batch", len(features.numeric)],
            "how": NUMERIC_HOW,
            "columns": _numeric_columns(features),
        }
    if features.categorical:
        inputs["categorical"] = {
            "dtype": "int64",
            "shape": ["batch", len(features.categorical)],
            "how": CATEGORICAL_HOW,
            "columns": [
                {"name": c, "vocabulary": list(features.vocabularies[c]), "unknown_index": 0}
                for c in features.categorical
            ],
        }
    return {
        "format": "polytask-onnx",
        "version": 1,
        "model": model_file,
        "run": run.config.name,
        "missing": features.missing,
        "inputs": inputs,
        "outputs": [_output(task) for task in run.tasks],
    }


NUMERIC_HOW = (
    "column j is made from the raw value x of columns[j].name: a missing x (null, NaN or empty) "
    "is replaced by 'fill' (when 'fill' is null the model accepts no missing value); then "
    "(x - mean) / std, computed in float64 and cast to float32. A column with 'indicator_of' is "
    "1.0 when that column's raw value is missing, else 0.0."
)
CATEGORICAL_HOW = (
    "column j is the code of the raw value of columns[j].name: the value as text, surrounding "
    "whitespace removed (a missing value is the empty text ''); its code is 1 + its position in "
    "'vocabulary', or 'unknown_index' (0) when the vocabulary does not hold it."
)


def _numeric_columns(features: FeaturePreprocessor) -> list[dict[str, Any]]:
    indicators = features.indicator_columns()
    imputed = features.missing == "impute" and bool(features.median)
    columns = []
    for j, name in enumerate(features.numeric):
        if name in indicators:
            columns.append({"name": name, "indicator_of": indicators[name]})
            continue
        fill = features.median[j] if imputed else None
        columns.append(
            {"name": name, "mean": features.mean[j], "std": features.std[j], "fill": fill}
        )
    return columns


def _output(task: Task) -> dict[str, Any]:
    """One output's entry: its task, what the tensor holds and how to decode it into what
    ``polytask predict`` writes (:meth:`~polytask.tasks.Task.decode`)."""
    entry: dict[str, Any] = {
        "name": task.name,
        "type": task.kind,
        "shape": ["batch", task.output_size],
    }
    data = task.to_dict()
    if task.kind == "binary":
        negative, positive = data["classes"]
        entry.update(
            positive=positive,
            negative=negative,
            how=(
                f"the logit of the positive class '{positive}': probability = "
                f"1 / (1 + exp(-logit)); the class is '{positive}' when the probability is >= "
                f"0.5, else '{negative}'"
            ),
        )
    elif task.kind == "multiclass":
        entry.update(
            classes=list(data["classes"]),
            how=(
                "one logit per class, in the order of 'classes': probabilities = "
                "softmax(logits); the class is the most probable one (the first on a tie)"
            ),
        )
    elif task.kind == "multilabel":
        entry.update(
            labels=list(task.columns),
            how=(
                "one logit per label, in the order of 'labels': probability = "
                "1 / (1 + exp(-logit)); the label is 1 when its probability is >= 0.5, else 0"
            ),
        )
    elif task.kind == "regression":
        entry.update(
            columns=list(task.columns),
            mean=list(data["mean"]),
            std=list(data["std"]),
            how=(
                "one standardised value per target column, in the order of 'columns': the "
                "value in the column's own unit = output * std + mean"
            ),
        )
    else:  # a task type registered outside polytask: its raw output, undocumented here
        entry["how"] = f"the raw output of the '{task.kind}' task's head"
    return entry


__all__ = [
    "EXPORTABLE_BLOCKS",
    "FORMATS",
    "METADATA_KEY",
    "PREPROCESS",
    "Exported",
    "export_run",
    "preprocess_spec",
]
