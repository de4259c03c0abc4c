"""Training throughput of the Sparse Transformer: sparse attention kernels vs dense flash SDPA (causal).

Both variants are the same model (same config, same shapes, same process): the only difference is the
attention of every layer, strided/local sparse patterns with our kernels (flex-attention block masks
on CUDA, masked SDPA on CPU) against dense causal SDPA (``is_causal=True``, flash on CUDA). A step is
forward + backward + AdamW. Rounds alternate the variants; the median round is reported.

    python benchmarks/sparse_attention.py                   # 15m config, 32x32x3 (sequence 3072)
    python benchmarks/sparse_attention.py --quick           # CPU: 4 layers, 16x16x3 (sequence 768)
    python benchmarks/sparse_attention.py --n-layer 8 --resolution 32 --batch 1

On a CPU the sparse path is dense SDPA with a boolean mask: it computes every score, so expect it to
be no faster than dense causal attention there; the sparse speed-up needs the GPU kernels.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from lightning_genaug.models.sparse_transformer import SparseTransformer, sparse_transformer_config


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args: argparse.Namespace, layers: tuple[str, ...], kernel: str, device: torch.device):
    overrides = {"channels": args.channels, "resolution": args.resolution, "attention_layers": layers}
    overrides.update(kernel=kernel, bf16=args.bf16 or device.type == "cuda")
    if args.n_layer:
        overrides["n_layer"] = args.n_layer
    torch.manual_seed(0)
    net = SparseTransformer(sparse_transformer_config(args.config, **overrides)).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    return net, optimizer


def time_steps(net, optimizer, tokens, positions, steps: int) -> float:
    """Seconds per training step (mean over ``steps``)."""
    device = tokens.device
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        logits = net(tokens, positions, net.start_embedding(tokens.shape[0]))
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="15m")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--n-layer", type=int, default=0, help="override the config's depth (0: keep)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (always on for CUDA)")
    parser.add_argument("--quick", action="store_true", help="CPU size: 4 layers, 16x16x3, batch 2, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.n_layer, args.resolution, args.batch, args.rounds, args.steps = 4, 16, 2, 2, 3
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")

    seq_len = args.channels * args.resolution**2
    variants = {
        "sparse (strided/local, auto kernel)": (("strided", "local"), "auto"),
        "dense causal SDPA (flash on GPU)": (("dense",), "sdpa"),
    }
    if device.type == "cuda":
        variants["sparse (strided/local, masked SDPA)"] = (("strided", "local"), "sdpa")
    built = {name: build(args, layers, kernel, device) for name, (layers, kernel) in variants.items()}
    tokens = torch.randint(256, (args.batch, seq_len), device=device)
    positions = torch.arange(seq_len, device=device).expand(args.batch, -1)
    for net, optimizer in built.values():  # warm-up: compilation, mask construction, allocator
        time_steps(net, optimizer, tokens, positions, 1)
    seconds = {name: [] for name in built}
    for _ in range(args.rounds):
        for name, (net, optimizer) in built.items():
            seconds[name].append(time_steps(net, optimizer, tokens, positions, args.steps))

    config = next(iter(built.values()))[0].config
    print(
        f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
        f"threads: {torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(
        f"config: {args.config} with n_layer={config.n_layer}, n_embd={config.n_embd}, "
        f"n_head={config.n_head}, stride={config.attention_stride}; sequence {seq_len}, "
        f"batch {args.batch}, bf16={config.bf16}"
    )
    tokens_per_second = {name: args.batch * seq_len / statistics.median(s) for name, s in seconds.items()}
    dense = tokens_per_second["dense causal SDPA (flash on GPU)"]
    for name, rate in tokens_per_second.items():
        print(f"  {name:40s} {rate:12.0f} tokens/s   {rate / dense:5.2f}x dense")


if __name__ == "__main__":
    main()
