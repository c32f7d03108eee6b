"""Find the tensors of a state dict that hold NaN or Inf."""

from typing import Iterable, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['NonFiniteTensors', 'find_non_finite']


class NonFiniteTensors(NamedTuple):
    """The first non-finite tensor of a state dict (in its order) and how many there are."""

    first: str
    value: str  # 'nan' or 'inf', what ``first`` holds
    count: int


def find_non_finite(named_tensors: Iterable[Tuple[str, Tensor]]) -> Optional[NonFiniteTensors]:
    """The floating-point tensors among ``named_tensors`` that hold a NaN or an Inf.

    One device-to-host copy in all (not one per tensor), so it is cheap on a GPU.

    Args:
        named_tensors: ``(name, tensor)`` pairs, e.g. ``state_dict().items()``; entries that are
            not floating-point tensors (counters, metadata) are skipped.

    Returns:
        NonFiniteTensors | None: None when every tensor is finite.
    """
    names, tensors = [], []
    for name, tensor in named_tensors:
        if isinstance(tensor, Tensor) and (tensor.is_floating_point() or tensor.is_complex()):
            names.append(name)
            tensors.append(tensor.detach())
    if not tensors:
        return None
    device = tensors[0].device
    finite = torch.stack([torch.isfinite(t).all().to(device) for t in tensors])
    bad = (~finite).nonzero().flatten().tolist()
    if not bad:
        return None
    first = tensors[bad[0]]
    return NonFiniteTensors(names[bad[0]], 'nan' if torch.isnan(first).any() else 'inf', len(bad))
