from .open_clip_text_encoder import OpenCLIPTextEncoder, TextEncoderOutput

__all__ = ['OpenCLIPTextEncoder', 'TextEncoderOutput']
