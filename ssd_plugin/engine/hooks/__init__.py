from .all_reduce_loss_hook import AllReduceLossHook
from .non_finite_loss_hook import NonFiniteLossHook

__all__ = ['AllReduceLossHook', 'NonFiniteLossHook']
