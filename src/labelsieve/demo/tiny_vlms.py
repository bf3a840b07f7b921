"""Tiny random-weight VLMs saved to a directory, so tests load them through the same path a user's local checkpoint takes.

Weights are random (nothing can be downloaded here); what the tests check is plumbing: prompt building, the yes/no logits, caching.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

__all__ = ["BUILDERS", "CHAT_TEMPLATE", "build_idefics3", "build_llava", "build_paligemma", "tiny_tokenizer"]

_CORPUS = [
    "Is this person wearing glasses on their face? Yes. No. yes no Yes No",
    "User: Assistant: USER: ASSISTANT: answer en Answer with yes or no.",
    "Is there a dog in the image? The person is wearing a hat.",
]
_SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "<fake_token_around_image>", "<global-img>",
            "<end_of_utterance>", "<row_1_col_1>"]

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def tiny_tokenizer(**kwargs: object) -> Any:
    """A byte-level BPE trained on a few sentences; 'yes'/'no' and their variants end up as single tokens."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=_SPECIAL,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", **kwargs)


def _text(vocab: int, **extra: object) -> dict[str, object]:
    return dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512, **extra)


def build_idefics3(path: Path, image_size: int = 64) -> Path:
    """SmolVLM (Idefics3) layout: encoder tile `image_size`, patch 16, pixel shuffle 2."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    tok = tiny_tokenizer(extra_special_tokens={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                                               "global_image_token": "<global-img>",
                                               "end_of_utterance_token": "<end_of_utterance>"})
    patch, scale = 16, 2
    config = Idefics3Config(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                           "image_size": image_size, "patch_size": patch},
        text_config=dict(model_type="llama", **_text(len(tok))),
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=scale,
    )
    Idefics3ForConditionalGeneration(config).save_pretrained(path)
    processor = Idefics3Processor(
        Idefics3ImageProcessor(size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size},
                               do_image_splitting=False),
        tok, image_seq_len=(image_size // patch) ** 2 // scale**2, chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)
    return path


def build_llava(path: Path, image_size: int = 32) -> Path:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = tiny_tokenizer(extra_special_tokens={"image_token": "<image>"})
    patch = 8
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 4, "image_size": image_size, "patch_size": patch, "projection_dim": 32},
        text_config=dict(model_type="llama", **_text(len(tok))),
        image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
    )
    LlavaForConditionalGeneration(config).save_pretrained(path)
    processor = LlavaProcessor(
        CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}),
        tok, patch_size=patch, vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)
    return path


def build_paligemma(path: Path, image_size: int = 32) -> Path:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor, SiglipImageProcessor

    tok = tiny_tokenizer(extra_special_tokens={"image_token": "<image>"})
    patch = 8
    seq = (image_size // patch) ** 2
    config = PaliGemmaConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 4, "image_size": image_size, "patch_size": patch, "num_image_tokens": seq},
        text_config=dict(model_type="gemma", head_dim=8, **_text(len(tok))),
        image_token_id=tok.convert_tokens_to_ids("<image>"), projection_dim=32,
    )
    PaliGemmaForConditionalGeneration(config).save_pretrained(path)
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    image_processor.image_seq_length = seq
    PaliGemmaProcessor(image_processor, tok).save_pretrained(path)
    return path


BUILDERS = {"idefics3": build_idefics3, "llava": build_llava, "paligemma": build_paligemma}
