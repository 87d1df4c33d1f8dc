"""Starting from a whole trained network (#25): `emim finetune --init MODEL` takes encoder, UNETR decoder and head
from a segmentation model and trains at its voxel size; `emim pretrain --init PRETRAINING` continues a pretraining's
encoder and decoder. Proved tensor by tensor after a step at learning rate 0, and on the cache entries the run read;
mismatched models are refused with what differs."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import SMALLEST_CASE

from emim.bundled import STARTER_MODEL, STARTER_PRETRAINING, bundled_model
from emim.errors import EmimError
from emim.modelfile import load_model
from emim.progress import Progress
from emim.train.checkpoint import load_checkpoint
from emim.train.trainer import TrainSettings
from support.model_edit import edit_metadata

# one optimiser step at learning rate 0: the data, cache and loop all run, and no weight may move
STILL = TrainSettings(steps=1, lr=0.0, warmup_steps=1, log_every=1, eval_every=100, checkpoint_every=1)


def _finetune_args(data, *extra):
    from emim.cli import build_parser
    from emim.commands.finetune import config_from_args

    return config_from_args(build_parser(only="finetune").parse_args(["finetune", str(data), "--run", "r", *extra]))


def _pretrain_args(data, *extra):
    from emim.cli import build_parser
    from emim.commands.pretrain import config_from_args

    return config_from_args(build_parser(only="pretrain").parse_args(["pretrain", str(data), "--run", "r", *extra]))


def test_init_starts_every_tensor_from_the_shipped_model_and_trains_at_its_spacing(brats_mini, tmp_path):
    from emim.export import export_model
    from emim.finetune.segmentation import run_finetuning
    from emim.model.unetr import EMIMUNETR

    shipped, metadata = load_model(STARTER_MODEL)
    config = _finetune_args(brats_mini / SMALLEST_CASE, "--init", STARTER_MODEL)
    assert config.spacing == (2.0, 2.0, 2.0) and config.feature_size == 8  # from the model's metadata
    # without the init every part of the network would start elsewhere: encoder, decoder and head
    fresh = EMIMUNETR(config.model, len(config.regions), config.feature_size).state_dict()
    assert set(fresh) == set(shipped)
    for key in ("encoder.patch_embed.weight", "up1.conv_block.conv1.conv.weight", "head.conv.conv.weight"):
        assert not torch.equal(fresh[key], shipped[key])

    config = replace(config, train=STILL, batch_size=1, val_cases=0, device="cpu", cache=str(tmp_path / "cache"))
    checkpoint = run_finetuning(config, tmp_path / "run", progress=Progress("none"))
    trained = load_checkpoint(checkpoint)["model"]
    assert set(trained) == set(shipped)
    assert [k for k in shipped if not torch.equal(trained[k], shipped[k])] == []

    # the case (1 mm) was cached resampled to the model's 2 mm, the label with its own values only
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if (p / "meta.json").is_file()]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["spacing"] == [2.0, 2.0, 2.0] and meta["source_spacing"] == [1.0, 1.0, 1.0]
    label = np.load(entry / "label.npy")
    assert set(np.unique(label)) <= {0, 1, 2, 3} and label.max() > 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"loaded all {len(shipped)} tensors" in log and "resampled to 2 x 2 x 2 mm" in log

    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["init"]["sha256"] == metadata["sha256"] and recorded["init"]["model"] == STARTER_MODEL
    assert recorded["spacing"] == [2.0, 2.0, 2.0]
    _, exported = load_model(export_model(tmp_path / "run", tmp_path / "model"))
    assert exported["preprocessing"]["spacing"] == [2.0, 2.0, 2.0]
    assert exported["provenance"]["init"]["sha256"] == metadata["sha256"]
    assert exported["regions"] == metadata["regions"] and exported["labels"] == metadata["labels"]


def test_init_options_come_from_the_model_and_the_recipe(brats_mini):
    from emim.finetune.segmentation import INIT_RECIPE, SCRATCH_RECIPE

    config = _finetune_args(brats_mini, "--init", STARTER_MODEL)
    assert (config.train.steps, config.train.lr, config.batch_size, config.freeze_encoder_steps) == (
        INIT_RECIPE.steps, INIT_RECIPE.lr, INIT_RECIPE.batch_size, INIT_RECIPE.freeze_encoder_steps)
    assert [r["name"] for r in config.regions] == ["TC", "WT", "ET"] and config.model.embed_dim == 96
    assert config.pretrained is None
    # what the command line gives wins; the spacing can be set or left at each case's own
    config = _finetune_args(brats_mini, "--init", STARTER_MODEL, "--steps", "7", "--lr", "1e-3", "--spacing", "1.5")
    assert (config.train.steps, config.train.lr, config.spacing) == (7, 1e-3, (1.5, 1.5, 1.5))
    assert _finetune_args(brats_mini, "--init", STARTER_MODEL, "--native-spacing").spacing is None
    # without --init nothing changes: a new network at each case's own spacing
    config = _finetune_args(brats_mini)
    assert (config.train.steps, config.train.lr, config.freeze_encoder_steps, config.init, config.spacing) == (
        SCRATCH_RECIPE.steps, SCRATCH_RECIPE.lr, 0, None, None)


def test_validation_runs_at_the_training_spacing_and_scores_on_the_case_grid(monkeypatch):
    """As `emim segment`: the 1 mm case goes to the network at 2 mm, the probabilities come back to 1 mm."""
    import emim.inference.prediction as prediction
    from emim.config import preset
    from emim.data.loading import LoadedCase
    from emim.finetune.segmentation import SegmentationTask
    from emim.labels import BRATS_REGIONS
    from emim.model.unetr import EMIMUNETR

    label = np.zeros((40, 36, 24), np.uint8)
    label[10:30, 8:28, 6:18] = 2
    label[15:25, 12:22, 9:15] = 1
    case = LoadedCase("c", np.ones((4, 40, 36, 24), np.float32), label, None, np.eye(4), (1.0, 1.0, 1.0),
                      np.ones(label.shape, bool))
    seen = []

    def predict(network, image, *args, **kwargs):
        seen.append(image.shape)
        truth = np.stack([np.isin(label, r["labels"]) for r in BRATS_REGIONS]).astype(np.float32)
        step = label.shape[0] // image.shape[1]
        return truth[:, ::step, ::step, ::step]  # the truth, at the resolution the network is given

    monkeypatch.setattr(prediction, "predict_probabilities", predict)
    model = EMIMUNETR(preset("tiny", crop_size=(32, 32, 32)), 3, 4)
    task = SegmentationTask(model, BRATS_REGIONS, [case], 0, 0.0, 1, spacing=(2.0, 2.0, 2.0))
    record = task.evaluate(0)
    assert seen == [(4, 20, 18, 12)]
    assert record["val_dice_WT"] > 0.9  # scored against the 1 mm label on its own grid
    assert SegmentationTask(model, BRATS_REGIONS, [case], 0, 0.0, 1).evaluate(0) and seen[-1] == (4, 40, 36, 24)


def test_models_that_do_not_fit_are_refused_with_what_differs(brats_mini, tmp_path):
    from emim.finetune.from_model import init_config
    from emim.finetune.segmentation import run_finetuning

    with pytest.raises(EmimError, match=r"modalities \['t1n', 't1c', 't2w'\] of the data vs \['t1n', 't1c', 't2w', "
                                        r"'t2f'\] of the model EMIM-starter-tiny"):
        _finetune_args(brats_mini, "--init", STARTER_MODEL, "--modalities", "t1n,t1c,t2w")
    with pytest.raises(EmimError, match="same names in another order"):
        _finetune_args(brats_mini, "--init", STARTER_MODEL, "--modalities", "t1c,t1n,t2w,t2f")
    with pytest.raises(EmimError, match="EMIM-starter-tiny-pretraining is an E-MIM pretraining .* not a "
                                        "segmentation model.* --pretrained EMIM-starter-tiny-pretraining"):
        _finetune_args(brats_mini, "--init", STARTER_PRETRAINING)
    with pytest.raises(EmimError, match="give one of them"):
        _finetune_args(brats_mini, "--init", STARTER_MODEL, "--pretrained", STARTER_PRETRAINING)
    with pytest.raises(EmimError, match="--feature-size 16 vs 8"):
        _finetune_args(brats_mini, "--init", STARTER_MODEL, "--feature-size", "16")

    # data whose labels make other regions than the model's
    case = brats_mini / SMALLEST_CASE
    datalist = tmp_path / "data.json"
    datalist.write_text(json.dumps({"labels": {"1": "tumour"}, "training": [
        {"image": [str(case / f"{SMALLEST_CASE}-{m}.nii.gz") for m in ("t1n", "t1c", "t2w", "t2f")],
         "label": str(case / f"{SMALLEST_CASE}-seg.nii.gz")}]}))
    with pytest.raises(EmimError, match=r"the model EMIM-starter-tiny segments \[TC \(labels 1, 3\), WT \(labels 1, "
                                        r"2, 3\), ET \(labels 3\)\] but the data's labels give \[tumour \(labels 1\)\]"):
        _finetune_args(datalist, "--init", STARTER_MODEL)

    # a model whose metadata describes another decoder width than its weights have: every tensor is compared
    folder = shutil.copytree(bundled_model(STARTER_MODEL), tmp_path / "wider")
    edit_metadata(folder, lambda metadata: metadata["network"].update(feature_size=16))
    config = replace(init_config(str(case), str(folder)), val_cases=0, device="cpu", cache=str(tmp_path / "cache"))
    with pytest.raises(EmimError, match=r"tensor\(s\) differ in shape \(.*: \[.*\] in the weights, \[.*\] here"):
        run_finetuning(config, tmp_path / "run", progress=Progress("none"))
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists() and not (tmp_path / "cache").exists()

    # and the other way round: a segmentation model is no pretraining to continue
    with pytest.raises(EmimError, match="EMIM-starter-tiny is a segmentation model, not an E-MIM pretraining.*"
                                        "finetune DATA --init EMIM-starter-tiny"):
        _pretrain_args(brats_mini, "--init", STARTER_MODEL)
    with pytest.raises(EmimError, match=r"modalities \['t2f'\] of the data vs .* of the pretraining"):
        _pretrain_args(brats_mini, "--init", STARTER_PRETRAINING, "--modalities", "t2f")


def test_pretrain_init_continues_the_shipped_pretraining(brats_mini, tmp_path):
    from emim.config import ModelConfig
    from emim.pretrain.model import EMIMPretrainer
    from emim.pretrain.run import run_pretraining

    shipped, metadata = load_model(STARTER_PRETRAINING)
    config = _pretrain_args(brats_mini / SMALLEST_CASE, "--init", STARTER_PRETRAINING)
    assert config.model == ModelConfig.from_dict(metadata["model_config"])
    fresh = EMIMPretrainer(config.model).state_dict()
    assert not torch.equal(fresh["decoder.head.weight"], shipped["decoder.head.weight"])
    assert not torch.equal(fresh["encoder.patch_embed.weight"], shipped["encoder.patch_embed.weight"])

    config = replace(config, train=STILL, batch_size=1, heldout_crops=2, device="cpu")
    trained = load_checkpoint(run_pretraining(config, tmp_path / "run", progress=Progress("none")))["model"]
    assert set(shipped) <= set(trained)  # and the Barlow Twins projectors, which a model folder does not hold
    assert [k for k in shipped if not torch.equal(trained[k], shipped[k])] == []
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["init"]["sha256"] == metadata["sha256"] and recorded["init"]["model"] == STARTER_PRETRAINING
    assert "continuing the pretraining EMIM-starter-tiny-pretraining" in (tmp_path / "run" / "train.log").read_text()
