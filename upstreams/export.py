"""Export an evalkit encoder checkpoint as a Hugging Face transformers folder.

`evalkit export --format hf CHECKPOINT_DIR OUT_DIR` turns an `SSLEncoder`
(waveform CNN + Transformer) into a `HubertModel` (or `Wav2Vec2Model`) folder
that anyone can load with `from_pretrained`, share on the Hub or fine-tune
with transformers' recipes. The two architectures are the same network:

    ours (upstreams.modules)                 transformers
    WaveformCNN  convs[i]                    feature_extractor.conv_layers[i].conv
                 norm_weight/bias            conv_layers[0|i].layer_norm (feat_extract_norm group|layer)
    ContextEncoder feature_norm, projection  feature_projection.layer_norm, .projection
                 positional.conv             encoder.pos_conv_embed.conv (weight norm, dim=2)
                 input_norm (post-LN)        encoder.layer_norm (do_stable_layer_norm=False)
                 final_norm (pre-LN)         encoder.layer_norm (do_stable_layer_norm=True)
    TransformerLayer mixer.qkv               attention.q_proj | k_proj | v_proj (rows split in three)
                 mixer.out                   attention.out_proj
                 mixer_norm, ffn_norm        layer_norm, final_layer_norm
                 ffn[0], ffn[3]              feed_forward.intermediate_dense, .output_dense

Where the two differ, numbers differ only on padded batches:

* Our GroupNorm front-end normalises each channel over an utterance's valid
  frames; transformers' GroupNorm includes the zero padding of a batch. One
  utterance alone (or a batch of equal lengths) gives the same features.
* Our layers zero padded frames after every layer; transformers leaves them
  as they come (valid frames are the same: attention masks padded keys, and
  the positional convolution sees zeroed padding in both).

So the exported preprocessor_config.json asks for an attention mask (the
model was pre-trained with padding masked) and no waveform normalisation (our
front-ends take the waveform as it is).

Three things cannot be exported, and the command says so: the fbank
front-end, and the Conformer and SummaryMixing encoders, have no transformers
twin. A disabled positional convolution (pos_conv_kernel 0) is exported as a
kernel-1 convolution whose weight-norm gain is zero, which outputs exactly 0.

The learned mask embedding belongs to the pre-training objective, not to the
encoder checkpoint, so the exported config sets mask_time_prob = 0 (the model
has no `masked_spec_embed`); to fine-tune with SpecAugment, pass
`mask_time_prob=0.05` to `from_pretrained`, and transformers initialises the
embedding.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.errors import EvalkitError
from upstreams.checkpoint import load_checkpoint, read_config
from upstreams.encoder import SSLEncoder
from upstreams.modules.frontends import CNN_KERNELS, CNN_STRIDES

MODEL_TYPES = {"hubert": "HubertModel", "wav2vec2": "Wav2Vec2Model"}
FORMATS = ("hf",)


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, fmt: str = "hf", model_type: str = "auto"
) -> Path:
    """Export the evalkit checkpoint folder `checkpoint` into `out`; returns `out`.

    `model_type` "auto" picks Wav2Vec2Model for encoders pre-trained by the
    wav2vec2 method (config.json's pretraining.method) and HubertModel for the
    rest; the two compute the same function, only the class name differs.
    """
    if fmt not in FORMATS:
        raise EvalkitError(f"export format {fmt!r} is not supported; choose one of {', '.join(FORMATS)}.")
    if Path(out).resolve() == Path(checkpoint).resolve():
        raise EvalkitError(
            f"{out}: the export would overwrite the checkpoint's own config.json and "
            "model.safetensors; choose another OUT_DIR."
        )
    blocker = next((p for p in (Path(out), *Path(out).parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # found before the model is loaded and converted, not by mkdir after
        raise EvalkitError(f"{out}: {blocker} is a file, not a folder; choose another OUT_DIR.")
    model = load_checkpoint(Path(checkpoint))
    if model_type == "auto":
        model_type = "wav2vec2" if pretraining_method(Path(checkpoint)) == "wav2vec2" else "hubert"
    if not isinstance(model, SSLEncoder):
        raise EvalkitError(
            f"{checkpoint}: upstream {type(model).__name__} is not an evalkit encoder (config.json "
            "'upstream': 'encoder'); only encoders trained by `evalkit pretrain` can be exported."
        )
    return export_hf(model, Path(out), model_type, source=str(checkpoint))


def pretraining_method(checkpoint: Path) -> str | None:
    """config.json's pretraining.method (written by `evalkit pretrain`), if any."""
    try:
        pretraining = read_config(checkpoint).get("pretraining")
    except EvalkitError:
        return None
    return pretraining.get("method") if isinstance(pretraining, dict) else None


def export_hf(model: SSLEncoder, out: Path, model_type: str = "hubert", source: str = "the model") -> Path:
    """Write `model` as a transformers folder: config.json, model.safetensors, preprocessor_config.json."""
    import transformers  # deferred: heavy, and only an export needs it

    if model_type not in MODEL_TYPES:
        raise EvalkitError(f"--model-type {model_type!r}: choose one of {', '.join(MODEL_TYPES)}.")
    check_exportable(model, source)
    cls = getattr(transformers, MODEL_TYPES[model_type])
    config = cls.config_class(**hf_config_kwargs(model))
    hf_model = cls(config).eval()
    state = hf_state_dict(model)
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    if missing or unexpected:  # the mapping above is incomplete: a bug here, not bad input
        raise RuntimeError(
            f"export mapping does not cover {MODEL_TYPES[model_type]}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    out.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out, safe_serialization=True)
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(), indent=2) + "\n")
    return out


