"""How long does a K-point path sweep take, and does it fit? modeconn's batched evaluator against what a user
would otherwise write, on the same work, in the same run:

  loop-copy     for each t: write φ(t) into a PeftModel (set_peft_model_state_dict), run the eval set
  loop-preload  K adapters loaded up front; for each t: set_adapter, run the eval set
  mixed         K adapters loaded up front; one forward per chunk with adapter_names (peft's mixed-adapter batch)
  modeconn      evaluator.evaluate.path_losses: points folded into the batch, LM head only at scored tokens, shared prefix
  floor         the bare base model (no LoRA at all) on the same K × N sequences, LM head only at the answer tokens:
                the work no LoRA path evaluation can avoid; modeconn / floor is its overhead

Each (model, K, peer) runs in a fresh process, so its peak memory (the rise of max RSS, or CUDA peak allocated
memory, above the level once the base model and the data are loaded: preloaded adapters count) is its own. The losses of all peers are compared (max |Δ| reported and
checked). Each peer's seconds (best of --repeats, wall clock) and tokens/s; the rate of a square matmul in the run's
dtype, measured in the same run, and the share of it each sweep reaches (2 × parameters FLOPs per token). Prints one
JSON line per case and writes benchmarks/results/path_eval.{json,md}.

modeconn / floor has one figure, `modeconn_over_floor_interleaved`: inside the modeconn peer's process, a modeconn
sweep and a floor sweep alternate (at least 9 pairs), fastest of each; on a CPU by the process's CPU time (all its
threads, which time taken by other processes does not inflate), on CUDA by the wall clock after a synchronize. The
ratio of modeconn_seconds to floor_seconds is not one: those come from two processes run one after the other (the
floor's last), best of 2 wall-clock runs each, so on a shared host their ratio carries how busy the host was at two
moments. It was reported as `modeconn_over_floor` and is dropped: the committed CPU table has it scattered from 1.00
to 1.54 with no order in model or K, and at embedded K = 21 it read 1.542 where the alternating pairs, whose own
ratios spanned 1.035–1.073, gave 1.064; the same sweep's wall-clock throughput in that table fell 17% from K = 5 to
K = 21, though both run the same 64-row chunks and a larger K only amortises the set-up better.

    python benchmarks/path_eval.py [--models embedded smollm2 large] [--ks 5 21] [--device cuda --dtype bfloat16]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PEERS = ["loop-copy", "loop-preload", "mixed", "modeconn", "floor"]
# model: (sequences, tokens per sequence): the measurement used 32 × 64; the bigger models use fewer on a CPU
WORK = {"embedded": (32, 64), "smollm2": (8, 64), "large": (8, 64), "1b": (8, 64), "toy": (4, 32)}
LARGE = {"large": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16),
         "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16),
         "toy": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)}  # the dry run
ANSWER = 4  # scored tokens at the end of each sequence (answer + eos)


def build(name: str, device: str):
    """(model, two LoraWeights endpoints, LoRA target modules) for a benchmark model; adapters are random where
    no trained ones exist (timing does not depend on the values)."""
    from peft import LoraConfig, get_peft_model

    from modeconn.lora.adapters import load_adapter
    from modeconn.evaluator.models import checkpoints_dir, load_base

    if name == "embedded":
        model, _ = load_base("tiny-llama")
        ends = [load_adapter(checkpoints_dir() / "seq" / t) for t in ("news", "gloss")]
        return model.to(device), ends
    if name == "smollm2":
        model, _ = load_base("smollm2-135m")
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=32000, num_key_value_heads=LARGE[name]["num_attention_heads"], **LARGE[name])
        model = LlamaForCausalLM(config).eval()
    ends = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"modeconn-bench-{name}-{seed}-{os.getpid()}"
        peft.save_pretrained(folder)
        model = peft.unload()
        ends.append(load_adapter(folder))
    return model.to(device), ends


def work(model, sequences: int, length: int):
    from modeconn.evaluator.data import Encoded

    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(4, vocab, (sequences, length), generator=generator)
    return [Encoded(tuple(row.tolist()), length - ANSWER) for row in ids]


def peft_state(point, prefix: str = "") -> dict:
    """φ(t) (scales folded, scale 1) as the state dict of a peft LoRA with lora_alpha = r."""
    state = {}
    for m, (a, b) in point.folded().items():
        state[f"base_model.model.{m}.lora_A{prefix}.weight"] = a
        state[f"base_model.model.{m}.lora_B{prefix}.weight"] = b
    return state


def full_logits_nll(model, ids, mask, n_prompt: int, **kwargs) -> torch.Tensor:
    """What a user writes: full logits, then the NLL of the answer tokens; returns the summed NLL per row."""
    logits = model(input_ids=ids, attention_mask=mask, **kwargs).logits
    target = ids[:, n_prompt:]
    logp = torch.log_softmax(logits[:, n_prompt - 1 : -1].float(), -1)
    return -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).double().sum(1)


def run_peer(peer: str, name: str, k: int, device: str, dtype: str, repeats: int) -> dict:
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    from modeconn.evaluator.budget import Budget, auto_budget
    from modeconn.evaluator.evaluate import path_losses
    from modeconn.evaluator.head import answer_nll
    from modeconn.evaluator.layer import inject_path
    from modeconn.evaluator.prefix import shared_prefix
    from modeconn.lora.paths import linear_path, uniform_ts

    model, ends = build(name, device)
    model = model.to(getattr(torch, dtype)).requires_grad_(False)  # the base in the precision measured, as --dtype loads it
    sequences, length = WORK[name]
    encoded = work(model, sequences, length)
    path = linear_path(*ends, "factor", base_given=True)
    ts = uniform_ts(k)
    ids = torch.tensor([e.ids for e in encoded], device=device)
    mask = torch.ones_like(ids)
    n_tokens = sequences * ANSWER
    budget = auto_budget(model)
    rows_per_call = max(1, budget // length)
    targets = sorted({m.rsplit(".", 1)[-1] for m in path.modules})
    rank = ends[0].rank(path.modules[0])
    cuda = torch.device(device).type == "cuda"
    if cuda:  # the peer's own memory: what it loads (preloaded adapters count) and what its passes allocate
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    if peer in ("loop-copy", "loop-preload", "mixed"):
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=targets)
        peft = get_peft_model(model, config).eval()
        if peer == "loop-copy":
            points = [path.at(t) for t in ts]  # what the user's loop computes each step; built outside the timing
        else:
            for i, t in enumerate(ts):
                if i:
                    peft.add_adapter(f"p{i}", config)
                set_peft_model_state_dict(peft, peft_state(path.at(t)), adapter_name="default" if i == 0 else f"p{i}")
            names = ["default"] + [f"p{i}" for i in range(1, k)]

    def floor() -> torch.Tensor:
        """K copies of the work through the bare model (no LoRA), chunked to the same budget."""
        with torch.no_grad():
            flat_ids, flat_mask = ids.repeat(k, 1), mask.repeat(k, 1)
            cols = torch.arange(length - ANSWER - 1, length - 1, device=device)
            out = []
            for s in range(0, k * sequences, rows_per_call):
                n = min(rows_per_call, k * sequences - s)
                rows = torch.arange(n, device=device).repeat_interleave(ANSWER)
                targets = flat_ids[s : s + n, length - ANSWER :].reshape(-1)
                out.append(answer_nll(model, flat_ids[s : s + n], flat_mask[s : s + n], targets, rows, cols.repeat(n), n))
            return (torch.cat(out).view(k, sequences).sum(1) / n_tokens).cpu()

    def timed(run, clock=time.perf_counter) -> float:
        start = clock()
        run()
        if cuda:
            torch.cuda.synchronize()
        return clock() - start

    def once() -> torch.Tensor:
        with torch.no_grad():
            if peer == "modeconn":
                with inject_path(model, path) as injected, shared_prefix(model, path.modules) as repeat:
                    coeffs = path.coefficients(ts).float()
                    return path_losses(model, encoded, coeffs, injected, 0, Budget(budget), None, repeat).cpu()
            if peer == "floor":
                return floor()
            totals = torch.zeros(k, dtype=torch.float64)
            if peer == "mixed":
                flat_ids, flat_mask = ids.repeat(k, 1), mask.repeat(k, 1)
                labels = [n for n in names for _ in range(sequences)]
                out = torch.cat([full_logits_nll(peft, flat_ids[s : s + rows_per_call], flat_mask[s : s + rows_per_call],
                                                 length - ANSWER, adapter_names=labels[s : s + rows_per_call])
                                 for s in range(0, k * sequences, rows_per_call)])
                return (out.view(k, sequences).sum(1) / n_tokens).cpu()
            for i in range(k):
                if peer == "loop-copy":
                    set_peft_model_state_dict(peft, peft_state(points[i]))
                else:
                    peft.set_adapter(names[i])
                for s in range(0, sequences, rows_per_call):
                    totals[i] += full_logits_nll(peft, ids[s : s + rows_per_call], mask[s : s + rows_per_call], length - ANSWER).sum().cpu()
            return totals / n_tokens

    losses = once()  # warm-up (and the numbers compared across peers)
    best = min(timed(once) for _ in range(repeats))
    peak = (torch.cuda.max_memory_allocated() - base_mem) if cuda else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) * 1024
    record = {"seconds": best, "losses": losses.tolist(), "peak_extra_mb": peak / 2**20,
              "tokens_per_second": k * sequences * length / best}
    if peer == "modeconn":  # the overhead over the floor, from alternating runs in this process: host noise hits both;
        # on a CPU the process's CPU time (which time stolen by the host does not count) rather than the wall clock;
        # the fastest of each (noise only ever adds time), from 9 alternating runs
        floor()
        clock = time.perf_counter if cuda else time.process_time
        pairs = [(timed(once, clock), timed(floor, clock)) for _ in range(max(9, repeats))]
        ratios = sorted(m / f for m, f in pairs)
        record["over_floor_interleaved"] = min(m for m, _ in pairs) / min(f for _, f in pairs)
        record["over_floor_range"] = [ratios[0], ratios[-1]]
        record["over_floor_clock"] = "wall clock" if cuda else "process CPU time"
    return record


def matmul_rate(device: str, dtype: str, size: int) -> float:
    """FLOP/s of a size³ matmul in ``dtype`` on ``device``, fastest of 5 timed groups after a warm-up: the ceiling the
    sweeps' achieved FLOP/s are compared to."""
    a = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    reps = 20 if cuda else 3
    for _ in range(3):
        a @ a
    sync()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            a @ a
        sync()
        best = min(best, time.perf_counter() - start)
    del a
    if cuda:
        torch.cuda.empty_cache()  # the peers' processes get the memory back
    return reps * 2 * size**3 / best


