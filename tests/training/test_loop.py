"""The fit loop: the order of events, a callback's stop."""

from __future__ import annotations

import pytest
from torch.utils.data import Subset

from multitask_mnist.training import (
    EarlyStopping,
)
from tests.training import (
    Recorder,
    make_data,
    make_trainer,
)


def test_events_fire_in_order_and_set_epoch_reaches_a_wrapped_dataset() -> None:
    data = make_data(200)
    recorder = Recorder()
    make_trainer(callbacks=[recorder], batch_size=100).fit(Subset(data, range(200)))
    assert recorder.events == [
        ("fit_start", 0),
        ("epoch_start", 1),
        ("batch_end", 0),
        ("batch_end", 1),
        ("epoch_end", 1),
        ("epoch_start", 2),
        ("batch_end", 0),
        ("batch_end", 1),
        ("epoch_end", 2),
        ("fit_end", 2),
    ]
    assert data.epoch == 1  # set_epoch(epoch - 1) went through the Subset


def test_early_stopping_stops() -> None:
    stopper = EarlyStopping("train_loss", patience=1, mode="max")  # loss falls: never "improves"
    history = make_trainer(epochs=5, callbacks=[stopper]).fit(make_data())
    assert len(history.epochs) == 2 and "train_loss did not improve" in str(history.stop_reason)


def test_early_stopping_on_an_unknown_metric() -> None:
    with pytest.raises(ValueError, match=r"^EarlyStopping monitors 'val_loss', which is not among"):
        make_trainer(epochs=1, callbacks=[EarlyStopping("val_loss")]).fit(make_data(64))
