"""The encoder every pre-training method trains: a front-end and a context encoder.

`SSLEncoder` is the upstream that `evalkit eval` sees for all five methods
(their objectives live in their own modules and only add heads on top), and,
with random weights, each method's random-init twin. Its checkpoint is
`config.json` = {"upstream": "encoder", "config": {"frontend": ..., "encoder": ...}}
plus `model.safetensors`.
"""

from __future__ import annotations

import torch

from upstreams.base import Upstream, padding_mask
from upstreams.modules import ContextEncoder, EncoderConfig, FrontendConfig, build_frontend

TINY = {
    "frontend": {"kind": "fbank", "channels": 128},
    "encoder": {
        "kind": "transformer",
        "dim": 128,
        "layers": 4,
        "heads": 4,
        "ffn_dim": 512,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "input_dropout": 0.0,
        "layerdrop": 0.0,
        "pos_conv_kernel": 16,
        "pos_conv_groups": 4,
    },
}


class SSLEncoder(Upstream):
    def __init__(self, frontend: dict | None = None, encoder: dict | None = None) -> None:
        super().__init__()
        self.frontend_config = FrontendConfig.from_dict(frontend or {}, where="config.frontend")
        self.encoder_config = EncoderConfig.from_dict(encoder or {}, where="config.encoder")
        self.frontend = build_frontend(self.frontend_config)
        self.encoder = ContextEncoder(self.frontend.dim, self.encoder_config)
        self.frame_rate = float(self.frontend.frame_rate)
        self.num_layers = int(self.encoder.num_hidden)
        self.hidden_size = int(self.encoder_config.dim)

    @property
    def config(self) -> dict:
        return {"frontend": self.frontend_config.to_dict(), "encoder": self.encoder_config.to_dict()}

    def frames_for(self, wav_lens: torch.Tensor) -> torch.Tensor:
        return self.frontend.output_lengths(wav_lens)

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        feats, lens = self.frontend(wavs, wav_lens)
        valid = padding_mask(lens, feats.shape[1])
        return self.encoder(feats, valid), lens  # every hidden state has its padded frames zeroed


def random_transformer(seed: int = 0, **overrides) -> SSLEncoder:
    """A small random-init Transformer on fbank (4 layers × 128): many layers, no learning."""
    torch.manual_seed(seed)
    cfg = {k: {**v, **overrides.get(k, {})} for k, v in TINY.items()}
    return SSLEncoder(**cfg)
