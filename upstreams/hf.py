"""Public Hugging Face `transformers` checkpoints as evalkit upstreams (`hf:DIR`).

A researcher brings a local checkpoint folder (config.json + model.safetensors
or pytorch_model.bin, optionally preprocessor_config.json) of HuBERT,
wav2vec 2.0, WavLM or data2vec-audio, and gets it evaluated under the same
upstream contract as evalkit's own encoders. Nothing is downloaded: the folder
is loaded with `local_files_only=True`.

Hidden states follow s3prl's convention (the input of every transformer layer,
then the encoder output), which is what transformers' `hidden_states` tuple
gives, with one correction:

* post-LN models (`do_stable_layer_norm=False`: Base models, data2vec-audio):
  `hidden[0]` is LayerNorm(features + positional conv), the input of layer 1;
  `hidden[i]` the output of layer i. Exactly transformers' `hidden_states`.
* pre-LN models (`do_stable_layer_norm=True`: wav2vec 2.0 / HuBERT / WavLM
  Large): `hidden[0]` is features + positional conv with no LayerNorm (the
  input of layer 1), `hidden[i < L]` the residual stream after layer i, and
  `hidden[L]` the encoder output *with* the encoder's final LayerNorm, i.e.
  transformers' `last_hidden_state`. transformers < 5 returned that in
  `hidden_states[-1]`; transformers >= 5 returns the pre-LayerNorm tensor there.
  s3prl hooks the encoder's output, so the final LayerNorm belongs in.

Frames beyond an utterance's valid length are set to zero in every layer.

Padded batches (`padding`): a model whose convolutional feature extractor starts with GroupNorm
(wav2vec 2.0 / HuBERT / WavLM Base) normalises each channel over the whole input, so an utterance
padded in a batch would get other features than the same utterance alone (max abs difference
0.96-1.8 on random 3-layer models). `exact` (the default) runs the extractor on each utterance's
valid samples alone and passes the attention mask, so that a padded utterance equals itself alone
(within float error); `s3prl` is s3prl's experts' way, for numbers comparable with published ones:
the mask passed, the GroupNorm over the padded batch. LayerNorm extractors (Large models,
data2vec-audio) are per frame and take the mask as their preprocessing says, in both modes.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.errors import AudioError, EvalkitError
from upstreams.base import Upstream, padding_mask
from upstreams.checkpoint import refused_pickle, torch_load_file, weight_dtypes

# config.json `model_type` -> transformers class holding the bare encoder.
MODEL_CLASSES = {
    "hubert": "HubertModel",
    "wav2vec2": "Wav2Vec2Model",
    "wavlm": "WavLMModel",
    "data2vec-audio": "Data2VecAudioModel",
}

# What to do with a trusted pytorch_model.bin that torch.load(weights_only=True) refuses.
CONVERT_ADVICE = (
    "convert it to safetensors in a trusted environment: load it there with transformers and save it with "
    "model.save_pretrained(DIR, safe_serialization=True), then point hf: at DIR."
)

# How a padded batch goes through a GroupNorm feature extractor (see the module docstring).
PADDING_MODES = {
    "exact": "each utterance's convolutional features from its valid samples alone, and the attention mask: "
    "a padded utterance gives what it gives alone",
    "s3prl": "as s3prl's experts: the attention mask, GroupNorm statistics over the padded batch",
}

# Parameters that only serve pre-training masking; a checkpoint may lack them.
UNUSED_AT_INFERENCE = ("masked_spec_embed",)


@dataclass(frozen=True)
class HFPreprocessing:
    """How waveforms are prepared before the model, and why (`source`).

    do_normalize    zero-mean unit-variance per utterance over its valid samples
    attention_mask  pass a sample-level attention mask to the model (GroupNorm extractors: always)
    padding         how a padded batch meets a GroupNorm extractor (PADDING_MODES)
    """

    do_normalize: bool
    attention_mask: bool
    source: str
    padding: str = "exact"


def read_preprocessing(folder: Path, config: dict) -> HFPreprocessing:
    """Read preprocessor_config.json; derive what it does not say from the feature extractor.

    Models whose convolutional feature extractor uses GroupNorm (wav2vec 2.0 /
    HuBERT / WavLM Base) were trained on zero-padded batches without attention
    masks and without waveform normalisation; LayerNorm extractors (Large
    models, data2vec-audio) were trained with both (fairseq's `normalize`).
    A key present in preprocessor_config.json wins over this derivation.
    """
    layer_norm_extractor = config.get("feat_extract_norm", "layer") == "layer"
    prep_path = folder / "preprocessor_config.json"
    prep: dict = {}
    if prep_path.is_file():
        try:
            prep = json.loads(prep_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EvalkitError(f"{prep_path}: not valid JSON ({e}). Fix or delete the file.") from None
        if not isinstance(prep, dict):
            raise EvalkitError(f"{prep_path}: expected a JSON object.")
        rate = prep.get("sampling_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise EvalkitError(
                f"{prep_path}: sampling_rate is {rate}, but evalkit feeds {SAMPLE_RATE} Hz audio; "
                "only 16 kHz checkpoints are supported."
            )
    settings = {}
    for key, derived in (
        ("do_normalize", layer_norm_extractor),
        ("return_attention_mask", layer_norm_extractor),
    ):
        value = prep.get(key, derived)
        if not isinstance(value, bool):
            raise EvalkitError(f"{prep_path}: {key} must be true or false, got {value!r}.")
        settings[key] = value
    source = "preprocessor_config.json" if prep else "derived from config.json feat_extract_norm"
    return HFPreprocessing(settings["do_normalize"], settings["return_attention_mask"], source)


def normalize_waveforms(wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
    """Zero-mean unit-variance per utterance over its valid samples; padding stays zero.

    The same formula as Wav2Vec2FeatureExtractor (population variance, eps 1e-7),
    done in torch so that no processor has to be loaded. Statistics use only
    the valid samples, as each utterance was normalised alone in pre-training.
    """
    valid = padding_mask(wav_lens, wavs.shape[1])
    x = wavs.double() * valid
    n = wav_lens.clamp(min=1)[:, None].double()
    mean = x.sum(1, keepdim=True) / n
    var = (((x - mean) * valid) ** 2).sum(1, keepdim=True) / n
    return (((x - mean) / torch.sqrt(var + 1e-7)) * valid).to(wavs.dtype)


def min_samples_for_one_frame(conv_kernel, conv_stride) -> int:
    """The shortest waveform the convolutional feature extractor turns into one frame."""
    need = 1
    for kernel, stride in reversed(list(zip(conv_kernel, conv_stride))):
        need = (need - 1) * stride + kernel
    return need


class HFUpstream(Upstream):
    """A frozen transformers HuBERT / wav2vec 2.0 / WavLM / data2vec-audio encoder.

    forward returns num_hidden_layers + 1 states in s3prl's order (see the
    module docstring for the exact tensors), zero beyond each valid length.
    Frozen by default: no gradients, and the wrapped model stays in eval mode
    (dropout off) even when a parent module calls `.train()`.
    """

    def __init__(
        self, model: torch.nn.Module, preprocessing: HFPreprocessing, path: str = "", frozen: bool = True
    ) -> None:
        super().__init__()
        self.model = model.float().eval()
        cfg = model.config
        self.path = path
        self.model_type: str = cfg.model_type
        self.preprocessing = preprocessing
        self.stable_layer_norm = bool(getattr(cfg, "do_stable_layer_norm", False))
        self.group_norm = getattr(cfg, "feat_extract_norm", "layer") == "group"
        if preprocessing.padding not in PADDING_MODES:
            raise EvalkitError(
                f"hf:{path}: padding {preprocessing.padding!r}; choose from {', '.join(PADDING_MODES)}."
            )
        self.frame_rate = SAMPLE_RATE / math.prod(cfg.conv_stride)
        self.num_layers = cfg.num_hidden_layers + 1
        self.hidden_size = cfg.hidden_size
        self.min_samples = min_samples_for_one_frame(cfg.conv_kernel, cfg.conv_stride)
        self.frozen = frozen
        if frozen:
            self.model.requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls, path: str, frozen: bool = True, attention_mask: bool | None = None, padding: str = "exact"
    ) -> HFUpstream:
        """Load a local checkpoint folder; never downloads.

        `attention_mask` overrides whether a sample-level attention mask is
        passed (None: preprocessor_config.json, else derived from the model);
        `padding` is how a padded batch meets a GroupNorm extractor (PADDING_MODES).
        """
        folder = Path(path)
        config = _read_config(folder)
        preprocessing = replace(read_preprocessing(folder, config), padding=padding)
        if attention_mask is not None:
            preprocessing = replace(preprocessing, attention_mask=attention_mask, source="set by the caller")
        model = _load_model(folder, config["model_type"])
        return cls(model, preprocessing, path=str(path), frozen=frozen)

    def train(self, mode: bool = True) -> HFUpstream:
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def frames_for(self, wav_lens: torch.Tensor) -> torch.Tensor:
        """Valid frames per utterance, by the model's own convolution arithmetic."""
        return self.model._get_feat_extract_output_lengths(wav_lens.long()).long().clamp(min=0)

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        if wavs.dim() != 2:
            raise EvalkitError(
                f"HF upstream {self.path}: expected wavs of shape [B, S], got {list(wavs.shape)}."
            )
        wav_lens = wav_lens.to(device=wavs.device, dtype=torch.long)
        too_short = (wav_lens < self.min_samples).nonzero().flatten().tolist()
        if too_short:
            raise AudioError(
                f"HF upstream {self.path}: utterance(s) at batch index {too_short} have "
                f"{wav_lens[too_short].tolist()} samples; this model needs at least {self.min_samples} "
                f"({1000 * self.min_samples / SAMPLE_RATE:.0f} ms) to give one frame. Drop or pad them."
            )
        # Padding beyond the longest utterance would change GroupNorm statistics: trim it.
        wavs = wavs[:, : int(wav_lens.max())].float()
        valid = padding_mask(wav_lens, wavs.shape[1])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if self.preprocessing.do_normalize:
                wavs = normalize_waveforms(wavs, wav_lens)
            else:
                wavs = wavs * valid
            # GroupNorm extractors get the mask in both padding modes; `exact` also normalises each
            # utterance over its own samples
            mask = valid.long() if self.group_norm or self.preprocessing.attention_mask else None
            exact = self.group_norm and self.preprocessing.padding == "exact" and len(wav_lens) > 1
            with _each_utterance_alone(self.model.feature_extractor, wav_lens) if exact else nullcontext():
                out = self.model(wavs, attention_mask=mask, output_hidden_states=True)
            hidden = list(out.hidden_states)
            if self.stable_layer_norm:
                hidden[-1] = out.last_hidden_state
            lens = self.frames_for(wav_lens)
            frame_valid = padding_mask(lens, hidden[0].shape[1])[..., None]
            hidden = [h.masked_fill(~frame_valid, 0.0) for h in hidden]
        return hidden, lens


