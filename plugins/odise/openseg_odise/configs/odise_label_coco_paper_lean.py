# odise_label_coco_paper.py in the lean memory mode for inference: frozen Stable Diffusion and
# CLIP weights in half precision (float16 on a GPU; on a CPU set
# model.test_cfg.lean=bfloat16), the UNet and the VAE decoder stopped and freed after their
# last collected map, Stable Diffusion's text model freed, one CLIP tower for the captioner and
# MaskCLIP, predict() under torch.inference_mode (docs/plugins/odise.md, "Lean memory mode").
_base_ = ['./odise_label_coco_paper.py']

model = dict(test_cfg=dict(lean='float16'))
