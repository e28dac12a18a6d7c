"""Malformed input: every case is one line on stderr naming the culprit, exit 2, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from conftest import ROOT


def _beir(root: Path, *, corpus=None, queries=None, qrels=None) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = corpus if corpus is not None else [
        json.dumps({"_id": f"d{i}", "title": f"title {i}", "text": f"ocean buoy data number {i}"}) for i in range(5)]
    queries = queries if queries is not None else [json.dumps({"_id": "q1", "text": "ocean buoy"}),
                                                    json.dumps({"_id": "q2", "text": "buoy data"})]
    qrels = qrels if qrels is not None else ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t1"]
    (root / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(queries) + "\n")
    if qrels is not False:
        (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return root


def _config(tmp_path: Path, beir: Path | None = None, **extra) -> dict:
    tree = {"name": "bad", "results_dir": str(tmp_path / "results"),
            "data": [{"name": "mini", "loader": "beir", "path": str(beir or tmp_path / "beir")}],
            "splits": {"scheme": "none"}}
    tree.update(extra)
    return tree


def _write(tmp_path: Path, tree) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(tree if isinstance(tree, str) else yaml.safe_dump(tree, sort_keys=False))
    return path


CASES = {
    # name: (setup(tmp_path) -> argv, substring expected in the error line)
    "bad YAML": (lambda t: ["data", _write(t, "name: [unclosed\n")], "invalid YAML"),
    "unknown top-level key": (lambda t: ["data", _write(t, {**_config(t, _beir(t / "beir")), "colour": 1})],
                              "colour: unknown key"),
    "unknown nested key": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir"), retrieve={"k_1": 1}))],
                           "retrieve.k_1: unknown key"),
    "wrong type": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir"), retrieve={"k1": "high"}))],
                   "retrieve.k1"),
    "missing required key": (lambda t: ["data", _write(t, {"name": "x"})], "data: required key is missing"),
    "unknown loader": (lambda t: ["data", _write(t, {"name": "x", "data": [{"name": "a", "loader": "csv"}]})],
                       "unknown loader"),
    "missing config file": (lambda t: ["data", t / "nope.yaml"], "config file not found"),
    "split fractions": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir"),
                                                             splits={"train": 0.9, "valid": 0.2, "test": 0.1}))],
                        "must sum to 1"),
    "bad --set": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir"))), "--set", "retrieve.k1"],
                  "expected key=value"),
    "--set unknown key": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir"))), "--set", "retrieve.kk=2"],
                          "retrieve.kk: unknown key"),
    "missing data folder": (lambda t: ["data", _write(t, _config(t, t / "absent"))], "is not a directory"),
    "bad JSON line": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", corpus=[
        json.dumps({"_id": "d1", "text": "a"}), '{"_id": "d2", "text": ']), ))], "corpus.jsonl:2: bad JSON line"),
    "missing field": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", corpus=[
        json.dumps({"_id": "d1", "text": "a"}), json.dumps({"text": "b"})])))], "corpus.jsonl:2: missing field '_id'"),
    "missing qrels file": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", qrels=False)))],
                           "qrels file not found"),
    "qrels name unknown document": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", qrels=[
        "query-id\tcorpus-id\tscore", "q1\tghost\t1"])))], "unknown document 'ghost'"),
    "qrels name unknown query": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", queries=[
        json.dumps({"_id": "q1", "text": "x"})], qrels=["q-id\tc-id\tscore", "q1\td1\t1", "q9\td1\t1"])))],
                                 "q9"),
    "duplicate document ids": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", corpus=[
        json.dumps({"_id": "d1", "text": "a"}), json.dumps({"_id": "d1", "text": "b"})])))],
                               "corpus.jsonl:2: duplicate document id 'd1'"),
    "duplicate query ids": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", queries=[
        json.dumps({"_id": "q1", "text": "a"}), json.dumps({"_id": "q1", "text": "b"})])))],
                            "duplicate query id 'q1'"),
    "empty corpus": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", corpus=[""])))], "corpus is empty"),
    "wrong column count": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", qrels=[
        "query-id\tcorpus-id\tscore", "q1\td1"])))], "test.tsv:2: qrels line has 2 columns"),
    "non-integer relevance": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", qrels=[
        "query-id\tcorpus-id\tscore", "q1\td1\thigh"])))], "relevance 'high' is not an integer"),
    "duplicate judgement": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", qrels=[
        "query-id\tcorpus-id\tscore", "q1\td1\t1", "q1\td1\t0"])))], "duplicate judgement"),
    "unknown measure": (lambda t: ["evaluate", _write(t, _config(t, _beir(t / "beir"),
                                                                 evaluate={"measures": ["nDCG@10", "Bogus@3"]}))],
                        "unknown measure 'Bogus@3'"),
    "unknown model": (lambda t: ["run", _write(t, _config(t, _beir(t / "beir"), rerank={
        "systems": [{"name": "m", "model": "no-such-model"}]}))], "unknown model 'no-such-model'"),
    "duplicate source names": (lambda t: ["data", _write(t, {**_config(t, _beir(t / "beir")), "data": [
        {"name": "a", "loader": "demo"}, {"name": "a", "loader": "demo"}]})], "must be unique"),
    "run file with bad columns": (lambda t: ["data", _write(t, _trec_dl(t, run_line="q1 Q0 d1 1 2.0"))],
                                  "run line has 5 columns"),
}


def _trec_dl(t: Path, run_line: str, qrels: str = "q1 0 d1 1\n") -> dict:
    cands = [{"query": "ocean", "hits": [{"qid": "q1", "docid": "d1", "content": "ocean text", "rank": 1,
                                          "score": 2.0}]}]
    (t / "cands.json").write_text(json.dumps(cands))
    (t / "qrels.txt").write_text(qrels)
    (t / "run.trec").write_text(run_line + "\n")
    return {"name": "bad", "results_dir": str(t / "results"), "splits": {"scheme": "none"},
            "data": [{"name": "dl", "loader": "trec-dl", "candidates": str(t / "cands.json"),
                      "qrels": str(t / "qrels.txt"), "run": str(t / "run.trec")}]}


def _raw(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _beir_raw(t: Path, corpus: bytes) -> Path:
    root = _beir(t / "beir")
    _raw(root / "corpus.jsonl", corpus)
    return root


# The failures a session found on a fresh clone (issue 10): each one crashed with a traceback, was
# accepted, blamed the wrong file, or left folders behind.
CASES.update({
    "corpus with invalid UTF-8": (lambda t: ["data", _write(t, _config(t, _beir_raw(
        t, b'{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "caf\xe9 \xff"}\n')))],
        "corpus.jsonl:2: not valid UTF-8"),
    "document id null": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", corpus=[
        json.dumps({"_id": "d1", "text": "a"}), json.dumps({"_id": None, "text": "b"})])))],
        "corpus.jsonl:2: field '_id' must be a string or an integer id, got null"),
    "empty query text": (lambda t: ["run", _write(t, _config(t, _beir(t / "beir", queries=[
        json.dumps({"_id": "q1", "text": ""}), json.dumps({"_id": "q2", "text": "buoy data"})])))],
        "queries.jsonl:1: field 'text' is empty"),
    "query text not a string": (lambda t: ["data", _write(t, _config(t, _beir(t / "beir", queries=[
        json.dumps({"_id": "q1", "text": ["a", "list"]})])))], "queries.jsonl:1: field 'text' must be a string"),
    "qrels name an unknown document (file and line)": (lambda t: ["data", _write(t, _config(t, _beir(
        t / "beir", qrels=["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\tghost\t1"])))],
        "qrels/test.tsv:3: qrels for query 'q2' name unknown document 'ghost'"),
    "qrels name an unknown query (file and line)": (lambda t: ["data", _write(t, _config(t, _beir(
        t / "beir", qrels=["query-id\tcorpus-id\tscore", "q1\td1\t1", "q7\td2\t1"])))],
        "qrels/test.tsv:3: qrels name unknown query 'q7'"),
    "run file with foreign query ids blames the run file": (
        lambda t: ["data", _write(t, _trec_dl(t, run_line="q9 Q0 d1 1 2.0 bm25"))],
        "run.trec:1: run names unknown query 'q9'"),
    "run file naming an unknown document": (
        lambda t: ["data", _write(t, _trec_dl(t, run_line="q1 Q0 d7 1 2.0 bm25"))],
        "run.trec:1: run names unknown document 'd7'"),
    "run score not finite": (lambda t: ["data", _write(t, _trec_dl(t, run_line="q1 Q0 d1 1 nan bm25"))],
                             "run.trec:1: run score 'nan' is not a finite number"),
    "a directory where a file is expected": (lambda t: ["data", _write(t, {**_trec_dl(t, "q1 Q0 d1 1 2 x"), "data": [
        {"name": "dl", "loader": "trec-dl", "candidates": str(t), "qrels": str(t / "qrels.txt")}]})],
        "is a directory, expected a file"),
    "results_dir under a file": (lambda t: ["run", _write(t, {**_config(t, _beir(t / "beir")),
                                                              "results_dir": str(_raw(t / "afile", b"x") / "results")})],
                                 "results_dir: cannot create"),
    "system named BM25": (lambda t: ["run", _write(t, _config(t, _beir(t / "beir"), rerank={
        "systems": [{"name": "BM25", "model": "tiny-qwen2"}]}))], "'BM25' is the first stage's name"),
    "duplicate system names": (lambda t: ["run", _write(t, _config(t, _beir(t / "beir"), rerank={
        "systems": [{"name": "m", "model": "tiny-qwen2"}, {"name": "m", "model": "tiny-llama"}]}))],
        "system names must be unique, repeated: m"),
    "a system named like a trained cell": (lambda t: ["run", _write(t, {**_config(t, _beir(t / "beir")),
        "splits": {"scheme": "random"}, "rerank": {"systems": [{"name": "tiny-qwen2-sft", "model": "tiny-qwen2"}]},
        "train": {"models": [{"model": "tiny-qwen2"}], "methods": ["sft"]}})], "tiny-qwen2-sft is used by two systems"),
    "dataset split scheme without dataset splits": (lambda t: ["data", _write(t, {**_config(t, _beir(t / "beir")),
                                                                                  "splits": {"scheme": "dataset"}})],
                                                    "splits.scheme: 'dataset' but data source 'mini' defines no splits"),
    "truncated gzip": (lambda t: ["data", _write(t, {**_config(t, _beir(t / "beir")), "data": [
        {"name": "b", "loader": "bright", "domain": "biology",
         "examples": str(_raw(t / "ex.jsonl.gz", __import__("gzip").compress(b'{"id": "q1", "query": "x"}\n')[:-12])),
         "documents": str(_raw(t / "docs.jsonl", b'{"id": "d1", "content": "x"}\n'))}]})], "ex.jsonl.gz"),
})


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    setup, expected = CASES[case]
    argv = [str(a) for a in setup(tmp_path)]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("rerank-bench: error: "), err
    assert expected in err[0], err[0]
    assert not (tmp_path / "results").exists(), "a rejected input must not leave files or folders behind"


def test_leaderboard_html_onto_an_existing_file_is_one_line_and_exit_2(tmp_path, write_config, capsys):
    target = _raw(tmp_path / "site.html", b"<html></html>")
    cfg = write_config({**_config(tmp_path, _beir(tmp_path / "beir"))})
    assert main(["leaderboard", str(cfg), "--html", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--html" in err[0] and "site.html" in err[0] and "not a directory" in err[0], err
    assert target.read_bytes() == b"<html></html>"
    assert not (tmp_path / "results").exists()


def test_schema_piped_into_head_exits_cleanly(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(f"{sys.executable} -m bench.cli schema | head -3", shell=True, capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0
    assert out.stdout.splitlines()[:2] == ["{", ' "title": "Experiment",'], out.stdout
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


def test_a_stage_that_fails_leaves_nothing_a_later_run_would_reuse(tmp_path, write_config, capsys):
    """Queries made of stopwords only: BM25 finds nothing; no retrieve artifact may be cached."""
    root = _beir(tmp_path / "beir", queries=[json.dumps({"_id": "q1", "text": "the of and"}),
                                             json.dumps({"_id": "q2", "text": "to be or"})])
    cfg = write_config(_config(tmp_path, root))
    assert main(["retrieve", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "found no document for any query" in err[0], err
    assert not (tmp_path / "results").exists()
    _beir(tmp_path / "beir")  # fixed queries: the next run computes (and caches) retrieve from scratch
    assert main(["retrieve", str(cfg)]) == 0
    assert list((tmp_path / "results" / "bad" / "retrieve").glob("*/_DONE.json"))


def test_real_entry_point_exits_2_on_bad_config(tmp_path, cli):
    out = cli("data", _write(tmp_path, "name: [unclosed\n"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "invalid YAML" in out.stderr


def test_usage_error_exits_2(cli):
    out = cli("no-such-command")
    assert out.returncode == 2
