# FSDP for the paper-scale PixelLLM configs (docs/distributed.md). A config of two lines:
#     _base_ = ['pixelllm::pixelllm_paper_trace.py', 'pixelllm::_base_/fsdp.py']
# trained with: bash tools/dist_train.sh my_config.py 8
# Units: EVA02-L's 24 blocks (trained), Flan-T5-XL's 48 blocks (their LoRA adapters: the
# frozen weights stay out of FSDP) and the two-way attention blocks of the prompt feature
# extractor (and of the mask adapter, refseg). FSDP shards the 374 M trainable parameters
# with their gradients and AdamW state; the 3.4 B frozen ones (T5-XL, SAM-H) stay whole on
# every GPU, as under DDP.
_base_ = ['openseg_core::_base_/strategies/fsdp.py']
strategy = dict(wrap_blocks=['EvaBlock', 'T5Block', 'SamTwoWayAttentionBlock'])
