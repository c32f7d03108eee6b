"""HOOKS ``MixedPrecisionHook``: the network under autocast + channels_last (``--amp``)."""

from typing import Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from ..amp import AmpChoice, autocast_network, choose_amp, parse_amp_dtype, remove_autocast_network

__all__ = ['MixedPrecisionHook']


@HOOKS.register_module()
class MixedPrecisionHook(Hook):
    """Run the detector's network in mixed precision for training, validation and testing.

    At the start of the run the hook decides the precision from the model's device
    (:func:`ssd_plugin.engine.amp.choose_amp`) and logs it with its reason, once (a warning for
    bf16 asked for on a CPU that emulates it). Before the
    first training, validation or test iteration (after the checkpoint is loaded) it wraps the
    model's network (:func:`ssd_plugin.engine.amp.autocast_network`): autocast and channels_last
    around backbone, neck and head convolutions; loss and post-processing in float32. float16
    needs a loss scaler, so training stops at the start with a clear error if the optimizer
    wrapper has none (``tools/train.py --amp`` sets ``LossScaleOptimWrapper``). The wrappers are
    taken off after the run.

    Args:
        dtype (str): ``'auto'``, ``'bfloat16'`` or ``'float16'``. Defaults to ``'auto'``.
        channels_last (bool): Weights and images in channels_last format. Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, dtype: str = 'auto', channels_last: bool = True) -> None:
        parse_amp_dtype(dtype)  # an unknown name fails when the config is built
        self.dtype = dtype
        self.channels_last = channels_last
        self.choice: Optional[AmpChoice] = None

    def before_run(self, runner) -> None:
        device = next(runner.model.parameters()).device.type
        self.choice = choose_amp(device, self.dtype, self.channels_last)
        runner.logger.log(self.choice.log_level, self.choice.describe())

    def before_train(self, runner) -> None:
        if self.choice.loss_scale and getattr(runner.optim_wrapper, 'loss_scaler', None) is None:
            raise RuntimeError(
                f'{str(self.choice.dtype)[6:]} autocast needs a loss scaler, and the optimizer '
                f'wrapper ({type(runner.optim_wrapper).__name__}) has none: set '
                f"optim_wrapper.type='LossScaleOptimWrapper' (tools/train.py --amp does)"
            )
        autocast_network(runner.model, self.choice)

    def before_val(self, runner) -> None:
        autocast_network(runner.model, self.choice)

    def before_test(self, runner) -> None:
        autocast_network(runner.model, self.choice)

    def after_run(self, runner) -> None:
        remove_autocast_network(runner.model)
