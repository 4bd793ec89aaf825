import pickle

import pytest
import torch

from groundattn.model import VLEncoder, load_vlbert_checkpoint, map_vlbert_keys, preset


def _vlbert_state(model: VLEncoder) -> dict[str, torch.Tensor]:
    """A VL-BERT-style state dict built from a model's own weights, plus extra heads."""
    own = model.state_dict()
    state = {
        f"module.vlbert.encoder.{k[len('encoder.') :]}": v.clone() + 1
        for k, v in own.items()
        if k.startswith("encoder.")
    }
    state["module.vlbert.word_embeddings.weight"] = own["embeddings.word_embeddings.weight"] + 1
    state["module.vlbert.position_embeddings.weight"] = (
        own["embeddings.position_embeddings.weight"] + 1
    )
    state["module.vlbert.token_type_embeddings.weight"] = (
        own["embeddings.token_type_embeddings.weight"] + 1
    )
    state["module.vlbert.embedding_LayerNorm.weight"] = own["embeddings.LayerNorm.weight"] + 1
    state["module.vlbert.embedding_LayerNorm.bias"] = own["embeddings.LayerNorm.bias"] + 1
    state["module.vlbert.end_embedding.weight"] = own["embeddings.end_token_embedding"][None] + 1
    state["module.vlbert.visual_1x1_object.weight"] = (
        own["embeddings.visual.feature_projection.weight"] + 1
    )
    state["module.vlbert.visual_1x1_object.bias"] = (
        own["embeddings.visual.feature_projection.bias"] + 1
    )
    state["module.vlbert.visual_ln_object.weight"] = own["embeddings.visual.LayerNorm.weight"] + 1
    state["module.vlbert.visual_ln_object.bias"] = own["embeddings.visual.LayerNorm.bias"] + 1
    state["module.vlbert.visual_scale_text"] = torch.tensor(0.5)
    state["module.vlbert.visual_scale_object"] = torch.tensor(0.25)
    state["module.final_mlp.1.weight"] = torch.zeros(
        3, 3
    )  # a task head the encoder has no place for
    return state


def test_vlbert_checkpoint_loads_through_the_key_map(tmp_path):
    model = VLEncoder(preset("tiny"))
    state = _vlbert_state(model)
    path = tmp_path / "vl-bert_base_res101_pretrain_multitask-best.model"
    torch.save({"state_dict": state, "epoch": 3}, path)
    report = load_vlbert_checkpoint(model, path)
    assert report.unexpected == ["module.final_mlp.1.weight"]
    # The geometry embedding and the [IMG] word have no VL-BERT counterpart.
    assert sorted(report.missing) == [
        "embeddings.image_token_embedding",
        "embeddings.visual.geometry_projection.bias",
        "embeddings.visual.geometry_projection.weight",
    ]
    own = model.state_dict()
    torch.testing.assert_close(
        own["encoder.layer.1.attention.self.query.weight"],
        state["module.vlbert.encoder.layer.1.attention.self.query.weight"],
    )
    torch.testing.assert_close(
        own["embeddings.end_token_embedding"], state["module.vlbert.end_embedding.weight"][0]
    )
    # The scales are kept as logarithms: the values themselves come back.
    assert float(model.embeddings.visual.text_scale) == pytest.approx(0.5)
    assert float(model.embeddings.visual.region_scale) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="1 unexpected"):
        load_vlbert_checkpoint(model, path, strict=True)


def test_mismatched_shapes_are_reported_not_loaded(tmp_path):
    model = VLEncoder(preset("tiny"))
    before = model.embeddings.word_embeddings.weight.clone()
    path = tmp_path / "x.model"
    torch.save({"state_dict": {"module.vlbert.word_embeddings.weight": torch.zeros(5, 7)}}, path)
    report = load_vlbert_checkpoint(model, path)
    assert report.mismatched and "word_embeddings" in report.mismatched[0]
    torch.testing.assert_close(model.embeddings.word_embeddings.weight, before)


def test_unmapped_keys_are_listed():
    mapped, unmapped = map_vlbert_keys(
        {
            "module.vlbert.visual_1x1_text.weight": torch.zeros(1),
            "module.vlbert.encoder.layer.0.output.dense.bias": torch.zeros(1),
        }
    )
    assert list(mapped) == ["encoder.layer.0.output.dense.bias"]
    assert unmapped == ["module.vlbert.visual_1x1_text.weight"]


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.model"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"x": _Exploit()}}, f)
    with pytest.raises(pickle.UnpicklingError):
        load_vlbert_checkpoint(VLEncoder(preset("tiny")), path)
