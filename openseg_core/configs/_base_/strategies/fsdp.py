# Fully sharded data parallel training (docs/distributed.md): add this file to a config's
# _base_ and name the model's transformer-layer classes, each then an FSDP unit of its own:
#     _base_ = ['odise::odise_label_coco_paper.py', 'openseg_core::_base_/strategies/fsdp.py']
#     strategy = dict(wrap_blocks=['Mask2FormerTransformerDecoderLayer'])
# and launch one process per GPU: bash tools/dist_train.sh CONFIG N.
# FSDP shards the trainable weights, their gradients and the optimizer state; frozen parts
# (FrozenPartsMixin.freeze) stay whole on every process; checkpoints are whole-model files
# written by rank 0 without the frozen pretrained parts, as without FSDP.
strategy = dict(
    type='OpenSegFSDPStrategy',
    wrap_blocks=[],
    model_wrapper=dict(
        type='MMFullyShardedDataParallel',
        # Parameters keep their names and may mix frozen and trainable ones in a unit
        # (LoRA adapters inside frozen layers); the optimizer sees the original parameters.
        use_orig_params=True,
        sharding_strategy='FULL_SHARD',
        # Every process starts from rank 0's weights (DDP broadcasts them too).
        sync_module_states=True))
