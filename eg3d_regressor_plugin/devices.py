"""Choosing the torch device from a --device value."""

import torch

from .errors import UserError


def get_device(name='auto') -> torch.device:
    """'auto' (CUDA when available, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    if name in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise UserError(f'device {name}: no CUDA device is available (torch {torch.__version__}); use --device cpu')
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f'device {name!r}: expected auto, cpu, cuda or cuda:N') from None