def check_exportable(model: SSLEncoder, source: str) -> None:
    """Raise EvalkitError (exit 2) for architectures transformers does not have."""
    front, enc = model.frontend_config, model.encoder_config
    if front.kind != "cnn":
        raise EvalkitError(
            f"{source}: front-end {front.kind!r} cannot be exported to transformers: its wav2vec 2.0 / HuBERT "
            "models only have the waveform CNN front-end (frontend.kind 'cnn'), not log-mel fbank + subsampling."
        )
    if enc.kind != "transformer":
        raise EvalkitError(
            f"{source}: encoder {enc.kind!r} cannot be exported to transformers: HubertModel and Wav2Vec2Model "
            "only have Transformer layers (encoder.kind 'transformer'); there is no Conformer or "
            "SummaryMixing variant of them."
        )


def hf_config_kwargs(model: SSLEncoder) -> dict:
    """transformers config keys equivalent to the encoder's config."""
    front, enc = model.frontend_config, model.encoder_config
    kernel = enc.pos_conv_kernel or 1
    return dict(
        hidden_size=enc.dim,
        num_hidden_layers=enc.layers,
        num_attention_heads=enc.heads,
        intermediate_size=enc.ffn_dim,
        hidden_act="gelu",
        hidden_dropout=enc.dropout,
        activation_dropout=enc.activation_dropout,
        attention_dropout=enc.attention_dropout,
        feat_proj_dropout=enc.input_dropout,
        layerdrop=enc.layerdrop,
        layer_norm_eps=1e-5,
        do_stable_layer_norm=enc.norm_first,
        feat_extract_norm="group" if front.norm == "group_norm" else "layer",
        feat_extract_activation="gelu",
        conv_dim=[front.channels] * len(CNN_KERNELS),
        conv_kernel=list(CNN_KERNELS),
        conv_stride=list(CNN_STRIDES),
        conv_bias=front.conv_bias,
        num_conv_pos_embeddings=kernel,
        num_conv_pos_embedding_groups=enc.pos_conv_groups if enc.pos_conv_kernel else enc.dim,
        mask_time_prob=0.0,
        mask_feature_prob=0.0,
    )


def preprocessor_config() -> dict:
    """Wav2Vec2FeatureExtractor settings: raw 16 kHz waveforms, with an attention mask."""
    return {
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "sampling_rate": SAMPLE_RATE,
        "padding_side": "right",
        "padding_value": 0.0,
        "do_normalize": False,
        "return_attention_mask": True,
    }


