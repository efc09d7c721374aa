# FSDP for the paper-scale ODISE configs (docs/distributed.md). A config of two lines:
#     _base_ = ['odise::odise_label_coco_paper.py', 'odise::_base_/fsdp.py']
# trained with: bash tools/dist_train.sh my_config.py 8
# Units: the 9 masked-attention decoder layers and the 6 deformable encoder layers; the rest
# of the 29.1 M trainable parameters is the root unit. The 1.37 B frozen parameters (Stable
# Diffusion's UNet and VAE, the CLIP towers) stay whole on every GPU, as under DDP: FSDP saves
# little here (the sharded optimizer state of 29 M parameters); DDP is the default.
_base_ = ['openseg_core::_base_/strategies/fsdp.py']
strategy = dict(wrap_blocks=['Mask2FormerTransformerDecoderLayer',
                             'DeformableDetrTransformerEncoderLayer'])
