"""Shared by the dynamic-sparse-training tests: building each method, and a short training run
that checks the method's invariants after every step."""

import torch

from slimkit.data import make_loaders
from slimkit.methods import MEST, SET, PhasedMEST, RigL, elastic_mutation_phases, soft_memory_bound_phases
from slimkit.sparse import get_masks
from slimkit.train import Callback, Trainer, TrainConfig

from tests.methods.test_prune_methods import SCHEMES, SPLITS


def make_method(kind, model, scheme="unstructured", sparsity=0.9, **kw):
    common = dict(sparsity=sparsity, scheme=scheme, scheme_options=SCHEMES[scheme], update_every=1, seed=3, **kw)
    if kind == "mest":
        return MEST(model, **common)
    if kind == "mest-em":
        return PhasedMEST(model, phases=elastic_mutation_phases(sparsity), **common)
    if kind == "mest-ems":
        return PhasedMEST(model, phases=soft_memory_bound_phases(sparsity), **common)
    if kind == "rigl":
        return RigL(model, **common)
    return SET(model, **common)


class Inspector(Callback):
    """Runs after the method on every step: records masks and checks the method's invariants."""

    def __init__(self, method):
        self.method = method
        self.masks = []

    def on_step_end(self, trainer, step):
        masks = {n: m.clone() for n, m in get_masks(trainer.model).items()}
        method = self.method
        targets = method.targets(method.training_fraction) if not method.finished else None
        expected = method.densities(targets[0] if targets else method.sparsity)
        for name, module in method.layers.items():
            if name not in method.dense_layers:  # a dense layer is outside the scheme
                method.scheme.validate(masks[name])
            unit = method.scheme.unit_size(tuple(module.weight.shape))
            assert abs(int(masks[name].sum()) - expected[name] * masks[name].numel()) <= unit, name
            assert torch.all(module.weight[~masks[name]] == 0)
        self.masks.append(masks)


def fit(method, model, epochs=3):
    inspector = Inspector(method)
    config = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, progress="none")
    trainer = Trainer(model, make_loaders(SPLITS, 128), config, callbacks=[method, inspector])
    trainer.fit()
    return trainer, inspector


def fit_recording(method, model):
    recorder = []

    class Record(Callback):
        def on_step_end(self, trainer, step):
            recorder.append({n: m.clone() for n, m in get_masks(trainer.model).items()})

    config = TrainConfig(epochs=3, batch_size=128, lr=0.05, progress="none")
    Trainer(model, make_loaders(SPLITS, 128), config, callbacks=[method, Record()]).fit()
    return method, recorder
