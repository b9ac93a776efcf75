import json

import pytest

from slimkit.cli import build_parser, main

REQUIRED_METRICS = {
    "model": str, "dataset": str, "method": str, "scheme": str, "target_sparsity": float, "sparsity": float,
    "test_acc": float, "params_total": int, "params_nonzero": int, "flops_dense": int, "flops_sparse": int,
    "train_time_s": float, "peak_mem_bytes": int, "epochs": int, "seed": int, "slimkit_version": str,
}
QUICK = ["--data", "synthetic", "--epochs", "2", "--batch-size", "64", "--progress", "none"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--model", "lenet300", *QUICK, "--out", str(out)]) == 0
    return out


def test_run_folder_contract(finished_run):
    names = {p.name for p in finished_run.iterdir()}
    assert {"metrics.json", "history.csv", "model.safetensors", "model.json", "checkpoint.pt", "config.yaml"} <= names
    metrics = json.loads((finished_run / "metrics.json").read_text())
    for key, kind in REQUIRED_METRICS.items():
        assert isinstance(metrics[key], kind), key
    assert 0 <= metrics["test_acc"] <= 1 and metrics["epochs"] == 2
    assert metrics["params_total"] == metrics["params_nonzero"] == 266_610
    history = (finished_run / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history[0].startswith("epoch,lr,train_loss")
    assert float(history[-1].split(",")[history[0].split(",").index("test_acc")]) == metrics["test_acc"]


def test_saved_config_reproduces_the_run(finished_run, tmp_path):
    assert main(["train", "--config", str(finished_run / "config.yaml"), "--out", str(tmp_path)]) == 0
    first = json.loads((finished_run / "metrics.json").read_text())
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert again["test_acc"] == first["test_acc"] and again["test_loss"] == first["test_loss"]


def test_info_prints_the_table(finished_run, capsys):
    assert main(["info", str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "test acc" in out and "266,610" in out


def test_listing_commands(capsys):
    assert main(["models"]) == 0 and "resnet20" in capsys.readouterr().out
    assert main(["datasets"]) == 0 and "fashion-mnist" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--model", "nope", *QUICK], "unknown model 'nope'"),
        (["train", "--data", "nope"], "unknown dataset 'nope'"),
        (["train", "--data", "synthetic", "--epochs", "-3"], "epochs"),
        (["train", "--data", "mnist", "--data-dir", "/nonexistent"], "train-images-idx3-ubyte"),
        (["info", "/nonexistent"], "not a finished slimkit run"),
    ],
)
def test_bad_input_gives_one_clear_line(argv, message, capsys, tmp_path):
    argv = argv + (["--out", str(tmp_path / "x")] if argv[0] == "train" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("slimkit: error:") and message in err and "Traceback" not in err


@pytest.mark.parametrize("text", ['{"block": [8, 1], "prune": "cols"}', "{block: [8, 1], prune: cols}"])
def test_mapping_flags_take_json_or_yaml_flow_style(text):
    args = build_parser().parse_args(["train", "--scheme", "block", "--scheme-options", text])
    assert args.scheme_options == {"block": [8, 1], "prune": "cols"}


@pytest.mark.parametrize("text", ["[8, 1]", "{block: [8, 1"])
def test_mapping_flags_reject_what_is_not_a_mapping(text, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--scheme-options", text])
    assert "--scheme-options" in capsys.readouterr().err


def test_resume_with_corrupt_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "lenet300", *QUICK, "--epochs", "1", "--out", str(out)]) == 0
    (out / "checkpoint.pt").write_bytes(b"\x00" * 100)
    assert main(["train", "--resume", str(out)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_existing_run_is_never_overwritten(finished_run, capsys):
    assert main(["train", "--model", "lenet300", *QUICK, "--out", str(finished_run)]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["magnitude", "obs", "obd"])
def test_prune_a_trained_run_and_fine_tune(finished_run, tmp_path, method):
    out = tmp_path / method
    argv = ["prune", "--from", str(finished_run), "--method", method, "--sparsity", "0.8",
            "--finetune-epochs", "1", "--prune-batches", "2", "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["sparsity_pruned_layers"] == pytest.approx(0.8, abs=0.01)
    assert 0 <= metrics["test_acc_before_finetune"] <= 1
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["init_from"] == str(finished_run) and config["epochs"] == 1
    assert config["lr"] == pytest.approx(0.005)  # a tenth of the source run's learning rate


def test_prune_refuses_a_scheme_obs_cannot_do(finished_run, tmp_path, capsys):
    argv = ["prune", "--from", str(finished_run), "--method", "obs", "--sparsity", "0.8", "--scheme", "channel",
            "--out", str(tmp_path / "x")]
    assert main(argv) == 2
    assert "obs prunes each row" in capsys.readouterr().err


# ---- issue 21: divergence and untrusted files end in one clear line ------------------------------------------


@pytest.mark.parametrize("flag", [["--lr", "1e30"], ["--weight-decay", "1e30"]])
def test_divergence_in_the_last_step_fails_the_run(tmp_path, capsys, flag):
    """One step per epoch: nothing but the weights and the evaluation show the divergence."""
    out = tmp_path / "run"
    argv = ["train", "--model", "lenet300", *QUICK, "--epochs", "1", "--batch-size", "512", *flag, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "at epoch 1: the training diverged; check lr and weight_decay" in err
    assert not (out / "metrics.json").exists() and not (out / "model.safetensors").exists()


@pytest.mark.parametrize("flag", ["--lr", "--weight-decay", "--warmup-epochs", "--momentum"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_non_finite_settings_are_refused_by_name(capsys, tmp_path, flag, value):
    assert main(["train", *QUICK, flag, value, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"{flag[2:].replace('-', '_')}: Input should be a finite number" in err and "learning rate" not in err


def test_yaml_aliases_are_refused_in_mapping_flags(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--model-options", "{a: &x [1, 2], b: *x}"])
    assert "anchors and aliases are not allowed" in capsys.readouterr().err


@pytest.mark.parametrize("content,problem", [("{oops", "is not valid JSON"), ("[0.9]", "must hold a JSON object")])
def test_info_names_a_bad_metrics_file(tmp_path, capsys, content, problem):
    (tmp_path / "metrics.json").write_text(content)
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"slimkit: error: {tmp_path / 'metrics.json'} {problem}") and err.count("\n") == 1


def _model_folder(folder, poison=None):
    import torch

    from slimkit.data.base import DatasetInfo
    from slimkit.export import save_model
    from slimkit.models import build_model

    torch.manual_seed(0)
    model = build_model("lenet300", DatasetInfo("synthetic", (1, 28, 28), 10))
    if poison is not None:
        with torch.no_grad():
            model.fc3.bias[0] = poison
    save_model(model, folder, name="lenet300", info=DatasetInfo("synthetic", (1, 28, 28), 10))
    return folder


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_export_fails_when_outputs_are_not_finite(tmp_path, capsys, poison):
    run = _model_folder(tmp_path / "run", poison)
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "output holds nan/inf" in capsys.readouterr().err


def test_export_refuses_a_nan_tolerance(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--onnx", str(tmp_path / "m.onnx"), "--tolerance", "nan"]) == 2
    assert "--tolerance must be a finite number >= 0" in capsys.readouterr().err


def test_export_of_a_crafted_model_json_is_one_line(tmp_path, capsys):
    run = _model_folder(tmp_path / "run")
    sidecar = json.loads((run / "model.json").read_text())
    sidecar["dataset"]["input_shape"] = [1, 100_000, 100_000]
    (run / "model.json").write_text(json.dumps(sidecar))
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'model.json'}: 'dataset.input_shape'" in err and "Traceback" not in err
