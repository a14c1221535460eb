"""Three tasks of three kinds on two inputs, from MNIST, in under 40 lines."""

import torch
from torch.utils.data import Subset

from multitask_mnist import MISSING, AugmentedDigitDataset, ConvTrunk, ScalarFusionHead, Task
from multitask_mnist.data import WithFields, load_mnist
from multitask_mnist.models import Block, Input, MLPHead, MultiTaskNet
from multitask_mnist.presets import MNIST_SUM_LAYERS
from multitask_mnist.training import Trainer


def larger(s):  # the new task's label: is the digit larger than the number?
    return torch.where(s["digit"] == MISSING, MISSING, (s["digit"] > s["number"]).long())


# 1. Data: samples with named fields, one per input and one per label.
images = Subset(load_mnist(train=True), range(6000))
train = WithFields(AugmentedDigitDataset(images, seed=0), larger=larger)
test = WithFields(AugmentedDigitDataset(load_mnist(train=False), seed=1), larger=larger)

# 2. Inputs, and blocks that read inputs or earlier blocks; some predict a task.
SUM = Task("sum", "regression")  # taught with the true digit; a fast (higher rate) block
net = MultiTaskNet(
    {
        "trunk": Block(ConvTrunk(MNIST_SUM_LAYERS), ["image"], Task("digit", "multiclass", 10)),
        "head": Block(ScalarFusionHead(), ["trunk", "number"], SUM, teacher="digit", fast=True),
        "compare": Block(MLPHead(11), ["trunk", "number"], Task("larger", "binary")),
    },
    [Input("image", (1, 28, 28)), Input("number", (), integer=True, low=0, high=9)],
)

# 3. Train and test: the loss and the metrics follow the tasks.
trainer = Trainer(net, epochs=2, progress=False)
trainer.fit(train)
metrics = trainer.test(test)
for task in net.task_names:
    print(f"{task}: {metrics[f'{task}_accuracy']:.2f}%")
