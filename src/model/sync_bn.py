"""BatchNorm over every rank's batch (--sync_bn), so that DDP with batch b on each of n ranks normalises as one process
with batch n x b does. On CUDA it is torch's SyncBatchNorm through timm's converter (as timm's train.py --sync-bn),
which also takes timm's BatchNormAct2d. torch's kernels for it exist on GPUs only, so on the CPU (gloo) each
BatchNorm sums its batch's count, sum and sum of squares over the ranks with a differentiable all-reduce instead:
the same statistics and gradients, a few kernels slower. Either way the parameter and buffer names stay, so
checkpoints load into the plain network."""
from __future__ import annotations

import torch
import torch.distributed as td
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


class AllReduceBatchNorm(_BatchNorm):
    """A BatchNorm of any rank (and what follows it in timm's BatchNormAct2d: its dropout and activation) whose
    training statistics are those of every rank's batch together."""

    def __init__(self, source: _BatchNorm):
        super().__init__(source.num_features, source.eps, source.momentum, source.affine, source.track_running_stats)
        self.load_state_dict({k: v for k, v in source.state_dict().items() if "." not in k})  # its own tensors
        self.drop = getattr(source, "drop", nn.Identity())
        self.act = getattr(source, "act", nn.Identity())

    def _check_input_dim(self, x: torch.Tensor):
        if x.dim() < 2:
            raise ValueError(f"expected a batch of at least 2 dimensions, got {x.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and td.is_initialized() and td.get_world_size() > 1):
            return self.act(self.drop(super().forward(x)))
        xf, dims = x.float(), [0, *range(2, x.dim())]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        local = torch.cat([torch.full((1,), xf.numel() / xf.shape[1], device=x.device), xf.sum(dims),
                           (xf * xf).sum(dims)])
        total = dist_fn.all_reduce(local)  # gradients flow back to every rank's batch
        n, c = total[0], self.num_features
        mean = total[1:1 + c] / n
        var = (total[1 + c:] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1), momentum)
        y = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return self.act(self.drop(y.to(x.dtype)))


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """The model with every BatchNorm synchronised across the process group's ranks."""
    if device.type == "cuda":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, _BatchNorm):
            setattr(model, name, AllReduceBatchNorm(child))
        else:
            sync_batchnorm(child, device)
    return model
