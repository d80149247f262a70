"""The faithful `*_superb` tasks hold s3prl's SUPERB recipes: each value below was read from s3prl's source
(commit ec8064b, 2025-06-13; paths under s3prl/), independently of the task files, which must resolve to it."""

from __future__ import annotations

import re

import pytest
import torch

from evalkit.evaluation.heads import HEADS
from evalkit.evaluation.task import list_tasks, load_task

# Every trained task: Adam (ASV: AdamW) at one rate, no scheduler (downstream/runner.py:249-251 makes one only
# when a config has a `scheduler:` block; every SUPERB config has it commented out).
CONSTANT = ("schedule", "constant", "downstream/runner.py:249-251")


def _adam(config: str, line: str) -> list:
    return [
        ("optimizer.name", "adam", f"{config}:{line}"),
        ("optimizer.weight_decay", 0.0, "optimizers.py:90-98"),
    ]


SPECAUG = [
    ("specaug.time_warp", 5, "time_warp_window"),
    ("specaug.freq_mask_width", [0, 50], "freq_mask_width_range"),
    ("specaug.freq_masks", 4, "num_freq_mask"),
    ("specaug.time_mask_width", [0, 40], "time_mask_width_range"),
    ("specaug.time_masks", 2, "num_time_mask"),
]

