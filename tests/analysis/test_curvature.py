"""Curvature of a task's loss in LoRA space: the top Hessian and Gauss-Newton eigenvalues and the Hutchinson trace
against dense float64 matrices built from peft's own forward (full logits, labels -100), on a tiny random LLaMA."""
import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from helpers import tiny_model
from modeconn.analysis.curvature import CurvatureConfig, CurvaturePoint, CurvatureResult, _unfolded, point_curvature
from modeconn.cli import main
from modeconn.evaluator.data import Example, collate, encode
from modeconn.lora.adapters import load_adapter
from modeconn.lora.paths import linear_path

EXAMPLES = [Example("what is two and two?", "four"), Example("capital of france", "paris"),
            Example("say hello", "hello there")]


def _adapter(model, folder, seed):
    """A rank-2 LoRA on one q_proj (256 parameters), scale 4, random A and B, saved by peft."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=2, lora_alpha=8, target_modules=["q_proj"], layers_to_transform=[1], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(folder)
    peft_model.unload()
    return str(folder)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tokenizer):
    model = tiny_model("llama").double()
    folder = _adapter(model, tmp_path_factory.mktemp("a"), 1)
    return model, folder, encode(tokenizer, EXAMPLES, 64), tokenizer


def _dense(model, folder, tokenizer):
    """The loss, dense Hessian and dense GGN (Jᵀ·H_loss·J) of peft's answer NLL in the flattened LoRA parameters."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, folder).double().eval()
    names = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
    params = dict(peft_model.named_parameters())
    shapes = [params[n].shape for n in names]
    flat = torch.cat([params[n].detach().reshape(-1) for n in names])
    batch = collate(encode(tokenizer, EXAMPLES, 64), tokenizer.pad_token_id)
    labels = batch["labels"][:, 1:]
    scored = labels != -100

    def answer_logits(theta):
        pieces = dict(zip(names, (p.view(s) for p, s in zip(torch.split(theta, [s.numel() for s in shapes]), shapes))))
        out = torch.func.functional_call(peft_model, pieces, args=(), kwargs={
            "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}).logits
        return out[:, :-1][scored]

    def loss(theta):
        return torch.nn.functional.cross_entropy(answer_logits(theta), labels[scored])

    with sdpa_kernel(SDPBackend.MATH):
        hessian = torch.autograd.functional.hessian(loss, flat)
        jacobian = torch.func.jacfwd(answer_logits)(flat)  # [tokens, vocab, parameters]
        p = torch.softmax(answer_logits(flat), -1).detach()
        n = p.shape[0]
        ggn = (torch.einsum("tvi,tv,tvj->ij", jacobian, p, jacobian)
               - torch.einsum("tvi,tv,tuj,tu->ij", jacobian, p, jacobian, p)) / n
        value = loss(flat).item()
    peft_model.unload()
    return value, hessian, ggn


def test_eigenvalues_and_trace_match_dense_float64_matrices(setup):
    model, folder, encoded, tokenizer = setup
    found = point_curvature(model, load_adapter(folder), encoded, tokenizer.pad_token_id,
                            config=CurvatureConfig(top_k=3, probes=40), seed=0)
    loss, hessian, ggn = _dense(model, folder, tokenizer)
    assert found["parameters"] == hessian.shape[0] == 256
    assert found["loss"] == pytest.approx(loss, rel=1e-10)
    top_h = torch.linalg.eigvalsh(hessian).flip(0)[:3].tolist()
    top_g = torch.linalg.eigvalsh(ggn).flip(0)[:3].tolist()
    assert found["hessian"] == pytest.approx(top_h, rel=1e-4)
    assert found["ggn"] == pytest.approx(top_g, rel=1e-4)
    assert abs(found["trace"] - hessian.trace().item()) <= 3 * found["trace_se"]
    again = point_curvature(model, load_adapter(folder), encoded, tokenizer.pad_token_id,
                            config=CurvatureConfig(top_k=1, ggn=False, probes=40), seed=0)
    assert again["trace"] == found["trace"]  # the probes come from the seed alone
    loose = point_curvature(model, load_adapter(folder), encoded, tokenizer.pad_token_id,
                            config=CurvatureConfig(top_k=3, probes=None, tol=1e-3), seed=0)
    assert loose["hessian"] == pytest.approx(top_h, rel=1e-3) and loose["ggn"] == pytest.approx(top_g, rel=1e-3)


def test_a_path_point_is_measured_in_the_adapters_own_factors(setup, tmp_path):
    model, folder, encoded, tokenizer = setup
    a, b = load_adapter(folder), load_adapter(_adapter(model, tmp_path / "b", 2))
    config = CurvatureConfig(top_k=1, ggn=False, probes=None)
    own = point_curvature(model, a, encoded, tokenizer.pad_token_id, config=config)
    start = point_curvature(model, _unfolded(linear_path(a, b).at(0.0), a.scaling), encoded, tokenizer.pad_token_id,
                            config=config)
    assert start["hessian"] == pytest.approx(own["hessian"], rel=1e-8)


@pytest.mark.parametrize("args, words", [
    (["--dtype", "bfloat16"], "float32"),
    (["--points", "3"], "--points has no effect without --along"),
    (["--along"], "exactly two adapter folders"),
    (["--tol", "0"], "tol"),
])
def test_curvature_refuses_bad_input_in_one_line(tmp_path, capsys, args, words):
    code = main(["curvature", "checkpoints/seq/news", *args, "--out", str(tmp_path / "cv")])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cv" / "curvature.json").exists()


def test_report_shows_sharpness_against_forgetting(tmp_path):
    from modeconn.continual.metrics import ContinualMetrics
    from modeconn.report.gather import ReportConfig, ReportResults, RunEntry
    from modeconn.report.page import write_run_report

    metrics = ContinualMetrics(["news", "gloss"], accuracy=[[0.8, 0.1], [0.3, 0.9]], loss=[[1.0, 2.0], [1.5, 0.5]])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(metrics.dumps())
    curvature = CurvatureResult([CurvaturePoint("run/news", "news", 0.4, [12.5], [11.0], 30.0, 2.0),
                                 CurvaturePoint("run/gloss", "gloss", 0.3, [3.25], [3.0], 9.0, 1.0)],
                                "tiny-llama", "eval", 1, 20, run=str(tmp_path / "run"))
    results = ReportResults(tmp_path, ReportConfig(), [RunEntry("seq", tmp_path / "run", metrics)],
                            curvature={"seq": curvature})
    page = write_run_report(results).read_text()
    assert "Sharpness of each task minimum against its forgetting" in page
    assert "<td>news</td><td>12.5</td><td>11</td><td>30 ± 2</td><td>-0.500</td>" in page
    assert "<td>gloss</td><td>3.25</td><td>3</td><td>9 ± 1</td><td>—</td>" in page
    assert results.to_json()["sharpness"][0]["forgetting"] == pytest.approx(-0.5)


@pytest.mark.slow
def test_a_run_folder_gives_each_task_minimum_on_its_own_task_and_the_report_shows_it(tmp_path, capsys, embedded):
    import shutil

    from modeconn.continual.metrics import ContinualMetrics
    from modeconn.evaluator.models import checkpoints_dir

    run = tmp_path / "seq"
    tasks = []
    for entry in embedded.tasks[:2]:
        shutil.copytree(embedded.adapter_dir(entry), run / entry.name)
        tasks.append({"name": entry.name, "data": str(embedded.data_dir(entry)), "adapter": entry.name,
                      "metric": entry.metric})
    (run / "sequence.json").write_text(json.dumps({"name": "seq", "base_model": "tiny-llama", "tasks": tasks}))
    metrics = ContinualMetrics([t["name"] for t in tasks], accuracy=[[0.8, 0.0], [0.2, 0.7]], loss=[[1, 3], [2, 1]])
    (run / "metrics.json").write_text(metrics.dumps())
    assert main(["curvature", str(run), "--limit", "2", "--top-k", "1", "--no-ggn", "--no-trace",
                 "--out", str(tmp_path / "cv")]) in (0, None)
    data = json.loads((tmp_path / "cv" / "curvature.json").read_text())
    assert [(p["adapter"], p["task"]) for p in data["points"]] == [(str(run / t["name"]), t["name"]) for t in tasks]
    assert data["run"] == str(run.resolve()) and data["made_by"]["settings"]["top_k"] == 1
    assert (tmp_path / "cv" / "curvature.png").stat().st_size > 0 and (tmp_path / "cv" / "curvature.html").is_file()
    assert not (tmp_path / "cv" / "kept").exists()  # each point kept while it ran, gone once the result was written
    assert main(["report", str(run), "--curvature", str(tmp_path / "cv" / "curvature.json"), "--out", str(tmp_path / "r"),
                 "--no-curves", "--points", "2", "--limit", "2", "--grid", "2"]) in (0, None)
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Sharpness of each task minimum against its forgetting" in page and "-0.600" in page
    capsys.readouterr()
    assert main(["report", str(run), "--curvature", str(tmp_path / "cv" / "curvature.json"), "--curvature",
                 str(checkpoints_dir() / "seq" / "sequence.json"), "--out", str(tmp_path / "r2"), "--no-curves"]) == 2
    assert "not a modeconn result" in capsys.readouterr().err


@pytest.mark.slow
def test_a_stopped_curvature_run_resumes_at_its_next_point_with_the_same_numbers(tmp_path, monkeypatch):
    import modeconn.analysis.curvature as curvature
    from modeconn.analysis.settings import StudySettings
    from modeconn.evaluator.models import checkpoints_dir

    seq = checkpoints_dir() / "seq"
    adapters = [str(seq / "news"), str(seq / "gloss")]
    settings = StudySettings(limit=2, progress=False)
    config = CurvatureConfig(top_k=1, ggn=False, probes=2)
    whole = curvature.measure_curvature(adapters, settings, config)
    real, calls = curvature.point_curvature, []

    def counted(*args, **kwargs):
        calls.append(1)
        if stop and len(calls) == stop:
            raise KeyboardInterrupt  # stopped while measuring this point
        return real(*args, **kwargs)

    monkeypatch.setattr(curvature, "point_curvature", counted)
    keep = tmp_path / "kept"
    stop = 3  # of four points (two adapters, each on both tasks)
    with pytest.raises(KeyboardInterrupt):
        curvature.measure_curvature(adapters, settings, config, keep=str(keep))
    assert len(list(keep.iterdir())) == 2
    stop, calls[:] = None, []
    resumed = curvature.measure_curvature(adapters, settings, config, keep=str(keep))
    assert len(calls) == 2  # the two points left
    assert [p.__dict__ for p in resumed.points] == [p.__dict__ for p in whole.points]
    calls[:] = []
    curvature.measure_curvature(adapters, settings, CurvatureConfig(top_k=1, ggn=False, probes=3), keep=str(keep))
    assert len(calls) == 4  # other settings: every point measured again
