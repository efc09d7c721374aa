from .panoptic_captions import PanopticCaptionsDataset

__all__ = ['PanopticCaptionsDataset']