FACTS: dict[str, list[tuple[str, object, str]]] = {
    "pr_superb": [
        *_adam("downstream/ctc/libriphone.yaml", "13-16"),
        ("lr_grid", [1.0e-2], "downstream/ctc/libriphone.yaml:15"),
        CONSTANT,
        ("gradient_clipping", 1, "downstream/ctc/libriphone.yaml:3"),
        ("steps", 100000, "downstream/ctc/libriphone.yaml:2"),
        ("eval_every", 1000, "downstream/ctc/libriphone.yaml:7"),
        ("batch.utterances", 16, "downstream/ctc/libriphone.yaml:49"),
        ("batch.accumulate", 2, "downstream/ctc/libriphone.yaml:4"),
        ("batch.bucketing", True, "downstream/ctc/libriphone.yaml:50"),
        ("heads[0].type", "linear_ctc", "downstream/ctc/expert.py:36-44 (FrameLevel, hiddens None)"),
        ("heads[0].args.proj", 256, "downstream/ctc/libriphone.yaml:58 (project_dim)"),
        ("specaug", None, "downstream/ctc/libriphone.yaml:24-34 (commented out)"),
        ("labels.phones_key", "arpabet", "downstream/ctc/libriphone.yaml:40-43 (g2p lexicons)"),
        ("labels.layout", "s3prl", "downstream/ctc/text.py:289-296 (<eos> appended)"),
        ("labels.vocab", "s3prl", "downstream/ctc/libriphone.yaml:53-55 (word mode, vocab/phoneme.txt)"),
    ],
    "asr_superb": [
        *_adam("downstream/asr/config.yaml", "12-15"),
        ("lr_grid", [1.0e-4], "downstream/asr/config.yaml:14"),
        CONSTANT,
        ("gradient_clipping", 1, "downstream/asr/config.yaml:3"),
        ("steps", 200000, "downstream/asr/config.yaml:2"),
        ("eval_every", 2000, "downstream/asr/config.yaml:7"),
        # batch_size 32, every length bucket halved (HALF_BATCHSIZE_TIME 2000 against lengths in samples)
        ("batch.utterances", 16, "downstream/asr/config.yaml:47-49, downstream/asr/dataset.py:30, :84-101"),
        ("batch.accumulate", 1, "downstream/asr/config.yaml:4"),
        ("batch.bucketing", True, "downstream/asr/dataset.py:84-101"),
        ("heads[0].type", "bilstm_ctc", "downstream/asr/expert.py:88-96"),
        ("heads[0].args.proj", 1024, "downstream/asr/config.yaml:74-88 (project_dim)"),
        ("heads[0].args.hidden", 1024, "downstream/asr/config.yaml:74-88 (dim [1024, 1024])"),
        ("heads[0].args.num_layers", 2, "downstream/asr/config.yaml:74-88"),
        ("heads[0].args.dropout", 0.2, "downstream/asr/config.yaml:74-88 (dropout [0.2, 0.2])"),
        ("labels.unit", "chars", "downstream/asr/char.dict"),
        ("labels.lexicon", None, "downstream/asr/config.yaml:56-72 (greedy: decoder_type 'None')"),
        ("labels.layout", "s3prl", "downstream/asr/dataset.py:116-121 (trailing |, then </s>)"),
        ("labels.vocab", "s3prl", "downstream/asr/expert.py:84-93 (char.dict, fairseq Dictionary)"),
        *[(k, v, f"downstream/asr/config.yaml:25-37 ({name})") for k, v, name in SPECAUG],
    ],
    "ks_superb": [
        *_adam("downstream/speech_commands/config.yaml", "14-17"),
        ("lr_grid", [1.0e-4], "downstream/speech_commands/config.yaml:16"),
        CONSTANT,
        ("gradient_clipping", 1, "downstream/speech_commands/config.yaml:3"),
        ("steps", 200000, "downstream/speech_commands/config.yaml:2"),
        ("eval_every", 5000, "downstream/speech_commands/config.yaml:8"),
        ("batch.utterances", 32, "downstream/speech_commands/config.yaml:30"),
        ("batch.accumulate", 1, "downstream/speech_commands/config.yaml:4"),
        ("sampler", "balanced", "downstream/speech_commands/expert.py:51-74 (WeightedRandomSampler)"),
        ("crop.seconds", 1.0, "downstream/speech_commands/dataset.py:81-84 (a random 1 s of the noise)"),
        ("gain_db", -3.0, "downstream/speech_commands/dataset.py:22, :35 (sox gain -3.0)"),
        ("remove_silence", False, "downstream/speech_commands/dataset.py:22 (no sox silence effect)"),
        ("splits.train", "train_s3prl", "downstream/speech_commands/dataset.py:60-65 (noise files in train)"),
        ("splits.dev", "dev_s3prl", "downstream/speech_commands/dataset.py:60-65 (and in dev)"),
        ("heads[0].type", "mean_pool_linear", "downstream/speech_commands/expert.py:38-45"),
        ("heads[0].args.hidden", 256, "downstream/speech_commands/config.yaml:32-36"),
    ],
    "ic_superb": [
        *_adam("downstream/fluent_commands/config.yaml", "14-17"),
        ("lr_grid", [1.0e-4], "downstream/fluent_commands/config.yaml:16"),
        CONSTANT,
        ("gradient_clipping", 1, "downstream/fluent_commands/config.yaml:3"),
        ("steps", 200000, "downstream/fluent_commands/config.yaml:2"),
        ("eval_every", 5000, "downstream/fluent_commands/config.yaml:8"),
        ("batch.utterances", 32, "downstream/fluent_commands/config.yaml:29"),
        ("batch.accumulate", 1, "downstream/fluent_commands/config.yaml:4"),
        ("sampler", "shuffled", "downstream/fluent_commands/expert.py:70-84"),
        ("heads[0].type", "mean_pool_linear", "downstream/fluent_commands/expert.py:37-44"),
        ("heads[0].args.hidden", 256, "downstream/fluent_commands/config.yaml:32-36"),
    ],
    "sid_superb": [
        *_adam("downstream/voxceleb1/config.yaml", "16-19"),
        ("lr_grid", [1.0e-4], "downstream/voxceleb1/config.yaml:18"),
        CONSTANT,
        ("gradient_clipping", 1, "downstream/voxceleb1/config.yaml:5"),
        ("steps", 200000, "downstream/voxceleb1/config.yaml:4"),
        ("eval_every", 5000, "downstream/voxceleb1/config.yaml:10"),
        ("batch.utterances", 8, "downstream/voxceleb1/config.yaml:31"),
        ("batch.accumulate", 4, "downstream/voxceleb1/config.yaml:6"),
        ("crop.seconds", 8.0, "downstream/voxceleb1/config.yaml:33 (max_timestep 128000)"),
        ("remove_silence", False, "downstream/voxceleb1/dataset.py (no sox silence effect)"),
        ("heads[0].type", "mean_pool_linear", "downstream/voxceleb1/expert.py:51-58"),
        ("heads[0].args.hidden", 256, "downstream/voxceleb1/config.yaml:35-39"),
    ],
    **{
        f"er_superb_fold{k}": [
            *_adam("downstream/emotion/config.yaml", "14-17"),
            ("lr_grid", [1.0e-4], "downstream/emotion/config.yaml:16"),
            CONSTANT,
            ("gradient_clipping", 1, "downstream/emotion/config.yaml:3"),
            ("steps", 30000, "downstream/emotion/config.yaml:2"),
            ("eval_every", 1000, "downstream/emotion/config.yaml:8"),
            ("batch.utterances", 4, "downstream/emotion/config.yaml:31"),
            ("batch.accumulate", 8, "downstream/emotion/config.yaml:4"),
            ("heads[0].type", "mean_pool_linear", "downstream/emotion/expert.py:56-63"),
            ("heads[0].args.hidden", 256, "downstream/emotion/config.yaml:36-49"),
            (
                "corpus",
                f"iemocap/fold{k}",
                "downstream/emotion/config.yaml:29 (test_fold), docs/superb.md:624-633",
            ),
            # s3prl's own 80/20 split of the training sessions (valid_ratio 0.2, torch.manual_seed(0))
            ("splits.train", "train_s3prl", "downstream/emotion/config.yaml:34, expert.py:47-52"),
            ("splits.dev", "dev_s3prl", "downstream/emotion/config.yaml:34, expert.py:47-52"),
        ]
        for k in range(1, 6)
    },
    "asv_superb": [
        ("optimizer.name", "adamw", "downstream/sv_voxceleb1/configs/amsoftmax.yaml:12-15"),
        ("optimizer.weight_decay", 0.01, "optimizers.py:90-98 (torch's AdamW default)"),
        ("lr_grid", [1.0e-4], "downstream/sv_voxceleb1/configs/amsoftmax.yaml:14"),
        CONSTANT,
        ("gradient_clipping", 1000, "downstream/sv_voxceleb1/configs/amsoftmax.yaml:3"),
        ("steps", 200000, "downstream/sv_voxceleb1/configs/amsoftmax.yaml:2"),
        ("batch.utterances", 10, "downstream/sv_voxceleb1/configs/amsoftmax.yaml:35"),
        ("batch.accumulate", 5, "downstream/sv_voxceleb1/configs/amsoftmax.yaml:4"),
        ("crop.seconds", 8.0, "downstream/sv_voxceleb1/configs/amsoftmax.yaml:34 (max_timestep 128000)"),
        ("crop.min_seconds", 2.0, "downstream/sv_voxceleb1/configs/amsoftmax.yaml:26-27 (min_sec 32000)"),
        (
            "remove_silence",
            True,
            "downstream/sv_voxceleb1/dataset.py:22-27, :73, :127 (sox silence, train and test)",
        ),
        (
            "gain_db",
            -3.0,
            "downstream/sv_voxceleb1/dataset.py:22-27 (sox gain -3.0, before the silence effect)",
        ),
        ("labels.margin", 0.4, "downstream/sv_voxceleb1/configs/amsoftmax.yaml:59-74"),
        ("labels.scale", 30.0, "downstream/sv_voxceleb1/configs/amsoftmax.yaml:59-74"),
        ("heads[0].type", "xvector", "downstream/sv_voxceleb1/model.py:261-276"),
        ("heads[0].args.connector", 512, "downstream/sv_voxceleb1/expert.py:85, amsoftmax.yaml:42"),
        ("heads[0].args.channels", 512, "downstream/sv_voxceleb1/model.py:261-276 (input_dim)"),
        (
            "heads[0].args.stats_channels",
            1500,
            "downstream/sv_voxceleb1/configs/amsoftmax.yaml:50-53 (agg_dim)",
        ),
        ("heads[0].args.embed_dim", 512, "downstream/sv_voxceleb1/model.py:211-229"),
        ("heads[0].args.batch_norm", False, "downstream/sv_voxceleb1/configs/amsoftmax.yaml:50-53"),
        ("heads[0].args.context", "valid", "downstream/sv_voxceleb1/model.py:432-437 (F.unfold, no padding)"),
        ("heads[0].args.out_relu", True, "downstream/sv_voxceleb1/model.py:216-223"),
        (
            "heads[0].args.test_embedding",
            "first",
            "downstream/sv_voxceleb1/model.py:225-229, expert.py:223-224",
        ),
    ],
    "sd_superb": [
        *_adam("downstream/diarization/config.yaml", "13-16"),
        ("lr_grid", [1.0e-4], "downstream/diarization/config.yaml:15"),
        CONSTANT,
        ("gradient_clipping", 1, "downstream/diarization/config.yaml:3"),
        ("steps", 30000, "downstream/diarization/config.yaml:2"),
        ("eval_every", 500, "downstream/diarization/config.yaml:8"),
        ("batch.utterances", 8, "downstream/diarization/config.yaml:27-28"),
        ("batch.accumulate", 4, "downstream/diarization/config.yaml:4"),
        ("heads[0].type", "lstm_diarizer", "downstream/diarization/model.py:20-41"),
        ("heads[0].args.hidden", 512, "downstream/diarization/config.yaml:38-40"),
        ("heads[0].args.num_layers", 1, "downstream/diarization/config.yaml:38-40"),
        ("heads[0].args.bidirectional", False, "downstream/diarization/model.py:20-41"),
        ("labels.median_frames", [1, 11], "downstream/diarization/score.sh:46"),
        ("metrics[0].options.collar", 0.0, "downstream/diarization/score.sh:51-52 (no collar argument)"),
    ],
    "sf_superb": [
        *_adam("downstream/ctc/snips.yaml", "13-16"),
        ("lr_grid", [1.0e-4], "downstream/ctc/snips.yaml:15"),
        CONSTANT,
        ("gradient_clipping", 1, "downstream/ctc/snips.yaml:3"),
        ("steps", 200000, "downstream/ctc/snips.yaml:2"),
        ("eval_every", 2000, "downstream/ctc/snips.yaml:8"),
        ("batch.utterances", 32, "downstream/ctc/snips.yaml:47"),
        ("batch.accumulate", 1, "downstream/ctc/snips.yaml:4"),
        ("batch.bucketing", True, "downstream/ctc/snips.yaml:48"),
        ("heads[0].type", "bilstm_ctc", "downstream/ctc/expert.py:36-44"),
        ("heads[0].args.proj", 1024, "downstream/ctc/snips.yaml:107-123"),
        ("heads[0].args.hidden", 1024, "downstream/ctc/snips.yaml:107-123"),
        ("heads[0].args.num_layers", 2, "downstream/ctc/snips.yaml:107-123"),
        ("heads[0].args.dropout", 0.2, "downstream/ctc/snips.yaml:107-123"),
        ("labels.unit", "slot_chars", "downstream/ctc/snips.yaml:102-105 (character-slot)"),
        ("labels.layout", "s3prl", "downstream/ctc/text.py:95-127 (CharacterTextSlotEncoder)"),
        ("labels.vocab", "s3prl", "downstream/ctc/snips.yaml:102-105 (vocab/character.txt, slots.txt)"),
        *[(k, v, f"downstream/ctc/snips.yaml:24-36 ({name})") for k, v, name in SPECAUG],
    ],
}

