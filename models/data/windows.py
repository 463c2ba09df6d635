"""Cutting a dataset split into training windows, each preceded by a warm-up stretch.

A window of ``window_samples`` targets is fed ``warmup_samples`` of earlier input first, so the
recurrent state has settled before the loss counts; the warm-up outputs are masked from the loss.
Window positions are fixed (contiguous, non-overlapping), which is what makes teacher features
cacheable: the teacher sees exactly the same input stretch as the student.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.data.datasets import Segment
from models.errors import DatasetError


@dataclass(frozen=True)
class Windows:
    """inputs, targets: (count, warmup + window, 1); knobs: (count, n_knobs)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    knobs: torch.Tensor
    warmup_samples: int

    def __len__(self) -> int:
        return self.inputs.shape[0]


def cut_windows(
    segments: tuple[Segment, ...], window_samples: int, warmup_samples: int, where: str
) -> Windows:
    """Windows from every segment: starts at warm-up + k·window, the input from start − warm-up."""
    span = window_samples + warmup_samples
    inputs, targets, knobs = [], [], []
    for segment in segments:
        n = (len(segment.input) - warmup_samples) // window_samples
        if n <= 0:
            continue
        starts = np.arange(n) * window_samples
        idx = starts[:, None] + np.arange(span)[None, :]
        inputs.append(segment.input[idx])
        targets.append(segment.target[idx])
        knobs.append(np.tile(np.asarray(segment.knobs, dtype=np.float32), (n, 1)))
    if not inputs:
        longest = max((len(s.input) for s in segments), default=0)
        raise DatasetError(
            f"{where}: no window of {window_samples} samples (+ {warmup_samples} warm-up) fits; "
            f"the longest segment has {longest} samples — use more audio or shorter windows"
        )
    return Windows(
        inputs=torch.from_numpy(np.concatenate(inputs).astype(np.float32))[:, :, None],
        targets=torch.from_numpy(np.concatenate(targets).astype(np.float32))[:, :, None],
        knobs=torch.from_numpy(np.concatenate(knobs).astype(np.float32)),
        warmup_samples=warmup_samples,
    )
