"""One record: an image's size from its header, the classic's fix-ups, the tf.train.Example around it."""
