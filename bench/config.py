"""Experiment configs: YAML validated into typed, frozen pydantic objects.

One `Experiment` holds one typed slice per pipeline stage. Unknown keys, wrong types and
missing files are reported as one line naming the file and the dotted key (exit 2).
`--set a.b=value` overrides are applied to the YAML tree before validation, so they are
validated exactly like the file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from bench.artifacts import content_hash
from bench.config_base import StrictModel, repeated
from bench.errors import InputError
from bench.explain.config import ExplainConfig
from bench.r2r.config import R2RConfig
from bench.reason.config import LLMEndpoint, ReasonConfig
from bench.registry import accept_plugins, lookup
from bench.report.config import ReportConfig
from bench.serve.config import ServeConfig
from bench.train.config import TrainConfig
from bench.tune.config import TuneConfig


# ------------------------------------------------------------------------------ data sources
class _Source(StrictModel):
    name: str = Field(description="label used in tables, e.g. 'scifact'")
    max_queries: Optional[int] = Field(None, ge=1, description="keep the first N queries (sorted ids)")


class DemoSource(_Source):
    loader: Literal["demo"]


class BeirSource(_Source):
    loader: Literal["beir"]
    path: Path = Field(description="folder with corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    split: str = "test"


class TrecDLSource(_Source):
    loader: Literal["trec-dl"]
    candidates: Path = Field(description="JSON: [{query, hits: [{qid, docid, content, rank, score}]}]")
    qrels: Path
    run: Optional[Path] = Field(None, description="optional TREC run file to use as first stage")


class ClimateFeverSource(_Source):
    loader: Literal["climate-fever"]
    path: Path = Field(description="climate-fever.jsonl")
    list_size: int = Field(10, ge=2, description="candidates per claim, padded with BM25 negatives")


class BrightSource(_Source):
    loader: Literal["bright"]
    domain: str = Field(description="BRIGHT domain, e.g. biology")
    examples: Optional[Path] = Field(None, description="local examples jsonl/jsonl.gz/parquet; else HF xlangai/BRIGHT")
    documents: Optional[Path] = Field(None, description="local documents jsonl/parquet; else HF xlangai/BRIGHT")
    qrels: Optional[Path] = None
    long_documents: bool = False


class IrDatasetsSource(_Source):
    loader: Literal["ir_datasets"]
    dataset_id: str = Field(description="ir_datasets id, e.g. beir/scifact/test")


class HFSource(_Source):
    loader: Literal["hf"]
    repo: str = Field(description="Hugging Face dataset repo in BEIR layout (corpus/queries configs), e.g. BeIR/scifact")
    qrels_repo: Optional[str] = Field(None, description="qrels repo, default '<repo>-qrels'")
    split: str = "test"


class PluginSource(_Source):
    """A data source read by a loader that another package registers (entry point group
    `rerank_bench.data_loaders`): `plugin` names it, `options` are its own settings."""

    loader: Literal["plugin"]
    plugin: str = Field(description="the registered data loader's name")
    options: dict[str, Any] = Field(default_factory=dict, description="the loader's own settings")

    @field_validator("plugin")
    @classmethod
    def _registered(cls, v):
        lookup("data_loaders", v)
        return v


DataSource = Annotated[
    Union[DemoSource, BeirSource, TrecDLSource, ClimateFeverSource, BrightSource, IrDatasetsSource, HFSource,
          PluginSource],
    Field(discriminator="loader"),
]


class SplitConfig(StrictModel):
    scheme: Literal["random", "dataset", "none"] = Field(
        "random", description="random: seeded split of query ids; dataset: the loader's own; none: all test")
    train: float = Field(0.8, ge=0, le=1)
    valid: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self):
        if self.scheme == "random" and abs(self.train + self.valid + self.test - 1.0) > 1e-6:
            raise ValueError(f"train+valid+test must sum to 1, got {self.train + self.valid + self.test:g}")
        return self


# ------------------------------------------------------------------------------ stages
FIRST_STAGES = ("bm25s", "pyserini", "candidates", "dense", "hybrid")  # the harness's own; plugins add more
FIRST_STAGE_NAME = "BM25"  # the (BM25) first stage's row in every table; no other system may take the name


class RetrieveConfig(StrictModel):
    method: Literal["bm25s", "pyserini", "candidates", "dense", "hybrid"] = Field(
        "bm25s", description="bm25s (default), pyserini (optional extra), the loader's candidate lists, dense "
                             "(bi-encoder, exact search) or hybrid (BM25 + dense, fused)")
    name: Optional[str] = Field(None, description="the first stage's row in tables; default BM25 (bm25s, pyserini, "
                                                  "candidates), Dense or Hybrid")
    model: str = Field("all-minilm-l6-v2", description="dense / hybrid: the bi-encoder (preset, hub id or local dir)")
    max_length: int = Field(256, ge=8, description="dense / hybrid: tokens per text (all-MiniLM-L6-v2: 256)")
    encode_batch_size: int = Field(64, ge=1, description="dense / hybrid: texts per encoding batch")
    fusion: Literal["rrf", "score"] = Field("rrf", description="hybrid: reciprocal-rank fusion, or a weighted sum "
                                                               "of min-max normalised scores")
    rrf_k: int = Field(60, ge=1, description="hybrid rrf: the k in 1 / (k + rank)")
    fusion_weights: tuple[float, float] = Field((0.5, 0.5), description="hybrid score fusion: weights of BM25 and dense")
    variant: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)
    stemmer: Optional[str] = Field("english", description="PyStemmer language, or null for none")
    stopwords: Optional[str] = Field("en", description="bm25s stopword list, or null for none")
    depth: int = Field(100, ge=1, description="documents kept per query")
    title_field: bool = Field(True, description="index title + text (BEIR 'flat' style)")

    _plugin_method = field_validator("method", mode="wrap")(  # or a first stage a plugin registers
        accept_plugins("first_stages", FIRST_STAGES))

    @property
    def display_name(self) -> str:
        return self.name or {"dense": "Dense", "hybrid": "Hybrid"}.get(
            self.method, FIRST_STAGE_NAME if self.method in FIRST_STAGES else self.method)


SCORER_KINDS = ("relevance-token", "reward-head", "cross-encoder", "bi-encoder", "seq2seq")  # the harness's own


class ScorerSpec(StrictModel):
    """A model-based scorer: one batched call from (query, item) pairs to one score each."""

    name: str = Field(description="system name in the leaderboard")
    kind: Literal["relevance-token", "reward-head", "cross-encoder", "bi-encoder", "seq2seq"] = Field(
        "relevance-token", description="relevance-token: log-odds of 'yes' over 'no' of a causal LM; reward-head: "
                                       "scalar head of a causal LM; cross-encoder: (query, item) encoder logit; "
                                       "bi-encoder: cosine of sentence embeddings; seq2seq: an encoder-decoder "
                                       "(monoT5-style) reading 'Query: q Document: d Relevant:', logit('true') - "
                                       "logit('false') at the first decoder step")
    model: str = Field(description="preset name (see `rerank-bench models`), HF hub id or local dir")
    adapter: Optional[str] = Field(None, description="peft adapter dir applied on top of the model")
    prompt: Literal["chat", "plain"] = "chat"
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(512, ge=16, description="tokens per (query, item) input, template included")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="compute precision: auto = bf16 on CUDA (fp16 where bf16 is missing), float32 on CPU")
    params: Optional[str] = Field(None, description="parameter count label for tables, e.g. 135M")
    datasets: Optional[tuple[str, ...]] = Field(None, description="data sources it re-ranks; default every one")

    _plugin_kind = field_validator("kind", mode="wrap")(  # or a scorer kind a plugin registers
        accept_plugins("scorers", SCORER_KINDS))


class RunSystem(StrictModel):
    """A published or submitted ranking, read from a TREC run file, evaluated like any system."""

    name: str = Field(description="system name in the leaderboard, e.g. RankVicuna-7B")
    kind: Literal["run"]
    run: Path = Field(description="TREC run file (qid Q0 docid rank score tag)")
    dataset: Optional[str] = Field(None, description="the data source it ranks; default every source it has queries of")
    params: Optional[str] = Field(None, description="parameter count label for tables, e.g. 7B")


class ListwiseSystem(LLMEndpoint):
    """A listwise LLM re-ranker (RankGPT's sliding window) through one of the reason stage's backends."""

    name: str = Field(description="system name in the leaderboard, e.g. RankGPT-4o")
    kind: Literal["listwise"]
    window: int = Field(20, ge=2, description="passages per window")
    step: int = Field(10, ge=1, description="how far the window slides (bottom to top)")
    depth: int = Field(100, ge=2, description="first-stage candidates re-ranked per query")
    passage_words: int = Field(100, ge=1, description="each passage is cut to its first N words in the prompt")
    prompt: Literal["rankgpt", "reasoning"] = Field(
        "rankgpt", description="rankgpt: RankGPT's plain ranking prompt ('[2] > [1] > ...'); reasoning: R2R's "
                               "single-call reasoning prompt (keywords, direct and comparative reasons, ranking, as "
                               "one JSON answer; R2R Table 5 compares the two). Reasoning answers are long: give "
                               "max_new_tokens ~60 per passage of the window")
    max_new_tokens: int = Field(200, ge=8)
    batch_size: int = Field(4, ge=1, description="local backend: prompts generated together")
    datasets: Optional[tuple[str, ...]] = Field(None, description="data sources it re-ranks; default every one")
    params: Optional[str] = None

    @model_validator(mode="after")
    def _window(self):
        if self.step > self.window:
            raise ValueError(f"step ({self.step}) must not exceed window ({self.window})")
        return self


def _system_kind(value) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in ("run", "listwise") else "scorer"


SystemSpec = Annotated[Union[Annotated[ScorerSpec, Tag("scorer")], Annotated[RunSystem, Tag("run")],
                             Annotated[ListwiseSystem, Tag("listwise")]],
                       Discriminator(_system_kind)]


class RerankConfig(StrictModel):
    depth: int = Field(10, ge=1, description="first-stage candidates re-ranked per query")
    systems: list[SystemSpec] = Field(default_factory=list, description="model-based re-rankers and run files")
    actors: int = Field(1, ge=1, description="scoring actors (the data plane's Ray Data actor pool size)")
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)
    plane_batch_size: int = Field(256, ge=1, description="pairs per data-plane batch handed to an actor (each "
                                                         "system's forward batches come from its own batch_size)")

    @field_validator("systems")
    @classmethod
    def _unique_system_names(cls, systems):
        dupes = repeated([s.name for s in systems])
        if dupes:
            raise ValueError(f"system names must be unique, repeated: {', '.join(dupes)}")
        if any(s.name == FIRST_STAGE_NAME for s in systems):
            raise ValueError(f"{FIRST_STAGE_NAME!r} is the first stage's name; give the system another name")
        return systems

    @property
    def scorers(self) -> list[ScorerSpec]:
        return [s for s in self.systems if isinstance(s, ScorerSpec)]

    @property
    def run_systems(self) -> list[RunSystem]:
        return [s for s in self.systems if isinstance(s, RunSystem)]

    @property
    def listwise_systems(self) -> list[ListwiseSystem]:
        return [s for s in self.systems if isinstance(s, ListwiseSystem)]


class EvaluateConfig(StrictModel):
    measures: list[str] = Field(default_factory=lambda: ["nDCG@5", "nDCG@10", "RR", "AP", "R@100"])
    split: Literal["all", "train", "valid", "test"] = Field(
        "all", description="queries evaluated; with trained systems it must hold no training query (test or "
                           "valid), unless allow_training_queries")
    allow_training_queries: bool = Field(
        False, description="evaluate trained or tuned systems on a split holding their training queries (all, "
                           "train); their scores are then flagged '✱' in every table")
    baseline: Optional[str] = Field(
        None, description="system every other is compared with (default: the first stage, BM25 unless "
                          "retrieve.method or retrieve.name says otherwise)")


class RayConfig(StrictModel):
    address: Optional[str] = Field(None, description="cluster address; default RAY_ADDRESS or a new local cluster")
    num_cpus: Optional[int] = Field(None, ge=1, description="CPUs of a new local cluster")
    num_gpus: Optional[int] = Field(None, ge=0)


class Experiment(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 42
    results_dir: Path = Path("results")
    ray: RayConfig = RayConfig()
    data: list[DataSource] = Field(min_length=1)
    splits: SplitConfig = SplitConfig()
    retrieve: RetrieveConfig = RetrieveConfig()
    rerank: RerankConfig = RerankConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    # Optional stages: absent means the stage does not run.
    train: Optional[TrainConfig] = None
    explain: Optional[ExplainConfig] = None
    reason: Optional[ReasonConfig] = None
    tune: Optional[TuneConfig] = None
    serve: Optional[ServeConfig] = None
    r2r: R2RConfig = Field(R2RConfig(), description="Reason-to-Rank: the teacher of the r2r-* training methods, "
                                                   "their losses and the R2R tables")
    report: ReportConfig = ReportConfig()

    @field_validator("data")
    @classmethod
    def _unique_names(cls, sources):
        dupes = repeated([s.name for s in sources])
        if dupes:
            raise ValueError(f"data source names must be unique, repeated: {', '.join(dupes)}")
        return sources

    @property
    def out_dir(self) -> Path:
        return Path(self.results_dir) / self.name

    def hash(self) -> str:
        return content_hash(self.model_dump(mode="json"))

    def source(self, name: str):
        for s in self.data:
            if s.name == name:
                return s
        raise InputError(f"no data source named {name!r}")


# ------------------------------------------------------------------------------ loading
def _parse_value(text: str) -> Any:
    """`--set` values are YAML scalars/flow values: 3, 0.5, true, null, [a, b], {k: v}."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(tree: dict, overrides: list[str], source: str) -> dict:
    for item in overrides:
        if "=" not in item:
            raise InputError(f"--set {item!r}: expected key=value, e.g. rerank.depth=20")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = tree
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise InputError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a mapping")
            node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = _parse_value(value)
        elif isinstance(node, dict):
            node[last] = _parse_value(value)
        else:
            raise InputError(f"--set {key}: parent is not a mapping")
    return tree


def format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif first["type"] == "union_tag_invalid":
        msg = f"unknown loader {first.get('input', {}).get('loader') if isinstance(first.get('input'), dict) else ''!r}; expected one of {first['ctx']['expected_tags']}"
    elif first["type"] == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        field = re.match(r"^(\w+): ", msg)  # a model check naming its field: "num_beams: ..." -> loc.num_beams
        if field and loc:
            loc, msg = f"{loc}.{field.group(1)}", msg[field.end():]
    value = first.get("input")
    shown = "" if first["type"] in ("missing", "union_tag_invalid") or isinstance(value, (dict, list)) else f" (got {value!r})"
    more = f" [+{len(err.errors()) - 1} more]" if len(err.errors()) > 1 else ""
    return f"{source}: {loc}: {msg}{shown}{more}"


_UNION_TAGS = {"demo", "beir", "trec-dl", "climate-fever", "bright", "ir_datasets", "hf", "plugin"}


def read_yaml_mapping(path: str | os.PathLike, what: str = "config file") -> dict:
    """A YAML file whose top level is a mapping; one-line errors naming the file (and line)."""
    from bench.data.io import read_text
    from bench.errors import require_file

    path = require_file(Path(path), what)
    try:
        tree = yaml.safe_load(read_text(path, what))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"invalid YAML{where}: {getattr(e, 'problem', e)}", source=path) from None
    if not isinstance(tree, dict):
        raise InputError("expected a mapping of keys at the top level", source=path)
    return tree


def load_experiment(path: str | os.PathLike, overrides: list[str] | None = None) -> Experiment:
    path = Path(path)
    tree = read_yaml_mapping(path)
    tree = apply_overrides(tree, overrides or [], str(path))
    try:
        return Experiment.model_validate(tree)
    except ValidationError as e:
        raise InputError(format_validation_error(e, str(path))) from None
