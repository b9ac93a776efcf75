import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is much faster on a shared machine (the root conftest restores the count)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llama():
    """A factory of seeded random 2-block LlamaForCausalLM models built from a config (no download)."""
    transformers = pytest.importorskip("transformers")

    def build(seed: int = 0, vocab_size: int = 96):
        config = transformers.LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=vocab_size, max_position_embeddings=64,
        )
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config).eval()
        with torch.no_grad():  # HF initialises with std 0.02: widen so pruning visibly changes the activations
            for name, param in model.named_parameters():
                if param.dim() == 2:
                    param.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(seed + len(name)))
        return model

    return build


@pytest.fixture
def calibration() -> torch.Tensor:
    return torch.randint(0, 96, (8, 16), generator=torch.Generator().manual_seed(1))
