"""The devices we estimate, as data: one registered :class:`DeviceModel` each.

An estimated device is added here: register its datasheet parameters, add its published
latencies to ``anchors.csv`` if there are any, and write the tables
(``python -m latency_predictors.estimate latency_predictors/tables``).

A-priori device parameters (datasheet values; the efficiencies and overheads below are modelling
choices, so the error on the x86 host is an honest out-of-sample figure). The shipped ``a100``,
``vpu`` and ``cortex-a76`` tables do not use these efficiencies and overheads: they are fitted
on published batch-1 latencies of published nets (``latency_predictors.estimate.anchors``,
``anchors.csv``; the fitted values and the leave-one-out error are in each table's ``anchoring``
and ``model`` metadata). ``h100`` has no anchors and keeps them (a-priori, unanchored):

- ``a100``: NVIDIA A100 SXM4 40GB datasheet: FP32 19.5 TFLOPS (non-tensor-core), HBM2
  1555 GB/s, 40 MB L2 (cache bandwidth taken as ~3x HBM, a common microbenchmark figure).
  fp32, batch 1: kernels are launch-bound; node overhead 5 µs (CUDA kernel launch + runtime
  dispatch in eager/ORT-CUDA execution), inference overhead 20 µs.
- ``h100``: NVIDIA H100 SXM5 80GB datasheet: FP32 67 TFLOPS, HBM3 3.35 TB/s, 50 MB L2 (cache
  ~3x HBM). Node overhead 4 µs, inference overhead 20 µs. Replace it by a measured table:
  ``hwnas profile --backend torch --ep cuda --name h100`` on the H100.
- ``vpu``: Intel Movidius Myriad X (MA2485, in the Neural Compute Stick 2), Intel/Movidius
  launch material: Neural Compute Engine "over 1 TOPS" (fp16), 16 SHAVE 128-bit VLIW vector
  cores (~700 MHz: 16 x 8 fp16 lanes x 2 FLOP x 0.7 GHz = 179 GFLOPS) for the layers the NCE
  does not run (depthwise, element-wise), 2.5 MB on-chip CMX memory at up to 450 GB/s,
  in-package LPDDR4 (taken as 1 x32 channel at 3200 MT/s = 12.8 GB/s: an assumption, the
  datasheet gives no figure). fp16 tensors. Node overhead 30 µs (per-layer SHAVE dispatch),
  inference overhead 1500 µs (USB 3 transfer of the input and result + host runtime).
- ``cortex-a76``: a Raspberry Pi 5 class SoC (BCM2712, 4 x Cortex-A76 @ 2.4 GHz): each A76 has
  two 128-bit NEON FMA pipes = 16 FP32 FLOP/cycle (Arm Cortex-A76 TRM), 4 cores = 153.6
  GFLOPS; LPDDR4X-4267 x32 = 17 GB/s; 2 MB shared L3 (cache bandwidth taken as 4x DRAM).
  Node overhead 10 µs (TFLite/ORT CPU op dispatch with a thread pool), inference 50 µs.
- ``x86``: the project's first development host, from ``lscpu`` (AMD EPYC, Zen 3, family 25,
  2 cores, ``avx2`` + ``fma`` flags: two 256-bit FMA pipes = 32 FP32 FLOP/cycle; BogoMIPS
  4890.86 = 2 x 2445 MHz; L2 1 MB per core, L3 32 MB). Profiled with 1 thread: peak 78.2
  GFLOPS; cache bandwidth 32 B/cycle = 78 GB/s (Zen 3 L2/L3 per-core load bandwidth), DRAM
  20 GB/s per core (assumption).
  Node overhead 3 µs (ORT CPU kernel dispatch), inference overhead 15 µs (session.run).

Efficiencies (all devices unless noted): dense 0.5 (vendor GEMM/conv libraries reach 50-80 %
of peak on large problems; batch-1 layers are small), depthwise 0.1 (little reuse, vectorises
poorly), element-wise 0.25; mem_eff 0.6. VPU: dense 0.3 of the NCE, depthwise and element-wise
run on the SHAVEs (0.18 of the NCE peak x 0.5), GPUs: dense 0.3 (batch-1 convolutions leave most
SMs idle).

"""

from __future__ import annotations

from hwnas_common import Registry

from .roofline import DeviceModel

DEVICE_MODELS: Registry[DeviceModel] = Registry("analytical device")
for _model in (
    DeviceModel("a100", "NVIDIA A100 SXM4 40GB, fp32/TF32, framework kernels", 19_500, 1555,
                4665, 40, 5.0, 20.0, eff={"dense": 0.3, "depthwise": 0.1, "elementwise": 0.25},
                fuse_activations=True),
    DeviceModel("h100", "NVIDIA H100 SXM5 80GB, fp32, eager/ORT-CUDA kernels", 67_000, 3350,
                10_050, 50, 4.0, 20.0, eff={"dense": 0.3, "depthwise": 0.1, "elementwise": 0.25},
                table_note="; not yet measured on an H100: a measured table "
                           "from `hwnas profile --backend torch --ep cuda --name h100` on the "
                           "H100 replaces it (bench/gpu_tables.sh)"),
    DeviceModel("vpu", "Intel Myriad X VPU (NCS2), fp16, OpenVINO MYRIAD plugin", 1000, 12.8,
                450, 2.5, 30.0, 1500.0, dtype_bytes=2,
                eff={"dense": 0.3, "depthwise": 0.09, "elementwise": 0.09}, fuse_activations=True),
    DeviceModel("cortex-a76", "Arm Cortex-A76 CPU (Pixel 4 / Raspberry Pi 5 class), fp32",
                153.6, 17, 68, 2, 10.0, 50.0, fuse_activations=True),
    DeviceModel("x86", "AMD EPYC (Zen 3) guest, 1 thread, fp32, onnxruntime CPU EP", 78.2,
                20, 78, 32, 3.0, 15.0, ships_table=False),
):
    DEVICE_MODELS.register(_model.name, _model)
