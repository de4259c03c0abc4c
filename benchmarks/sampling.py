"""Sampling throughput: KV-cache decoding vs full recompute at every step, same model, same process.

Both paths draw exactly the same tokens for the same generator (see the tests); they differ in cost:
the cache feeds one token per step through every layer (O(L) attention per step), the recompute path
runs the whole prefix again (O(L^2) per step, O(L^3) per image for dense attention).

    python benchmarks/sampling.py                                  # tiny config, 8x8x3 (sequence 192)
    python benchmarks/sampling.py --resolution 16 --n 2            # sequence 768
    python benchmarks/sampling.py --config 15m --resolution 32 --n 8 --skip-recompute   # GPU
"""

from __future__ import annotations

import argparse
import time

import torch

from lightning_genaug.models.sparse_transformer import SparseTransformer, sparse_transformer_config


def images_per_second(net: SparseTransformer, n: int, use_cache: bool, device: torch.device) -> float:
    positions = torch.arange(net.config.seq_len, device=device).expand(n, -1)
    generator = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    net.generate(net.start_embedding(n), positions, generator=generator, use_cache=use_cache)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=8)
    parser.add_argument("--n", type=int, default=4, help="images sampled in one batch")
    parser.add_argument("--skip-recompute", action="store_true", help="time the KV cache only")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    config = sparse_transformer_config(
        args.config, channels=args.channels, resolution=args.resolution, kernel="sdpa"
    )
    net = SparseTransformer(config).to(device).eval()
    images_per_second(net, 1, True, device)  # warm-up
    cached = images_per_second(net, args.n, True, device)
    print(
        f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
        f"threads: {torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(
        f"config: {args.config} (n_layer={config.n_layer}, n_embd={config.n_embd}), "
        f"sequence {config.seq_len}, batch {args.n}"
    )
    print(f"  KV cache        {cached:10.3f} images/s")
    if not args.skip_recompute:
        recomputed = images_per_second(net, args.n, False, device)
        print(f"  full recompute  {recomputed:10.3f} images/s")
        print(f"  ratio           {cached / recomputed:10.1f}x")


if __name__ == "__main__":
    main()
