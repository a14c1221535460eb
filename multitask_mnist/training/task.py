"""The model and its loss as one module, as timm's ``TrainingTask``."""

from __future__ import annotations

from torch import Tensor, nn

from multitask_mnist.data import DigitSample
from multitask_mnist.losses import MultiLossOutput, WeightedMultiLoss
from multitask_mnist.models import MultiTaskNet, MultiTaskOutput

__all__ = ["TrainingTask"]


class TrainingTask(nn.Module):
    """A :class:`~multitask_mnist.models.MultiTaskNet` and its loss in one module.

    The Trainer optimizes this module and wraps it in DDP whole: learned loss
    weights are trained and averaged across processes like any other weight, with no
    special case in the loop (checkpoints keep the model's and the loss's states).

    In training mode the true digit teacher-forces the adder (see
    :meth:`~multitask_mnist.models.MultiTaskNet.forward`); in eval mode the model
    sees the inputs alone.

    Args:
        model: The network.
        loss: The loss and its weighting strategy.

    Shapes:
        ``forward(batch, image)``: a batched :class:`~multitask_mnist.data.DigitSample`
        and its ``image`` ``(B, 1, 28, 28)`` (in the memory format the Trainer chose)
        -> (:class:`~multitask_mnist.models.MultiTaskOutput`,
        :class:`~multitask_mnist.losses.MultiLossOutput`).

    Example:
        >>> import torch
        >>> from multitask_mnist import presets
        >>> task = TrainingTask(presets.mnist_sum(), WeightedMultiLoss())
        >>> batch = DigitSample(torch.zeros(2, 1, 28, 28), torch.tensor([1, 2]),
        ...                     torch.tensor([3, 4]), torch.tensor([4, 6]))
        >>> output, loss = task(batch, batch.image)
        >>> output.adder is not None, loss.total.shape
        (True, torch.Size([]))
    """

    model: MultiTaskNet
    loss: WeightedMultiLoss

    def __init__(self, model: MultiTaskNet, loss: WeightedMultiLoss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch: DigitSample, image: Tensor) -> tuple[MultiTaskOutput, MultiLossOutput]:
        """Predict and score one batch."""
        digit = batch.digit if self.training else None
        output = self.model(image, batch.number, digit)
        return output, self.loss(output, batch.digit, batch.sum)

    def on_train_epoch_end(self) -> None:
        """After every training epoch: the loss's weighting may update itself."""
        self.loss.on_train_epoch_end()