FACTS["qbe_superb"] = [
    ("labels.alignment", "s3prl", "downstream/quesst14_dtw/expert.py:106-113, :189-200 (dtw-python)"),
    ("labels.distance", "cosine_exp", "downstream/quesst14_dtw/config.yaml:27"),
    ("labels.minmax_rows", True, "downstream/quesst14_dtw/config.yaml:30"),
    ("labels.min_query_frames", 5, "downstream/quesst14_dtw/expert.py:120-122"),
    (
        "labels.scope",
        "quesst",
        "downstream/docs/superb.md:306-319 (score-TWV-Cnxe.sh, all-language ground truth)",
    ),
    ("labels.default_score", -10.0, "downstream/docs/superb.md:306-319"),
    ("gain_db", -3.0, "downstream/quesst14_dtw/dataset.py:26-33 (sox gain -3.0)"),
    ("featurizer.layer", None, "downstream/docs/superb.md:285-323 (every layer on dev, the best tested)"),
    ("heads", [], "downstream/quesst14_dtw (no training)"),
]

# `*_superb` tasks not yet on s3prl's recipe, and why; each must not claim `recipe: s3prl`
PENDING: dict[str, str] = {}


def _resolve(config: dict, key: str):
    value = config
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        if part.startswith("["):
            value = value[int(part[1:-1])]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _faithful_names() -> list[str]:
    return [n for n in list_tasks() if re.fullmatch(r"[a-z]+_superb(_fold\d)?", n)]


