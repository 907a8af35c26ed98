//! Weight randomisation for control experiments ("train the same dictionary on a model with
//! random weights").

use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

use crate::config::Architecture;
use crate::layers::{Linear, Norm};
use crate::transformer::Transformer;

/// Which weights to re-initialise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Randomization {
    /// Every weight.
    All,
    /// Every weight except the token/position embeddings and the unembedding.
    AllButEmbeddings,
}

impl std::str::FromStr for Randomization {
    type Err = prism_core::PrismError;
    fn from_str(s: &str) -> prism_core::Result<Self> {
        match s {
            "all" => Ok(Randomization::All),
            "all-but-embeddings" | "all_but_embeddings" => Ok(Randomization::AllButEmbeddings),
            _ => Err(prism_core::PrismError::InvalidInput(format!(
                "randomisation `{s}`: expected `all` or `all-but-embeddings`"
            ))),
        }
    }
}

/// Draws each tensor from its own stream so the result depends only on (seed, tensor index).
struct Init {
    seed: u64,
    counter: u64,
    std: f64,
}

impl Init {
    fn normal(&mut self, like: &Tensor<2>, std: f64) -> Tensor<2> {
        self.counter += 1;
        let mut rng =
            StdRng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.counter);
        let dims = like.dims();
        let std = std as f32;
        let data: Vec<f32> = (0..dims[0] * dims[1])
            .map(|_| std * Distribution::<f32>::sample(&StandardNormal, &mut rng))
            .collect();
        Tensor::from_data(TensorData::new(data, dims), &like.device())
    }
    fn linear(&mut self, lin: &mut Linear, std: f64) {
        lin.weight = self.normal(&lin.weight, std);
        if let Some(b) = &mut lin.bias {
            *b = b.zeros_like();
        }
    }
    fn norm(&mut self, n: &mut Norm) {
        n.weight = n.weight.ones_like();
        if let Some(b) = &mut n.bias {
            *b = b.zeros_like();
        }
    }
}

impl Transformer {
    /// A copy with re-initialised weights, as the architecture initialises a fresh model:
    /// matrices ~ N(0, initializer_range²) (GPT-2 scales its output projections by
    /// 1/√(2·n_layers)), biases 0, norm weights 1. Shapes are kept; the same seed gives the same
    /// weights. With [`Randomization::AllButEmbeddings`] the embeddings and unembedding are left
    /// bit-identical; a tied unembedding stays tied to a re-drawn embedding under
    /// [`Randomization::All`].
    pub fn randomized(&self, mode: Randomization, seed: u64) -> Transformer {
        let mut t = self.clone();
        let std = t.config.initializer_range;
        let out_std = if t.config.architecture == Architecture::Gpt2 {
            std / (2.0 * t.config.n_layers as f64).sqrt()
        } else {
            std
        };
        let mut init = Init {
            seed,
            counter: 0,
            std,
        };
        for block in &mut t.blocks {
            for norm in [
                &mut block.ln1,
                &mut block.ln2,
                &mut block.post_attn,
                &mut block.post_mlp,
                &mut block.attn.q_norm,
                &mut block.attn.k_norm,
            ]
            .into_iter()
            .flatten()
            {
                init.norm(norm);
            }
            init.linear(&mut block.attn.qkv, std);
            init.linear(&mut block.attn.out, out_std);
            init.linear(&mut block.mlp.up, std);
            init.linear(&mut block.mlp.down, out_std);
        }
        init.norm(&mut t.ln_final);
        if mode == Randomization::All {
            t.embed = init.normal(&t.embed, init.std);
            if let Some(pe) = &t.pos_embed {
                t.pos_embed = Some(init.normal(pe, init.std));
            }
            t.unembed = if t.config.tied_embeddings {
                t.embed.clone().transpose()
            } else {
                init.normal(&t.unembed, init.std)
            };
        }
        t
    }
}
