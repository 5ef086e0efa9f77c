//! Patch embedding (conv, kernel = stride = patch, no padding) plus learned absolute position embeddings.
use crate::SiglipVisionConfig;
use tch::{nn, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct Embeddings {
    pub patch_weight: Tensor,
    pub patch_bias: Tensor,
    pub position: Tensor,
    patch_size: i64,
    /// The tower's activation dtype (the `VarStore` kind at construction; a parameter made trainable may be f32).
    kind: tch::Kind,
}

impl Embeddings {
    pub fn new(path: nn::Path, cfg: &SiglipVisionConfig, init: ParamInit) -> Self {
        let (d, p) = (cfg.hidden_size, cfg.patch_size);
        let patch = path.sub("patch_embedding");
        let patch_weight = patch.var("weight", &[d, cfg.num_channels, p, p], init.matrix());
        let patch_bias = patch.var("bias", &[d], init.zeros());
        let position =
            path.sub("position_embedding").var("weight", &[cfg.num_patches(), d], init.matrix());
        Self { patch_weight, patch_bias, position, patch_size: p, kind: path.kind() }
    }

    /// `[B, 3, H, W]` -> `[B, (H/p)*(W/p), D]`, patches in row-major order.
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        let xs = pixel_values.to_kind(self.patch_weight.kind()).conv2d(
            &self.patch_weight,
            Some(&self.patch_bias.to_kind(self.patch_weight.kind())),
            [self.patch_size, self.patch_size],
            [0, 0],
            [1, 1],
            1,
        );
        xs.flatten(2, 3).transpose(1, 2).to_kind(self.kind) + self.position.to_kind(self.kind)
    }

    pub fn kind(&self) -> tch::Kind {
        self.kind
    }
}
