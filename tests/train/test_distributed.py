"""DDP with the gloo backend and 2 CPU processes: masks identical on every rank after every
update, and the 2-process run matches a 1-process run with the same global batch."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from slimkit.runs.config import make_config
from slimkit.runs import build_trainer
from slimkit.sparse import get_masks
from slimkit.train import Callback
from slimkit.utils import distributed

VALUES = dict(model="lenet300", data="synthetic", epochs=2, augment=False, lr=0.05, method="mest-em",
              sparsity=0.8, update_every=1, progress="none")


class RecordMasks(Callback):
    def __init__(self):
        self.history = []

    def on_step_end(self, trainer, step):
        self.history.append({n: m.clone() for n, m in get_masks(trainer.model).items()})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, folder: str, values: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.setup("cpu")
    try:
        recorder = RecordMasks()
        trainer, _ = build_trainer(make_config(values), None, [recorder])
        trainer.fit()
        torch.save({"masks": recorder.history, "state": trainer.model.state_dict()}, f"{folder}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("method", ["mest-em", "rigl"])
def test_two_ranks_agree_and_match_one_process(tmp_path, method):
    values = {**VALUES, "method": method, "batch_size": 32}
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), values), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert len(ranks[0]["masks"]) == len(ranks[1]["masks"]) > 10
    for step0, step1 in zip(ranks[0]["masks"], ranks[1]["masks"]):
        assert all(torch.equal(step0[n], step1[n]) for n in step0)
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key

    single = RecordMasks()
    trainer, _ = build_trainer(make_config({**values, "batch_size": 64}), None, [single])
    trainer.fit()
    assert all(torch.equal(a[n], b[n]) for a, b in zip(single.history, ranks[0]["masks"]) for n in a)
    for key, value in trainer.model.state_dict().items():
        assert torch.allclose(value, ranks[0]["state"][key], atol=1e-5), key