@contextmanager
def _each_utterance_alone(extractor: torch.nn.Module, wav_lens: torch.Tensor) -> Iterator[None]:
    """Within the block, `extractor` (a transformers feature encoder, [B, S] -> [B, C, T]) runs on each
    utterance's valid samples alone and zero-pads the results to the batch's frames."""
    batch_forward = extractor.forward

    def forward(input_values: torch.Tensor) -> torch.Tensor:
        each = [batch_forward(input_values[b : b + 1, :n]) for b, n in enumerate(wav_lens.tolist())]
        out = each[0].new_zeros(len(each), each[0].shape[1], max(f.shape[2] for f in each))
        for b, f in enumerate(each):
            out[b, :, : f.shape[2]] = f[0]
        return out

    extractor.forward = forward
    try:
        yield
    finally:
        del extractor.forward  # the class's own again


def load_hf_upstream(path: str, padding: str = "exact") -> HFUpstream:
    """The `hf:DIR` upstream: a frozen local transformers checkpoint."""
    return HFUpstream.from_pretrained(path, padding=padding)


def _read_config(folder: Path) -> dict:
    """config.json of a supported audio encoder, or an error that says what is expected."""
    expected = (
        "a local transformers checkpoint folder with config.json and model.safetensors "
        f"(or pytorch_model.bin), model_type one of {', '.join(MODEL_CLASSES)}"
    )
    if not folder.is_dir():
        raise EvalkitError(f"hf:{folder}: not a folder. Expected {expected}.")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise EvalkitError(
            f"{folder}: no config.json, so this is not a transformers checkpoint. Expected {expected}."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvalkitError(f"{config_path}: not valid JSON ({e}). Expected {expected}.") from None
    if not isinstance(config, dict):
        raise EvalkitError(
            f"{config_path}: expected a JSON object, got {type(config).__name__}. Expected {expected}."
        )
    model_type = config.get("model_type")
    if model_type not in MODEL_CLASSES:
        raise EvalkitError(
            f"{config_path}: model_type {model_type!r} is not supported by the hf: upstream. Expected {expected}."
        )
    return config


def _load_model(folder: Path, model_type: str) -> torch.nn.Module:
    """The bare encoder from local files only; refuse silently random-initialised weights."""
    import transformers  # deferred: heavy, and only an hf: upstream needs it

    cls_name = MODEL_CLASSES[model_type]
    cls = getattr(transformers, cls_name)
    config = _transformers_config(folder, cls)
    dtypes = {}
    for path in _safetensors_files(folder):
        dtypes |= weight_dtypes(path)  # a truncated or corrupt file: an error naming it
    try:
        # ignore_mismatched_sizes: transformers then reports them in `info`, and they are refused below.
        model, info = cls.from_pretrained(
            folder,
            config=config,
            local_files_only=True,
            output_loading_info=True,
            ignore_mismatched_sizes=True,
        )
    except pickle.UnpicklingError as e:
        raise refused_pickle(e, str(folder / "pytorch_model.bin"), CONVERT_ADVICE) from None
    except (OSError, ValueError, RuntimeError) as e:
        if file := torch_load_file(e):
            raise EvalkitError(
                f"{file}: torch could not read it ({e}); it is truncated or corrupt: replace it."
            ) from None
        raise EvalkitError(
            f"{folder}: transformers could not load a {cls_name} from local files ({e}). "
            "The folder needs config.json and model.safetensors (or pytorch_model.bin)."
        ) from None
    _check_loaded(folder, cls_name, model, info, dtypes)
    return model


def _transformers_config(folder: Path, cls):
    """The model's transformers config from config.json; values transformers refuses are errors naming it."""
    from huggingface_hub.errors import StrictDataclassError  # deferred: comes with transformers

    try:
        config = cls.config_class.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError, StrictDataclassError) as e:
        raise EvalkitError(
            f"{folder / 'config.json'}: transformers refuses this {cls.config_class.__name__} "
            f"({' '.join(str(e).split())}). Fix the value, or put back the config.json saved with the weights."
        ) from None
    # An adapter (seq2seq fine-tuning) sits after the encoder and changes the
    # frame rate; the hidden states exposed here never include it.
    if getattr(config, "add_adapter", False):
        config.add_adapter = False
    return config


