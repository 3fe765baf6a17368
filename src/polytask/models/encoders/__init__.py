"""The sentence encoder behind text features (:mod:`.text`).

The input blocks of the body (tabular, cnn, gru, fine-tuned text) are in
:mod:`polytask.models.input_blocks`.
"""
