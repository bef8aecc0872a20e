"""torchrun / DDP helpers. Without torchrun everything degrades to a single process."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as td

from src.model.network import Output


@dataclass
class Dist:
    """This process's place in a torchrun world. The global `rank` decides what a process does (rank 0 alone writes the
    run's files, checkpoints and trackers; each rank takes its shard of the data); `local_rank` only picks the
    device."""
    rank: int = 0  # across every node
    world: int = 1
    local_rank: int = 0  # on this node: the GPU index
    device: torch.device = torch.device("cpu")
    backend: str = ""  # the process group's (nccl or gloo); empty without one
    restarts: int = 0  # how often torchrun restarted the group after a worker died (the most of any node's count)

    @property
    def enabled(self) -> bool:
        """A process group exists: always under torchrun, one rank included (it then trains through DDP and
        the backend as several ranks do), never in a plain process."""
        return bool(self.backend)

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(backend: str = "auto") -> Dist:
    """Read torchrun's environment; pick nccl on GPUs and gloo on CPU unless told otherwise. torchrun's processes
    (TORCHELASTIC_RUN_ID set) always join a process group, so a one-rank torchrun runs the DDP path too."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if (world > 1 or "TORCHELASTIC_RUN_ID" in os.environ) and not td.is_initialized():
        td.init_process_group(backend=("nccl" if cuda else "gloo") if backend == "auto" else backend)
    if td.is_initialized():
        # each node's agent counts its own restarts, and one that restarts only because another node's worker died
        # counts none: the group is restarted when any node's count is
        count = torch.tensor([restarts], device=device)
        td.all_reduce(count, op=td.ReduceOp.MAX)
        restarts = int(count.item())
    return Dist(rank, world, local_rank, device, str(td.get_backend()) if td.is_initialized() else "", restarts)


LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Connection refused")  # gloo's words


def lost_member(error: Exception) -> bool:
    """Whether a collective failed because another rank of the group went away (torch's distributed errors; gloo
    raises a plain RuntimeError naming the broken connection)."""
    return isinstance(error, td.DistError) or any(words in str(error) for words in LOST)


def barrier(dist: Dist):
    if dist.enabled:
        td.barrier()


def broadcast(dist: Dist, obj):
    """Rank 0's value of obj on every rank."""
    if not dist.enabled:
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(dist: Dist, obj) -> list:
    """[rank 0's obj, rank 1's, ...] on every rank."""
    if not dist.enabled:
        return [obj]
    out = [None] * dist.world
    td.all_gather_object(out, obj)
    return out


def gather_rows(dist: Dist, index: torch.Tensor, rows: Output) -> tuple[torch.Tensor, Output]:
    """All ranks' (index, rows of an Output), concatenated and sorted by index, on every rank."""
    if dist.enabled:
        parts = [None] * dist.world
        td.all_gather_object(parts, (index.cpu(), rows.map(torch.Tensor.cpu)))
        index = torch.cat([p[0] for p in parts])
        rows = Output.cat([p[1] for p in parts], 0)
    order = torch.argsort(index)
    return index[order], rows.map(lambda t: t[order])


def sync_buffers(dist: Dist, model: torch.nn.Module):
    """Rank 0's BatchNorm statistics everywhere: each rank's last training step updated its own copy,
    and validation must use the weights that rank 0 saves."""
    if dist.enabled:
        for buf in model.buffers():
            td.broadcast(buf, src=0)


def cleanup():
    if td.is_initialized():
        td.destroy_process_group()