def test_every_superb_task_has_facts_or_says_why_not():
    names = _faithful_names()
    assert sorted(names) == sorted([*FACTS, *PENDING])
    for name in names:
        task = load_task(name)
        assert (task.recipe == "s3prl") == (name in FACTS), name


@pytest.mark.parametrize("name", sorted(FACTS))
def test_superb_task_holds_s3prls_values(name):
    config = load_task(name).to_dict()
    wrong = [
        f"{key} = {_resolve(config, key)!r}, s3prl has {value!r} ({source})"
        for key, value, source in FACTS[name]
        if _resolve(config, key) != value
    ]
    assert not wrong, "\n".join(wrong)
    assert len(config["heads"]) == (0 if name == "qbe_superb" else 1)  # s3prl trains one head (QbE none)


def _linear(i: int, o: int) -> int:
    return i * o + o


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # PR: Linear(768, 256) + Linear(256, 74): ctc/expert.py:36-44, 74 outputs (ctc/text.py:52, the 71 lines
        # of ctc/vocab/phoneme.txt, whose last has no newline)
        ("pr_superb", _linear(768, 256) + _linear(256, 74)),
        # ASR: Linear(768, 1024), 2 BiLSTM layers of 1024 per direction, Linear(2048, 32): fairseq's 4 specials and the 28 lines of asr/char.dict, the last without a newline
        (
            "asr_superb",
            _linear(768, 1024)
            + 2 * 4 * (1024 * 1024 + 1024 * 1024 + 2 * 1024)  # layer 1: input 1024, both directions
            + 2 * 4 * (2048 * 1024 + 1024 * 1024 + 2 * 1024)  # layer 2: input 2048
            + _linear(2048, 32),
        ),
        # ASV: connector Linear(768, 512); TDNN Linear(512 * context, out) x5; Linear(3000, 512); Linear(512, 512)
        (
            "asv_superb",
            _linear(768, 512)
            + _linear(512 * 5, 512)
            + 2 * _linear(512 * 3, 512)
            + _linear(512, 512)
            + _linear(512, 1500)
            + _linear(3000, 512)
            + _linear(512, 512),
        ),
        # SD: LSTM(768, 512), Linear(512, 2): diarization/model.py:20-41
        ("sd_superb", 4 * (768 * 512 + 512 * 512 + 2 * 512) + _linear(512, 2)),
    ],
)
def test_superb_heads_have_s3prls_parameter_counts(name, expected):
    """The head a task builds has the parameters of s3prl's module, counted from its source (upstream
    dimension 768, as HuBERT Base)."""
    task = load_task(name)
    spec = task.heads[0]
    outputs = {
        "pr_superb": {"vocab_size": 74},
        "asr_superb": {"vocab_size": 32},
        "sd_superb": {"n_speakers": 2},
    }
    head = HEADS.get(spec.type)(768, **{**outputs.get(name, {}), **spec.args})
    assert sum(p.numel() for p in head.parameters()) == expected


