"""Stage 1, 3D human pose reconstruction.

Subject side (``subject_reconstruction``, the python backend; numpy, OpenCV, MediaPipe, no
torch): :mod:`.photo` checks and letterboxes the photo, :mod:`.landmarks` maps MediaPipe's
landmarks to SMPL joints, :mod:`.fit` fits shape, pose and camera, :mod:`.subject` runs
MediaPipe and ties them together. Frame side (``body_geometry``, ONNX): :mod:`.frame`.
"""