def hf_state_dict(model: SSLEncoder) -> dict[str, torch.Tensor]:
    """Our weights under transformers' names (see the module docstring for the map)."""
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    front, enc = model.frontend_config, model.encoder_config
    out: dict[str, torch.Tensor] = {}
    for i in range(len(CNN_KERNELS)):
        prefix = f"feature_extractor.conv_layers.{i}"
        out[f"{prefix}.conv.weight"] = state[f"frontend.convs.{i}.weight"]
        if front.conv_bias:
            out[f"{prefix}.conv.bias"] = state[f"frontend.convs.{i}.bias"]
        if front.norm == "layer_norm" or i == 0:
            out[f"{prefix}.layer_norm.weight"] = state["frontend.norm_weight"][i]
            out[f"{prefix}.layer_norm.bias"] = state["frontend.norm_bias"][i]
    for ours, theirs in (("feature_norm", "layer_norm"), ("projection", "projection")):
        for p in ("weight", "bias"):
            out[f"feature_projection.{theirs}.{p}"] = state[f"encoder.{ours}.{p}"]
    out.update(_positional(state, enc.dim, enc.pos_conv_kernel, enc.pos_conv_weight_norm))
    encoder_norm = "encoder.final_norm" if enc.norm_first else "encoder.input_norm"
    for p in ("weight", "bias"):
        out[f"encoder.layer_norm.{p}"] = state[f"{encoder_norm}.{p}"]
    for i in range(enc.layers):
        ours, theirs = f"encoder.layers.{i}", f"encoder.layers.{i}"
        for p in ("weight", "bias"):
            q, k, v = state[f"{ours}.mixer.qkv.{p}"].chunk(3, dim=0)
            out[f"{theirs}.attention.q_proj.{p}"] = q
            out[f"{theirs}.attention.k_proj.{p}"] = k
            out[f"{theirs}.attention.v_proj.{p}"] = v
            out[f"{theirs}.attention.out_proj.{p}"] = state[f"{ours}.mixer.out.{p}"]
            out[f"{theirs}.layer_norm.{p}"] = state[f"{ours}.mixer_norm.{p}"]
            out[f"{theirs}.final_layer_norm.{p}"] = state[f"{ours}.ffn_norm.{p}"]
            out[f"{theirs}.feed_forward.intermediate_dense.{p}"] = state[f"{ours}.ffn.0.{p}"]
            out[f"{theirs}.feed_forward.output_dense.{p}"] = state[f"{ours}.ffn.3.{p}"]
    return {k: v.contiguous() for k, v in out.items()}


def _positional(
    state: dict[str, torch.Tensor], dim: int, kernel: int, weight_norm: bool
) -> dict[str, torch.Tensor]:
    """The positional conv as transformers' weight-norm parametrisation (g, v; dim=2).

    Without weight norm, g = the norm of each kernel position's slice and v the
    weight itself, so g * v / |v| gives the weight back; an all-zero slice gets
    g = 0 and v = 1 (a 0/0 would be NaN). No positional conv at all becomes a
    1-wide depthwise conv with g = 0: exactly zero output.
    """
    prefix = "encoder.pos_conv_embed.conv"
    if not kernel:
        return {
            f"{prefix}.parametrizations.weight.original0": torch.zeros(1, 1, 1),
            f"{prefix}.parametrizations.weight.original1": torch.ones(dim, 1, 1),
            f"{prefix}.bias": torch.zeros(dim),
        }
    if weight_norm:
        g = state["encoder.positional.conv.parametrizations.weight.original0"]
        v = state["encoder.positional.conv.parametrizations.weight.original1"]
    else:
        v = state["encoder.positional.conv.weight"].clone()
        g = v.norm(dim=(0, 1), keepdim=True)
        zero = g == 0
        v = torch.where(zero, torch.ones_like(v), v)
    return {
        f"{prefix}.parametrizations.weight.original0": g,
        f"{prefix}.parametrizations.weight.original1": v,
        f"{prefix}.bias": state["encoder.positional.conv.bias"],
    }