def test_s3prl_xvector_shortens_and_embeds_as_s3prl():
    spec = load_task("asv_superb").heads[0]
    head = HEADS.get(spec.type)(768, **spec.args)
    x, lens = torch.randn(2, 100, 768), torch.tensor([100, 60])
    assert head(x, lens).shape == (2, 512) and (head(x, lens) >= 0).all()  # training: after the last ReLU
    head.eval()
    first = head(x, lens)  # test embedding: ReLU of the first Linear
    assert first.shape == (2, 512) and (first >= 0).all()
    # the second utterance's padding is not seen: alone, it embeds the same
    torch.testing.assert_close(head(x[1:, :60], lens[1:]), first[1:], atol=1e-5, rtol=1e-5)
    assert head(torch.randn(1, 5, 768), torch.tensor([5])).shape == (1, 512)  # shorter than the context


def test_superb_groups_name_every_faithful_and_budgeted_task():
    from evalkit.evaluation.evaluate import resolve_tasks

    faithful = [t.name for t in resolve_tasks("superb")]
    assert sorted(faithful) == sorted(FACTS) and faithful[:2] == ["pr_superb", "ks_superb"]
    budget = [t.name for t in resolve_tasks("superb_budget")]
    assert sorted(budget) == sorted(n.replace("_superb", "_superb_budget") for n in FACTS)
    assert all(t.recipe == "evalkit" for t in resolve_tasks("superb_budget"))
    assert [t.name for t in resolve_tasks("ks,superb")][:2] == ["ks", "pr_superb"]  # groups mix with names
