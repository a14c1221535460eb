"""The MultiLeNet of Sener and Koltun (2018): a shared LeNet encoder and one head per task."""

from __future__ import annotations

from torch import Tensor, nn

from multitask_mnist._validation import check_int

__all__ = ["MultiLeNetEncoder", "MultiLeNetHead"]


class MultiLeNetEncoder(nn.Module):
    """The shared encoder: two convolutions and a 50-wide feature layer.

    ``conv1`` (1→10, 5x5) → max-pool 2 → ReLU → ``conv2`` (10→20, 5x5) → 2-D dropout
    → max-pool 2 → ReLU → flatten (320) → ``fc`` (320→50) → ReLU, as in the authors'
    ``MultiLeNetR`` (their code draws one dropout mask shared by the tasks; here
    dropout is PyTorch's own).

    Args:
        dropout: The 2-D dropout probability after ``conv2``.

    Shapes:
        ``(B, 1, 28, 28)`` images -> ``(B, 50)`` features.

    Example:
        >>> import torch
        >>> MultiLeNetEncoder()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 50])
    """

    input_shape = (1, 28, 28)
    out_features = 50

    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(dropout)
        self.fc = nn.Linear(320, 50)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()

    def forward(self, image: Tensor) -> Tensor:
        """Map ``(B, 1, 28, 28)`` images to ``(B, 50)`` features."""
        x = self.act(self.pool(self.conv1(image)))
        x = self.act(self.pool(self.conv2_drop(self.conv2(x))))
        features: Tensor = self.act(self.fc(x.flatten(1)))
        return features


class MultiLeNetHead(nn.Module):
    """One task's head: ``fc1`` (50→50) → ReLU → dropout → ``fc2`` (50→classes).

    Args:
        num_classes: The number of classes.
        dropout: The dropout probability before ``fc2``.

    Shapes:
        ``(B, 50)`` features -> ``(B, num_classes)`` logits.

    Example:
        >>> import torch
        >>> MultiLeNetHead()(torch.zeros(2, 50)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=2)
        self.fc1 = nn.Linear(50, 50)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        """Map ``(B, 50)`` features to ``(B, num_classes)`` logits."""
        logits: Tensor = self.fc2(self.drop(nn.functional.relu(self.fc1(features))))
        return logits