def _safetensors_files(folder: Path) -> list[Path]:
    """The safetensors weight files transformers reads from `folder`: one file, or shards."""
    single = folder / "model.safetensors"
    return [single] if single.is_file() else sorted(folder.glob("model-*-of-*.safetensors"))


def _check_loaded(
    folder: Path, cls_name: str, model: torch.nn.Module, info: dict, dtypes: dict[str, str]
) -> None:
    """Refuse weights that were not loaded as they are in the files: missing (random init),
    of another shape, or integers cast to the model's floats."""
    missing = sorted(k for k in info["missing_keys"] if not k.endswith(UNUSED_AT_INFERENCE))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise EvalkitError(
            f"{folder}: the checkpoint lacks {len(missing)} weight(s) of {cls_name} ({shown}); "
            "they would be randomly initialised. Point hf: at a checkpoint of the encoder itself."
        )
    bad = [
        f"{key} has shape {list(theirs)} in the file, {list(ours)} in the model"
        for key, theirs, ours in info.get("mismatched_keys", [])
    ]
    floats = {k for k, v in model.state_dict().items() if v.is_floating_point()}
    bad += [
        f"{key} is {dtype} (not a float type) in the file, a float in the model"
        for key, dtype in dtypes.items()
        if not (dtype.startswith("F") or dtype == "BF16")
        and (key in floats or key.partition(".")[2] in floats)
    ]
    if bad:
        files = [folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()]
        raise EvalkitError(
            f"{files[0] if files else folder}: {len(bad)} weight(s) do not fit the {cls_name} that config.json describes: "
            f"{'; '.join(bad[:3])}{f'; and {len(bad) - 3} more' if len(bad) > 3 else ''}. These weights belong to another model or "
            "config.json was changed: keep the weights with the config.json saved with them."
        )
