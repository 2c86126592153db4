"""What machine a benchmark ran on, in figures that explain its speed (imported by the benchmarks).

Sessions of this project land on different hosts of the same kind ("AMD EPYC", 2 vCPUs) whose
vector units differ: the same bfloat16 product ran 2x faster on one than on another. So each
compute-bound benchmark records the CPU and a one-thread matrix-product calibration beside
its figures, and comparisons across runs can tell a code change from a host change.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch

from hilserl_core.accel.precision import cpu_flags, cpu_info

# The product DESIGN.md quotes for the bfloat16 decision: one critic layer at batch 256.
_M, _K, _N = 256, 582, 512


def wall_times_s(fn, repeats: int, warmup: int = 3) -> list:
    """Wall times of ``repeats`` calls of ``fn()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def one_thread_median_s(fn, repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` with torch on one thread (as the nodes run it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return statistics.median(wall_times_s(fn, repeats, warmup))
    finally:
        torch.set_num_threads(threads)


def matmul_gflops(dtype: torch.dtype, repeats: int = 60) -> float:
    """Median one-thread GFLOP/s of a [256, 582] x [582, 512] product in ``dtype``."""
    a, b = torch.randn(_M, _K).to(dtype), torch.randn(_K, _N).to(dtype)
    return 2 * _M * _K * _N / one_thread_median_s(lambda: a @ b, repeats, warmup=5) / 1e9


def describe() -> dict:
    """CPU identity, the vector extensions that decide the compute dtype, and the calibration."""
    info = cpu_info()
    family, model = info.get("cpu family", ""), info.get("model", "")
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_family_model": f"{family}/{model}" if family else "",
        "logical_cpus": os.cpu_count(),
        "cpu_bf16": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"}),
        "cpu_int8": sorted(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"}),  # what the int8 encoder's convs use
        "matmul_gflops_bf16_1thread": round(matmul_gflops(torch.bfloat16), 1),
        "matmul_gflops_fp32_1thread": round(matmul_gflops(torch.float32), 1),
    }


def summary(machine: dict) -> str:
    return (f"{machine['cpu']} (family/model {machine['cpu_family_model'] or '?'}), {machine['logical_cpus']} logical CPUs, "
            f"bf16 {'+'.join(machine['cpu_bf16']) or 'none'}, int8 {'+'.join(machine.get('cpu_int8', [])) or 'none'}; one-thread [256,582]x[582,512] product: "
            f"{machine['matmul_gflops_bf16_1thread']} GFLOP/s bfloat16, {machine['matmul_gflops_fp32_1thread']} float32")
