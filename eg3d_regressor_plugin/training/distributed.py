"""Multi-process (DDP) helpers of training: the process group, the device of a rank, means over
ranks, and the check that the ranks ended with the same weights."""

import hashlib
import os

import torch


def torchrun_world():
    """(rank, local_rank, world) when started by torchrun with more than one process, else None."""
    world = int(os.environ.get('WORLD_SIZE', '1') or 1)
    if world <= 1:
        return None
    return int(os.environ.get('RANK', 0)), int(os.environ.get('LOCAL_RANK', 0)), world


def rank_device(device, local_rank):
    return torch.device('cuda', local_rank) if device.type == 'cuda' else torch.device('cpu')


def init_process_group(device, rank, world, init_method):
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    else:  # share the cores, before the process group starts any thread: N processes with all of them each thrash
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.distributed.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=world)


def all_mean(values: dict, device, world):
    """Mean over ranks of a dict of floats (identity on one process)."""
    if world == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist())}


def all_max(value: float, device):
    """The largest of a float over ranks."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t.item())


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for p in model.state_dict().values():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def ranks_identical(model, device, world):
    """(whether every rank holds the weights of this one, this one's sha256)."""
    digest = weights_digest(model)
    t = torch.tensor([int(digest[:15], 16)], dtype=torch.int64, device=device)
    gathered = [torch.zeros_like(t) for _ in range(world)]
    torch.distributed.all_gather(gathered, t)
    return all(int(g) == int(t) for g in gathered), digest
