"""gradcam_edu: the support package of the gradcam-edu course."""
__version__ = "0.1.0"
