"""Mixed precision: which dtype training and teacher passes autocast to on a device."""
from __future__ import annotations

import torch


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype to autocast to (`train.precision`, the teachers' `precision`), or None for plain fp32.

    auto: fp16 on CUDA (the LSTM loop scales the loss), bf16 on CPUs with native bf16 dot products (AVX512-BF16 or
    AMX: there oneDNN runs our LSTM ~1.6x and the transformer teachers ~3x faster), else fp32 (emulated bf16 is
    slower than fp32). Weights stay fp32; the LSTM's validation and serving run in fp32.
    """
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision fp16 needs CUDA; use bf16 or fp32 on CPU")
        return torch.float16
    if precision == "bf16":
        if device.type == "cpu" and not torch.cpu._is_avx512_supported():
            # oneDNN's bf16 LSTM has no kernel below AVX-512: it fails at the first step with an opaque
            # "could not create a primitive descriptor" (seen on AVX2-only AMD EPYC machines here).
            raise ValueError("precision bf16 needs a CPU with AVX-512 (oneDNN's bf16 LSTM); this CPU has none: "
                             "use precision auto or fp32")
        return torch.bfloat16
    if device.type == "cuda":
        return torch.float16
    native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.bfloat16 if device.type == "cpu" and native_bf16 else None


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to `amp_dtype` (from `autocast_dtype`) on `device`; a disabled, no-op context for None (fp32)."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None)
