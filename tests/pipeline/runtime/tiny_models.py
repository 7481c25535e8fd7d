"""The smallest model options the runtime tests build checkpoints and generators from."""

LSTM = {"frame_size": 16, "channels": 1, "hidden": 16, "context": 4, "horizon": 3}
GAN = {
    "frame_size": 16,
    "channels": 1,
    "length": 4,
    "dim_content": 6,
    "dim_motion": 4,
    "dim_noise": 4,
    "gen_channels": 8,
    "disc_channels": 8,
    "image_batch": 4,
}