def model_flops(name: str, k: int) -> float:
    """Forward FLOPs of the work: 2 × (non-embedding parameters) per token, plus the LM head at scored tokens."""
    from modeconn.evaluator.models import load_base

    sequences, length = WORK[name]
    sizes = {n: (c["num_hidden_layers"] * (4 * c["hidden_size"] ** 2 + 3 * c["hidden_size"] * c["intermediate_size"]),
                 c["hidden_size"] * 32000) for n, c in LARGE.items()}
    if name in sizes:
        body, head = sizes[name]
    else:
        model, _ = load_base("tiny-llama" if name == "embedded" else "smollm2-135m")
        head = model.get_output_embeddings().weight.numel()
        body = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
    return 2 * k * sequences * (length * body + ANSWER * head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["embedded", "smollm2", "large"], choices=list(WORK))
    parser.add_argument("--ks", nargs="+", type=int, default=[5, 21])
    parser.add_argument("--peers", nargs="+", default=PEERS, choices=PEERS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=None, help="eval sequences per model (default: 32 embedded, 8 others)")
    parser.add_argument("--matmul-size", type=int, default=None, help="side of the measured matmul (default: 8192 on CUDA, 1024 otherwise)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "path_eval")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "K", "PEER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sequences:
        for name in WORK:
            WORK[name] = (args.sequences, WORK[name][1])
    if args.child:
        name, k, peer = args.child
        print(json.dumps(run_peer(peer, name, int(k), args.device, args.dtype, args.repeats)))
        return
    size = args.matmul_size or (8192 if torch.device(args.device).type == "cuda" else 1024)
    ceiling = {"dtype": args.dtype, "size": size, "flops_per_second": matmul_rate(args.device, args.dtype, size)}
    cases = []
    for name in args.models:
        for k in args.ks:
            peers = {}
            for peer in args.peers:
                cmd = [sys.executable, __file__, "--child", name, str(k), peer, "--device", args.device, "--dtype", args.dtype,
                       "--repeats", str(args.repeats), "--sequences", str(WORK[name][0])]
                done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                if done.returncode != 0:
                    sys.exit(f"{name} K={k} {peer} failed:\n{done.stderr[-2000:]}")
                peers[peer] = json.loads(done.stdout.strip().splitlines()[-1])
            reference = peers.get("loop-copy", next(iter(peers.values())))["losses"]
            diff = max(abs(x - y) for p, v in peers.items() if p != "floor" for x, y in zip(v["losses"], reference))
            tolerance = 1e-4 if args.dtype == "float32" else 5e-2
            case = {"model": name, "K": k, "sequences": WORK[name][0], "tokens": WORK[name][1], "device": args.device,
                    "dtype": args.dtype, "max_loss_difference": diff, "losses_agree": diff <= tolerance,
                    **{f"{p}_seconds": round(v["seconds"], 4) for p, v in peers.items()},
                    **{f"{p}_peak_extra_mb": round(v["peak_extra_mb"], 1) for p, v in peers.items()},
                    **{f"{p}_tokens_per_second": round(v["tokens_per_second"]) for p, v in peers.items()}}
            if "modeconn" in peers:
                mine = peers["modeconn"]["seconds"]
                loops = [peers[p]["seconds"] for p in ("loop-copy", "loop-preload") if p in peers]
                if loops:
                    case["loop_over_modeconn"] = round(min(loops) / mine, 3)  # against the faster of the two loops
                if "mixed" in peers:
                    case["mixed_over_modeconn"] = round(peers["mixed"]["seconds"] / mine, 3)
                # the overhead of carrying K path points over the bare model's work, from alternating runs in one
                # process (fastest of each; see the docstring for why mine / floor_seconds is not reported)
                case["modeconn_over_floor_interleaved"] = round(peers["modeconn"]["over_floor_interleaved"], 3)
                case["modeconn_over_floor_range"] = [round(x, 3) for x in peers["modeconn"]["over_floor_range"]]
                case["modeconn_over_floor_clock"] = peers["modeconn"]["over_floor_clock"]
                if loops:
                    fastest = min(("loop-copy", "loop-preload"), key=lambda p: peers[p]["seconds"] if p in peers else 1e9)
                    case["memory_over_loop"] = round(peers["modeconn"]["peak_extra_mb"] / max(peers[fastest]["peak_extra_mb"], 1.0), 2)
            flops = model_flops(name, k)
            for p in ("modeconn", "floor", "mixed"):
                if p in peers:
                    case[f"{p}_flops_fraction"] = round(flops / peers[p]["seconds"] / ceiling["flops_per_second"], 4)
            print(json.dumps(case), flush=True)
            cases.append(case)
            if not case["losses_agree"]:
                sys.exit(f"losses disagree by {diff:g} on {name} K={k}")
    write(args, cases, ceiling)


def write(args, cases: list[dict], ceiling) -> None:
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__, "device": args.device}
    machine["matmul"] = ceiling
    if torch.device(args.device).type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"machine": machine, "cases": cases}, indent=2) + "\n")
    lines = [f"Path evaluation, {machine['processor']} ({machine['cpus']} CPUs, {machine['threads']} threads), torch {machine['torch']}, "
             f"device {args.device}, {args.dtype}. Seconds for the whole K-point sweep (best of {args.repeats}, after a warm-up); "
             "peak memory above the level with the base model and data loaded; modeconn / floor from alternating runs in one "
             f"process ({cases[0].get('modeconn_over_floor_clock', '-') if cases else '-'}; fastest of each, the range of the "
             f"pairs' ratios in brackets). A {ceiling['size']}³ {args.dtype} matmul ran at "
             f"{ceiling['flops_per_second'] / 1e9:.1f} GFLOP/s; modeconn reached the share of it in the last column.", "",
             "| model | K | loop-copy s | loop-preload s | mixed s | modeconn s | floor s | loop / modeconn | mixed / modeconn | "
             "modeconn / floor (alternating) | modeconn MB | loop MB | max Δloss | modeconn FLOP share |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        loop_mb = min(c.get("loop-copy_peak_extra_mb", 1e9), c.get("loop-preload_peak_extra_mb", 1e9))
        lines.append(f"| {c['model']} | {c['K']} | {c.get('loop-copy_seconds', '-')} | {c.get('loop-preload_seconds', '-')} | "
                     f"{c.get('mixed_seconds', '-')} | {c.get('modeconn_seconds', '-')} | {c.get('floor_seconds', '-')} | "
                     f"{c.get('loop_over_modeconn', '-')}× | {c.get('mixed_over_modeconn', '-')}× | "
                     f"{c.get('modeconn_over_floor_interleaved', '-')}× ({'–'.join(map(str, c.get('modeconn_over_floor_range', [])))}) | "
                     f"{c.get('modeconn_peak_extra_mb', '-')} | {loop_mb} | "
                     f"{c['max_loss_difference']:.1e} | {c.get('modeconn_flops_fraction', '-')} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
