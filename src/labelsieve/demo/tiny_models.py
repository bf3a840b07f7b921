"""Random-weight open-vocabulary detectors, saved like a user's local snapshot (model + processor in one folder).

No weights can be downloaded here, so tests build KB-sized models from configs and load them back through the same
`from_pretrained(<dir>)` path a user's local `model` directory takes. `full_size=True` builds the released architecture
instead (compute cost does not depend on the weights), for `bench/`. Builders for VLMs live in `tiny_vlms.py`. The demo builds them too when no real weights can be had.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["person", "dog", "cat", "car", "traffic", "light", "red", "a", "photo", "of", "the", "glasses", "bus"]


def build_grounding_dino(directory: Path, *, full_size: bool = False, seed: int = 0) -> Path:
    """Tiny: a 2-stage Swin, a 1-layer BERT (decoder_layers must be >= 2 in 5.24). Full size: grounding-dino-tiny's shape
    (Swin-T, BERT-base, 900 queries, 800 px processor). Both with a word-level vocab."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *WORDS]
    tokenizer = BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)})
    if full_size:
        config = GroundingDinoConfig(backbone_config=SwinConfig(window_size=7, out_features=["stage2", "stage3", "stage4"]))
    else:
        config = GroundingDinoConfig(
            backbone_config=SwinConfig(embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=4, image_size=64,
                                       out_features=["stage1", "stage2"]),
            text_config=BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                                   intermediate_size=16, max_position_embeddings=64),
            d_model=32, num_queries=12, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
            encoder_attention_heads=2, decoder_attention_heads=2, num_feature_levels=2, encoder_n_points=1,
            decoder_n_points=1, max_text_len=32,
        )
    GroundingDinoForObjectDetection(config).eval().save_pretrained(directory)
    image_processor = GroundingDinoImageProcessor(
        size={"shortest_edge": 800, "longest_edge": 1333} if full_size else {"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def build_owlv2(directory: Path, *, full_size: bool = False, seed: int = 0) -> Path:
    """Tiny: 1-layer towers at 64 px. Full size: owlv2-base-patch16's shape at 960 px. Both with a character-level vocab."""
    import torch
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    # Character-level BPE (one token per letter). "!" first, as in CLIP's vocab: OWLv2 treats a query whose first token
    # id is 0 as padding.
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["!", ".", *letters, *(c + "</w>" for c in letters), "ab", "<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[("a", "b")], model_max_length=16, pad_token="!")
    ids = {"bos_token_id": len(vocab) - 2, "eos_token_id": len(vocab) - 1, "pad_token_id": 0}
    if full_size:
        config = Owlv2Config(text_config={"max_position_embeddings": 16, **ids},
                             vision_config={"image_size": 960, "patch_size": 16})
    else:
        config = Owlv2Config(
            text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
                         "num_attention_heads": 1, "max_position_embeddings": 16, **ids},
            vision_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
                           "image_size": 64, "patch_size": 16},
            projection_dim=16,
        )
    Owlv2ForObjectDetection(config).eval().save_pretrained(directory)
    side = config.vision_config.image_size
    image_processor = Owlv2ImageProcessor(size={"height": side, "width": side})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory
