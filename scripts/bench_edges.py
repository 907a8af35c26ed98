#!/usr/bin/env python3
"""Feature edges on SmolLM2-135M: Prism (`prism circuit --edges`) against feature-circuits'
approach written with torch autograd (`make_fixtures.edge_reference`: integrated gradients for
the nodes, then one backward pass per downstream node that counts), on the same CPU, prompt
pairs and dictionaries, one after the other in this script.

The pairs are feature-circuits' own `simple_train.json` lines that its `load_examples` keeps with
SmolLM2's tokenizer (fixtures/pairs/feature-circuits/simple_train.smollm2.json), those of the
most common length, the first `--pairs` of them; the dictionaries are random sae-lens
StandardSAEs (`make_fixtures.random_site_saes`) at `--blocks`' attn_out, mlp_out and
resid_post, written in SAELens' layout for Prism. The node threshold is the reference's (near
the 80th percentile of per-pair effects) or `--node-threshold`, passed to Prism. Prints one JSON object: wall time and
peak resident memory of each side (each including its model load), and how far Prism's node
effects and edges are from the reference's (relative to the largest value of each site / link).

    python scripts/bench_edges.py --gguf assets/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --prism target/release/prism [--blocks 10,11,12] [--d-sae 512] [--pairs 8] [--steps 10]
"""
import argparse
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import make_fixtures as mf  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=pathlib.Path, required=True)
    ap.add_argument("--prism", type=pathlib.Path, required=True)
    ap.add_argument("--blocks", default="10,11,12")
    ap.add_argument("--d-sae", type=int, default=512)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--node-threshold", type=float, default=None,
                    help="default: the reference's, near the 80th percentile of per-pair effects; "
                         "0 counts every node, so that no rounding can flip a selection")
    args = ap.parse_args()
    blocks = [int(b) for b in args.blocks.split(",")]

    fc = mf.FIX / "pairs" / "feature-circuits"
    kept = json.loads((fc / "simple_train.smollm2.json").read_text())["kept"]
    lengths = [len(k["clean"]) for k in kept]
    common = max(set(lengths), key=lengths.count)
    chosen = [k for k in kept if len(k["clean"]) == common][: args.pairs]
    lines = (fc / "simple_train.json").read_text().splitlines()

    t0 = time.perf_counter()
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name,
                                                 torch_dtype=torch.float32)
    model.eval()
    load_s = time.perf_counter() - t0
    _, site = mf.hook_sites("smollm2", model)
    clean = torch.tensor([k["clean"] for k in chosen])
    corrupt = torch.tensor([k["corrupt"] for k in chosen])
    answer = torch.tensor([k["answer"] for k in chosen])
    wrong = torch.tensor([k["wrong"] for k in chosen])

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        g = torch.Generator().manual_seed(7)
        saes = mf.random_site_saes("SmolLM2-135M-Instruct", model, site, clean, answer, wrong,
                                   blocks, args.d_sae, g, tmp / "saes")
        t0 = time.perf_counter()
        refs = mf.edge_reference(model, site, saes, clean, corrupt, answer, wrong, False,
                                 args.steps, threshold=args.node_threshold)
        torch_s = time.perf_counter() - t0
        torch_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        threshold = float(refs["threshold"])

        pairs = tmp / "pairs.jsonl"
        pairs.write_text("".join(lines[k["line"] - 1] + "\n" for k in chosen))
        graph = tmp / "circuit.json"
        cmd = ["/usr/bin/time", "-v", str(args.prism), "circuit", "--model", str(args.gguf),
               "--pairs", str(pairs), "--edges", "--direction", "noise", "--node-threshold",
               repr(threshold), "--edge-threshold", "0", "--steps", str(args.steps),
               "--graph", str(graph), "--json"]
        for d in sorted((tmp / "saes").iterdir()):
            cmd += ["--sae", str(d)]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True)
        prism_s = time.perf_counter() - t0
        if run.returncode != 0:
            sys.exit(run.stderr)
        rss = [l for l in run.stderr.splitlines() if "Maximum resident set size" in l]
        prism_rss = int(rss[0].split()[-1]) / 1024 if rss else None
        circuit = json.loads(graph.read_text())

    node_worst = 0.0
    for name, want in refs.items():
        if not name.startswith("nodes."):
            continue
        got = [n["effect"] for n in circuit["nodes"] if n["node"]["hook"] == name[len("nodes."):]]
        scale = float(want.abs().max()) or 1.0
        node_worst = max(node_worst, max(abs(g - float(w)) for g, w in zip(got, want)) / scale)
    weights = {}
    for e in circuit["edges"]:
        if e["to"] == "metric":
            continue
        key = (e["from"]["hook"], e["to"]["hook"])
        unit = lambda n: n["feature"] if n["feature"] is not None else -1
        weights[(key, unit(e["to"]), unit(e["from"]))] = e["weight"]
    worst, per_link = 0.0, {}
    for name, want in refs.items():
        if not name.startswith("edges."):
            continue
        up, down = name[len("edges."):].split(".blocks.")
        key = (up, "blocks." + down)
        m_down, m_up = want.shape[0] - 1, want.shape[1] - 1
        scale = float(want.abs().max()) or 1.0
        for jd in range(m_down + 1):
            for ju in range(m_up + 1):
                got = weights.get((key, jd if jd < m_down else -1, ju if ju < m_up else -1), 0.0)
                diff = abs(got - float(want[jd, ju])) / scale
                worst = max(worst, diff)
                if diff > per_link.get(name, (0.0,))[0]:
                    per_link[name] = (diff, jd, ju, got, float(want[jd, ju]))
    print(json.dumps({
        "pairs": len(chosen), "tokens_per_prompt": common, "blocks": blocks,
        "d_sae": args.d_sae, "ig_steps": args.steps, "node_threshold": threshold,
        "torch": {"edges_s": round(torch_s, 2), "load_s": round(load_s, 2),
                  "peak_rss_mib": round(torch_rss)},
        "prism": {"total_s": round(prism_s, 2),
                  "peak_rss_mib": None if prism_rss is None else round(prism_rss)},
        "edges": len(circuit["edges"]),
        "edges_max_relative_difference": worst,
        "nodes_max_relative_difference": node_worst,
        "threads": torch.get_num_threads(),
        "worst_per_link": {k: v for k, v in per_link.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
