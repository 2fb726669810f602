"""Models of the `transformers` library, built from configs with random weights (nothing downloads).

Each entry makes a tiny member of one family people measure today; :class:`FirstOutput` returns the
model's first output tensor (hidden states or logits), so every format sees one tensor out.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


class FirstOutput(nn.Module):
    """A `transformers` model returning its first output tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.m = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.m(x)
        return out[0]


def _tokens(vocab: int = 100) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(1))


def _images(size: int) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))


_LM = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=100)


def _families() -> dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor]]]:
    import transformers as T

    gqa = dict(_LM, num_key_value_heads=1, max_position_embeddings=16)
    return {
        # decoder LLMs: RMSNorm, rotary embeddings, SwiGLU, grouped-query attention, sliding windows
        "gpt2": (lambda: T.GPT2Model(T.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100, n_positions=16)),
                 _tokens),
        "llama": (lambda: T.LlamaModel(T.LlamaConfig(**gqa)), _tokens),
        "mistral": (lambda: T.MistralModel(T.MistralConfig(**gqa, sliding_window=4)), _tokens),
        "qwen2": (lambda: T.Qwen2Model(T.Qwen2Config(**gqa)), _tokens),
        "phi3": (lambda: T.Phi3Model(T.Phi3Config(**gqa, pad_token_id=0)), _tokens),
        "gemma": (lambda: T.GemmaModel(T.GemmaConfig(**gqa, head_dim=16)), _tokens),
        # encoders with attention masks, an encoder-decoder's encoder
        "bert": (lambda: T.BertModel(T.BertConfig(**_LM, max_position_embeddings=16)), _tokens),
        "roberta": (lambda: T.RobertaModel(T.RobertaConfig(**_LM, max_position_embeddings=20)), _tokens),
        "distilbert": (lambda: T.DistilBertModel(T.DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                                                    vocab_size=100, max_position_embeddings=16)),
                       _tokens),
        "t5-encoder": (lambda: T.T5EncoderModel(T.T5Config(d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
                                                           vocab_size=100)), _tokens),
        # vision transformers, windowed and hybrid; conv nets
        "vit": (lambda: T.ViTModel(T.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=64, image_size=16, patch_size=8)),
                lambda: _images(16)),
        "swin": (lambda: T.SwinModel(T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                                                  num_heads=[2, 2], window_size=2)), lambda: _images(32)),
        "mobilevit": (lambda: T.MobileViTModel(T.MobileViTConfig(
            image_size=32, hidden_sizes=[16, 16, 16], neck_hidden_sizes=[8, 8, 16, 16, 16, 16, 32],
            num_attention_heads=2)), lambda: _images(32)),
        "convnext": (lambda: T.ConvNextModel(T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)),
                     lambda: _images(32)),
        "resnet": (lambda: T.ResNetModel(T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                        layer_type="basic")), lambda: _images(32)),
        "resnet-bottleneck": (lambda: T.ResNetModel(T.ResNetConfig(embedding_size=8, hidden_sizes=[16, 32],
                                                                   depths=[1, 1], layer_type="bottleneck")),
                              lambda: _images(32)),
        "mobilenetv2": (lambda: T.MobileNetV2Model(T.MobileNetV2Config(image_size=32, depth_multiplier=0.25)),
                        lambda: _images(32)),
        "efficientnet": (lambda: T.EfficientNetModel(T.EfficientNetConfig(image_size=32, width_coefficient=0.25,
                                                                          depth_coefficient=0.1, hidden_dim=320)),
                         lambda: _images(32)),
        # CLIP towers
        "clip-vision": (lambda: T.CLIPVisionModel(T.CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=16,
            patch_size=8)), lambda: _images(16)),
        "clip-text": (lambda: T.CLIPTextModel(T.CLIPTextConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100,
            max_position_embeddings=16)), _tokens),
        # audio encoders: Conv1d feature extractors, GroupNorm, positional convolutions
        "wav2vec2": (lambda: T.Wav2Vec2Model(T.Wav2Vec2Config(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(8, 8),
            conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)),
                     lambda: torch.rand(2, 400, generator=torch.Generator().manual_seed(1))),
        "whisper-encoder": (lambda: T.WhisperForAudioClassification(T.WhisperConfig(
            d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=8, max_source_positions=8, vocab_size=100)).encoder,
                            lambda: torch.rand(2, 8, 16, generator=torch.Generator().manual_seed(1))),
    }


#: Family names, in the order above (the tests parametrize over them without importing transformers).
FAMILIES = ("gpt2", "llama", "mistral", "qwen2", "phi3", "gemma", "bert", "roberta", "distilbert", "t5-encoder",
            "vit", "swin", "mobilevit", "convnext", "resnet", "resnet-bottleneck", "mobilenetv2", "efficientnet",
            "clip-vision", "clip-text", "wav2vec2", "whisper-encoder")

#: Where an exporter cannot write the file (torch 2.13, transformers 5): (family, exporter) -> its complaint.
CANNOT_EXPORT = {
    ("llama", "onnx-torchscript"): "scaled_dot_product_attention not implemented if enable_gqa is True",
    ("qwen2", "onnx-torchscript"): "scaled_dot_product_attention not implemented if enable_gqa is True",
    ("phi3", "onnx-torchscript"): "scaled_dot_product_attention not implemented if enable_gqa is True",
    ("gemma", "onnx-torchscript"): "scaled_dot_product_attention not implemented if enable_gqa is True",
    ("t5-encoder", "onnx-dynamo"): "Failed to decompose the FX graph for ONNX compatibility",
    ("swin", "onnx-dynamo"): "Failed to decompose the FX graph for ONNX compatibility",
}


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model of family ``name`` (seeded, eval mode) and an example batch."""
    make, example = _families()[name]
    torch.manual_seed(0)
    return FirstOutput(make()).eval(), example()


def export_as(model: torch.nn.Module, x: torch.Tensor, folder: Path, fmt: str) -> Path:
    """Write ``model`` as ``fmt`` ("pt2", "onnx-dynamo" or "onnx-torchscript", batch dim dynamic) in ``folder``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "pt2":
            ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
            torch.export.save(ep, str(folder / "m.pt2"))
            return folder / "m.pt2"
        path = folder / f"{fmt}.onnx"
        if fmt == "onnx-dynamo":
            torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
        return path


def graph_key(mg):
    """A model graph's layer sizes, its edges in a canonical order and its active set, for comparing formats."""
    ei = mg.graph.edge_index
    order = torch.argsort(ei[0] * mg.graph.num_nodes + ei[1])
    return [lay.units for lay in mg.layers], ei[:, order], mg.graph.active
