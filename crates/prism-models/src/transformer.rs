//! The decoder-only transformer every architecture maps onto, and its hooked forward pass.

use std::collections::BTreeMap;

use burn::tensor::activation;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use prism_core::{Activation, HookPoint, HookRun, Hooks, PrismError, Result};

use crate::config::{
    AttentionSpan, MlpActivation, ModelConfig, Positions, QkNorm, RopeFrequencies,
};
use crate::cpu::{self, AttentionRule, AttentionShape, CpuPath, Rotary};
use crate::layers::{Linear, Norm, activate, apply_rotary, matmul_on, rotary_on_device};

/// What every block of one pass shares: rotary tables, the causal masks, the real lengths.
struct PassShape<'a> {
    rope: Option<Rope>,
    /// The local layers' own rotary tables (Gemma 3).
    local_rope: Option<Rope>,
    /// `[1, 1, seq, seq]`, true where a query may not look (above the diagonal) for burn's ops;
    /// one per sliding window the layers use, keyed by it (`None`: global).
    masks: BTreeMap<Option<usize>, Tensor<4, Bool>>,
    /// Each sequence's unpadded length (the fused attention keeps padding out of real rows).
    lengths: &'a [usize],
}

/// Rotary tables for one pass's length, on the host (fused kernels) and the device (burn ops).
struct Rope {
    host: Rotary,
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    fn new(seq: usize, dims: usize, frequencies: &RopeFrequencies, device: &Device) -> Self {
        let host = Rotary::with_frequencies(seq, dims, frequencies);
        let (cos, sin) = rotary_on_device(&host, device);
        Self { host, cos, sin }
    }
}

impl PassShape<'_> {
    /// Layer `l`'s rotary tables.
    fn rope_of(&self, cfg: &ModelConfig, l: usize) -> Option<&Rope> {
        match cfg.span(l) {
            AttentionSpan::Sliding(_) if self.local_rope.is_some() => self.local_rope.as_ref(),
            _ => self.rope.as_ref(),
        }
    }
}

/// Self-attention with one fused q|k|v projection.
#[derive(Clone, Debug)]
pub struct Attention {
    /// `[d_model, (n_heads + 2·n_kv_heads)·d_head]`, columns ordered q | k | v, head-major.
    pub qkv: Linear,
    /// `[n_heads·d_head, d_model]`.
    pub out: Linear,
    /// RMSNorm of the queries (`[1, d_head]` per head or `[1, n_heads·d_head]` whole, as
    /// [`QkNorm`] says), before the rotary embedding.
    pub q_norm: Option<Norm>,
    /// RMSNorm of the keys, likewise.
    pub k_norm: Option<Norm>,
}

/// The MLP: `down(act(up(x)))`, or gated `down(act(gate(x)) · up(x))`.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// `[d_model, d_mlp]`, or `[d_model, 2·d_mlp]` with columns gate | up when gated.
    pub up: Linear,
    /// `[d_mlp, d_model]`.
    pub down: Linear,
}

/// One transformer block.
#[derive(Clone, Debug)]
pub struct Block {
    /// Norm before attention (none in OLMo 2).
    pub ln1: Option<Norm>,
    /// Norm before the MLP (none in OLMo 2).
    pub ln2: Option<Norm>,
    /// Norm of the attention output (Gemma 2/3, OLMo 2).
    pub post_attn: Option<Norm>,
    /// Norm of the MLP output (Gemma 2/3, OLMo 2).
    pub post_mlp: Option<Norm>,
    /// Attention.
    pub attn: Attention,
    /// MLP.
    pub mlp: Mlp,
}

/// A decoder-only transformer with its weights on a device.
#[derive(Clone, Debug)]
pub struct Transformer {
    /// Shape and components.
    pub config: ModelConfig,
    /// Where the weights live.
    pub device: Device,
    /// Token embedding `[vocab, d_model]`.
    pub embed: Tensor<2>,
    /// Learned positions `[max_positions, d_model]` (GPT-2).
    pub pos_embed: Option<Tensor<2>>,
    /// The blocks.
    pub blocks: Vec<Block>,
    /// Final norm.
    pub ln_final: Norm,
    /// Unembedding `[d_model, vocab]` (the embedding transposed when tied).
    pub unembed: Tensor<2>,
    /// Fused CPU kernels (host GEMMs, attention, SiLU·up) or burn's ops, on the CPU.
    pub cpu_path: CpuPath,
}

/// A batch of token sequences, right-padded to a common length.
///
/// ```
/// use prism_models::TokenBatch;
/// let b = TokenBatch::from_sequences(&[vec![5, 6, 7], vec![8]], 0).unwrap();
/// assert_eq!((b.batch, b.seq), (2, 3));
/// assert_eq!(b.ids, vec![5, 6, 7, 8, 0, 0]);
/// assert_eq!(b.lengths, vec![3, 1]);
/// assert!(TokenBatch::from_sequences(&[], 0).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    /// Row-major `[batch, seq]` ids.
    pub ids: Vec<u32>,
    /// Number of sequences.
    pub batch: usize,
    /// Padded length.
    pub seq: usize,
    /// Real (unpadded) length of each sequence.
    pub lengths: Vec<usize>,
}

impl TokenBatch {
    /// The real (unpadded) positions `(sequence, position)`, sequence by sequence.
    ///
    /// ```
    /// let batch = prism_models::TokenBatch::from_sequences(&[vec![5, 6], vec![7]], 0)?;
    /// assert_eq!(batch.real_positions().collect::<Vec<_>>(), [(0, 0), (0, 1), (1, 0)]);
    /// # Ok::<(), prism_core::PrismError>(())
    /// ```
    pub fn real_positions(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.batch).flat_map(|i| (0..self.lengths[i].min(self.seq)).map(move |t| (i, t)))
    }

    /// Right-pads sequences with `pad` to the longest one.
    pub fn from_sequences(seqs: &[Vec<u32>], pad: u32) -> Result<Self> {
        let seq = seqs.iter().map(Vec::len).max().unwrap_or(0);
        if seqs.is_empty() || seq == 0 {
            return Err(PrismError::InvalidInput(
                "a batch needs at least one non-empty sequence".into(),
            ));
        }
        let mut ids = Vec::with_capacity(seqs.len() * seq);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(pad, seq - s.len()));
        }
        Ok(Self {
            ids,
            batch: seqs.len(),
            seq,
            lengths: seqs.iter().map(Vec::len).collect(),
        })
    }

    /// Consecutive groups of `per_batch` windows as right-padded batches (the last group may
    /// be smaller).
    ///
    /// ```
    /// use prism_models::TokenBatch;
    /// let windows = vec![vec![1, 2], vec![3, 4], vec![5, 6]];
    /// let sizes: Vec<usize> = TokenBatch::batches(&windows, 2, 0).map(|b| b.unwrap().batch).collect();
    /// assert_eq!(sizes, vec![2, 1]);
    /// ```
    pub fn batches(
        windows: &[Vec<u32>],
        per_batch: usize,
        pad: u32,
    ) -> impl Iterator<Item = Result<TokenBatch>> + '_ {
        windows
            .chunks(per_batch.max(1))
            .map(move |group| TokenBatch::from_sequences(group, pad))
    }

    /// The ids as an `Int` tensor `[batch, seq]`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<2, Int> {
        let ids: Vec<i64> = self.ids.iter().map(|&v| v as i64).collect();
        Tensor::from_data(TensorData::new(ids, [self.batch, self.seq]), device)
    }
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct ForwardOutput {
    /// `[batch, seq, vocab]`, absent when the pass stopped early.
    pub logits: Option<Tensor<3>>,
    /// The captured activations.
    pub captures: BTreeMap<HookPoint, Activation>,
}

impl ForwardOutput {
    /// Removes and returns one captured activation.
    pub fn take(&mut self, hook: HookPoint) -> Result<Activation> {
        self.captures.remove(&hook).ok_or_else(|| PrismError::Hook {
            hook: hook.to_string(),
            message: "was not captured (add it with Hooks::capture)".into(),
        })
    }

    /// The logits, or an error if the pass stopped before computing them.
    pub fn logits(&self) -> Result<Tensor<3>> {
        self.logits
            .clone()
            .ok_or_else(|| PrismError::InvalidInput("this forward pass computed no logits".into()))
    }
}

impl Transformer {
    /// Runs the model on `batch`, applying and capturing `hooks`; returns logits and captures.
    pub fn forward(&self, batch: &TokenBatch, hooks: &Hooks) -> Result<ForwardOutput> {
        self.run(batch, hooks, false)
    }

    /// Runs only as far as the deepest hooked layer and returns the captures (no logits).
    /// This is what activation harvesting wants: layers past the last hook are skipped.
    pub fn capture_only(&self, batch: &TokenBatch, hooks: &Hooks) -> Result<ForwardOutput> {
        self.run(batch, hooks, true)
    }

    /// Resumes a forward pass at the input of block `layer`: `resid_pre` is the value that
    /// entered `blocks.{layer}.hook_resid_pre` in a pass over the same `batch` (captured there),
    /// and blocks `layer..` and the unembedding run from it under `hooks`. A pass that shares its
    /// first `layer` blocks with another — loss recovered's spliced and zeroed runs, patching at
    /// later layers — pays only for the rest. Hooks before `layer` cannot fire and are refused.
    ///
    /// ```
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/llama_gqa");
    /// # let model = prism_models::Model::load(&dir, &prism_core::device("cpu").unwrap()).unwrap();
    /// use prism_core::{HookPoint, Hooks};
    /// let batch = prism_models::TokenBatch::from_sequences(&[vec![1, 2, 3]], 0)?;
    /// let hook = HookPoint::ResidPre(1);
    /// let mut clean = model.forward(&batch, &Hooks::new().capture(hook))?;
    /// let resid = clean.take(hook)?.into_rank3()?;
    /// let resumed = model.transformer.forward_from(&batch, 1, resid, &Hooks::new())?;
    /// assert_eq!(resumed.logits()?.to_data(), clean.logits()?.to_data());
    /// # Ok::<(), prism_core::PrismError>(())
    /// ```
    pub fn forward_from(
        &self,
        batch: &TokenBatch,
        layer: usize,
        resid_pre: Tensor<3>,
        hooks: &Hooks,
    ) -> Result<ForwardOutput> {
        self.resume(batch, layer, resid_pre, hooks, false)
    }

    /// [`forward_from`](Self::forward_from) as far as the deepest hook, without the unembedding
    /// (as [`capture_only`](Self::capture_only)): captures only. Hooking `ln_final.hook_normalized`
    /// runs every block and the final norm, the states [`score_runs`](Self::score_runs) reads.
    pub fn capture_only_from(
        &self,
        batch: &TokenBatch,
        layer: usize,
        resid_pre: Tensor<3>,
        hooks: &Hooks,
    ) -> Result<ForwardOutput> {
        self.resume(batch, layer, resid_pre, hooks, true)
    }

    fn resume(
        &self,
        batch: &TokenBatch,
        layer: usize,
        resid_pre: Tensor<3>,
        hooks: &Hooks,
        stop_early: bool,
    ) -> Result<ForwardOutput> {
        let cfg = &self.config;
        if layer >= cfg.n_layers {
            return Err(PrismError::InvalidInput(format!(
                "cannot resume at block {layer} of a {}-block model",
                cfg.n_layers
            )));
        }
        if let Some(early) = hooks
            .hook_points()
            .into_iter()
            .find(|h| h.layer().is_none_or(|l| l < layer) && *h != HookPoint::LnFinal)
        {
            return Err(PrismError::Hook {
                hook: early.to_string(),
                message: format!("comes before block {layer}, where this pass resumes"),
            });
        }
        let dims = resid_pre.dims();
        if dims != [batch.batch, batch.seq, cfg.d_model] {
            return Err(PrismError::Shape(format!(
                "resuming needs the residual stream [{}, {}, {}], got {dims:?}",
                batch.batch, batch.seq, cfg.d_model
            )));
        }
        self.check(batch, hooks)?;
        let run = hooks.start_padded(&batch.lengths);
        self.blocks_and_unembed(batch, resid_pre, layer, hooks, stop_early, run)
    }

    /// Validates the hooks and the batch against the model.
    pub(crate) fn check(&self, batch: &TokenBatch, hooks: &Hooks) -> Result<()> {
        let cfg = &self.config;
        let shape = cfg.shape();
        for h in hooks.hook_points() {
            h.validate(&shape)?;
        }
        if batch.seq > cfg.max_positions {
            return Err(PrismError::InvalidInput(format!(
                "sequence of {} tokens is longer than the model's {} positions",
                batch.seq, cfg.max_positions
            )));
        }
        if let Some(bad) = batch.ids.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(PrismError::InvalidInput(format!(
                "token id {bad} is outside the vocabulary of {}",
                cfg.vocab_size
            )));
        }
        Ok(())
    }

    fn run(&self, batch: &TokenBatch, hooks: &Hooks, stop_early: bool) -> Result<ForwardOutput> {
        self.check(batch, hooks)?;
        let (b, s, d) = (batch.batch, batch.seq, self.config.d_model);
        let mut run = hooks.start_padded(&batch.lengths);
        let ids = batch.to_tensor(&self.device).reshape([b * s]);
        let mut tok = self.embed.clone().select(0, ids).reshape([b, s, d]);
        if let Some(scale) = self.config.design.embed_scale {
            // As `transformers`: the scale rounded to f32, then one product.
            tok = tok.mul_scalar(scale as f32);
        }
        let mut x = run.visit3(HookPoint::Embed, tok)?;
        if let Some(pe) = &self.pos_embed {
            let pos = pe
                .clone()
                .narrow(0, 0, s)
                .reshape([1, s, d])
                .expand([b, s, d]);
            x = x + run.visit3(HookPoint::PosEmbed, pos)?;
        }
        self.blocks_and_unembed(batch, x, 0, hooks, stop_early, run)
    }

    /// Blocks `first..` (up to the deepest hook when `stop_early`), the final norm and the
    /// unembedding, from the residual stream `x` entering block `first`.
    fn blocks_and_unembed(
        &self,
        batch: &TokenBatch,
        mut x: Tensor<3>,
        first: usize,
        hooks: &Hooks,
        stop_early: bool,
        mut run: HookRun<'_>,
    ) -> Result<ForwardOutput> {
        let cfg = &self.config;
        let (b, s, d) = (batch.batch, batch.seq, cfg.d_model);
        let (rope, local_rope) = match &cfg.positions {
            &Positions::Rotary {
                dims,
                ref frequencies,
            } if dims > 0 => (
                Some(Rope::new(s, dims, frequencies, &self.device)),
                cfg.design
                    .local_rope
                    .as_ref()
                    .map(|f| Rope::new(s, dims, f, &self.device)),
            ),
            _ => (None, None),
        };
        let mut masks = BTreeMap::new();
        for l in first..cfg.n_layers {
            let window = match cfg.span(l) {
                AttentionSpan::Global => None,
                AttentionSpan::Sliding(w) => Some(w),
            };
            masks.entry(window).or_insert_with(|| {
                let causal = Tensor::<2, Bool>::tril_mask([s, s], 0, &self.device);
                let mask = match window {
                    // Also hidden: keys at or before `i − w`.
                    Some(w) if w < s => {
                        let before =
                            Tensor::<2, Bool>::triu_mask([s, s], 1 - w as i64, &self.device);
                        causal.bool_or(before)
                    }
                    _ => causal,
                };
                mask.reshape([1, 1, s, s])
            });
        }
        let pass = PassShape {
            rope,
            local_rope,
            masks,
            lengths: &batch.lengths,
        };
        let last = if stop_early && !hooks.touches(HookPoint::LnFinal) {
            match hooks.last_layer() {
                Some(l) => l + 1,
                None => 0,
            }
        } else {
            cfg.n_layers
        };
        for (l, block) in self.blocks.iter().enumerate().take(last).skip(first) {
            x = self.block_forward(l, block, x, &pass, &mut run)?;
        }
        let logits = if last == cfg.n_layers {
            let normed = self
                .ln_final
                .forward(x.reshape([b * s, d]))
                .reshape([b, s, d]);
            let normed = run.visit3(HookPoint::LnFinal, normed)?;
            if stop_early {
                None
            } else {
                let v = cfg.vocab_size;
                let mut logits =
                    matmul_on(normed.reshape([b * s, d]), &self.unembed, self.cpu_path)?;
                if let Some(cap) = cfg.design.final_softcap {
                    logits = softcap(logits, cap);
                }
                Some(logits.reshape([b, s, v]))
            }
        } else {
            None
        };
        Ok(ForwardOutput {
            logits,
            captures: run.into_captures(),
        })
    }

    fn block_forward(
        &self,
        l: usize,
        block: &Block,
        x: Tensor<3>,
        pass: &PassShape<'_>,
        run: &mut HookRun<'_>,
    ) -> Result<Tensor<3>> {
        let [b, s, d] = x.dims();
        let resid_pre = run.visit3(HookPoint::ResidPre(l), x)?;
        let flat = resid_pre.clone().reshape([b * s, d]);
        let attn_out =
            self.attention(l, block, normed(&block.ln1, flat.clone()), b, s, pass, run)?;
        let attn_out = run.visit3(
            HookPoint::AttnOut(l),
            post_normed(&block.post_attn, attn_out),
        )?;
        let resid_post = if self.config.parallel_residual {
            let mlp_in = self.mlp_input(l, block, flat, b, s, run)?;
            let mlp_out = self.mlp(l, block, mlp_in, b, s, run)?;
            let mlp_out =
                run.visit3(HookPoint::MlpOut(l), post_normed(&block.post_mlp, mlp_out))?;
            mlp_out + attn_out + resid_pre
        } else {
            let mid = run.visit3(HookPoint::ResidMid(l), resid_pre + attn_out)?;
            let mlp_in = self.mlp_input(l, block, mid.clone().reshape([b * s, d]), b, s, run)?;
            let mlp_out = self.mlp(l, block, mlp_in, b, s, run)?;
            let mlp_out =
                run.visit3(HookPoint::MlpOut(l), post_normed(&block.post_mlp, mlp_out))?;
            mid + mlp_out
        };
        run.visit3(HookPoint::ResidPost(l), resid_post)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        l: usize,
        block: &Block,
        x: Tensor<2>,
        b: usize,
        s: usize,
        pass: &PassShape<'_>,
        run: &mut HookRun<'_>,
    ) -> Result<Tensor<3>> {
        let cfg = &self.config;
        let (h, kv, dh) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
        let qkv = block.attn.qkv.forward_on(x, self.cpu_path)?;
        let qkv = self.normalize_qk(&block.attn, qkv);
        let z = if self.cpu_path.applies(&qkv) && !run.touches(HookPoint::AttnPattern(l)) {
            let shape = AttentionShape {
                batch: b,
                seq: s,
                heads: h,
                kv_heads: kv,
                d_head: dh,
            };
            let rotary = pass.rope_of(cfg, l).map(|r| &r.host);
            let rule = self.attention_rule(l);
            let z = cpu::on_host(qkv, |qkv| {
                cpu::causal_attention(qkv, &shape, rotary, &rule, pass.lengths)
            })?;
            cpu::device_tensor(z, [b, s, h, dh], &self.device)
        } else {
            self.attention_with_burn_ops(l, qkv, b, s, pass, run)?
        };
        let z = run.visit4(HookPoint::AttnZ(l), z)?;
        let out = block
            .attn
            .out
            .forward_on(z.reshape([b * s, h * dh]), self.cpu_path)?;
        Ok(out.reshape([b, s, cfg.d_model]))
    }

    /// Layer `l`'s scale, soft-cap and window.
    fn attention_rule(&self, l: usize) -> AttentionRule {
        let cfg = &self.config;
        AttentionRule {
            scale: cfg.attn_scale() as f32,
            softcap: cfg.design.attn_softcap.map(|c| c as f32),
            window: match cfg.span(l) {
                AttentionSpan::Global => None,
                AttentionSpan::Sliding(w) => Some(w),
            },
        }
    }

    /// The q/k norms on the fused projection's output (unchanged without them).
    fn normalize_qk(&self, attn: &Attention, qkv: Tensor<2>) -> Tensor<2> {
        let (Some(qn), Some(kn)) = (&attn.q_norm, &attn.k_norm) else {
            return qkv;
        };
        let cfg = &self.config;
        let (h, kv, dh) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
        let rows = qkv.dims()[0];
        let q = qkv.clone().narrow(1, 0, h * dh);
        let k = qkv.clone().narrow(1, h * dh, kv * dh);
        let v = qkv.narrow(1, (h + kv) * dh, kv * dh);
        let (q, k) = match cfg.design.qk_norm {
            QkNorm::PerHead => (
                qn.forward(q.reshape([rows * h, dh]))
                    .reshape([rows, h * dh]),
                kn.forward(k.reshape([rows * kv, dh]))
                    .reshape([rows, kv * dh]),
            ),
            QkNorm::Whole | QkNorm::None => (qn.forward(q), kn.forward(k)),
        };
        Tensor::cat(vec![q, k, v], 1)
    }

    /// Attention with burn's ops: `[batch, heads, seq, seq]` scores, the causal mask, the
    /// softmax (`hook_pattern`) and the weighted values; returns `z` as `[batch, seq, heads,
    /// d_head]` before its hook.
    fn attention_with_burn_ops(
        &self,
        l: usize,
        qkv: Tensor<2>,
        b: usize,
        s: usize,
        pass: &PassShape<'_>,
        run: &mut HookRun<'_>,
    ) -> Result<Tensor<4>> {
        let cfg = &self.config;
        let (h, kv, dh) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
        let heads = |t: Tensor<2>, n: usize| t.reshape([b, s, n, dh]).swap_dims(1, 2);
        let mut q = heads(qkv.clone().narrow(1, 0, h * dh), h);
        let mut k = heads(qkv.clone().narrow(1, h * dh, kv * dh), kv);
        let mut v = heads(qkv.narrow(1, (h + kv) * dh, kv * dh), kv);
        if let Some(r) = pass.rope_of(cfg, l) {
            q = apply_rotary(q, &r.cos, &r.sin);
            k = apply_rotary(k, &r.cos, &r.sin);
        }
        if kv < h {
            let rep = h / kv;
            let expand = |t: Tensor<4>| {
                t.unsqueeze_dim::<5>(2)
                    .expand([b, kv, rep, s, dh])
                    .reshape([b, h, s, dh])
            };
            k = expand(k);
            v = expand(v);
        }
        let rule = self.attention_rule(l);
        let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(rule.scale);
        if let Some(cap) = rule.softcap {
            scores = softcap(scores, cap as f64);
        }
        let mask = &pass.masks[&rule.window];
        let scores = scores.mask_fill(mask.clone().expand([b, h, s, s]), f32::NEG_INFINITY);
        let pattern = activation::softmax(scores, 3);
        let pattern = run.visit4(HookPoint::AttnPattern(l), pattern)?;
        Ok(pattern.matmul(v).swap_dims(1, 2))
    }

    /// The MLP's input from the stream it reads (`[b·s, d]`): through the pre-MLP norm, with
    /// `ln2.hook_normalized` between its standardisation and its learned scale, and
    /// `mlp.hook_in` after it.
    fn mlp_input(
        &self,
        l: usize,
        block: &Block,
        x: Tensor<2>,
        b: usize,
        s: usize,
        run: &mut HookRun<'_>,
    ) -> Result<Tensor<2>> {
        let d = self.config.d_model;
        let ln2 = block.ln2.as_ref();
        let z = match ln2 {
            Some(norm) => norm.standardize(x),
            None => x,
        };
        let z = run
            .visit3(HookPoint::Ln2Normalized(l), z.reshape([b, s, d]))?
            .reshape([b * s, d]);
        let mlp_in = match ln2 {
            Some(norm) => norm.scale(z),
            None => z,
        };
        Ok(run
            .visit3(HookPoint::MlpIn(l), mlp_in.reshape([b, s, d]))?
            .reshape([b * s, d]))
    }

    fn mlp(
        &self,
        l: usize,
        block: &Block,
        x: Tensor<2>,
        b: usize,
        s: usize,
        run: &mut HookRun<'_>,
    ) -> Result<Tensor<3>> {
        let cfg = &self.config;
        let m = cfg.d_mlp;
        let up = block.mlp.up.forward_on(x, self.cpu_path)?;
        let gated_kernel = match cfg.activation {
            MlpActivation::Silu if cfg.gated_mlp => {
                Some(cpu::silu_times_up as fn(&[f32], usize) -> Vec<f32>)
            }
            MlpActivation::GeluTanh if cfg.gated_mlp => Some(cpu::gelu_tanh_times_up as _),
            _ => None,
        };
        let post = if let Some(kernel) = gated_kernel
            && self.cpu_path.applies(&up)
        {
            let post = cpu::on_host(up, |up| kernel(up, m))?;
            cpu::device_tensor(post, [b * s, m], &self.device)
        } else if !cfg.gated_mlp
            && cfg.activation == MlpActivation::Gelu
            && self.cpu_path.applies(&up)
        {
            let post = cpu::on_host(up, cpu::gelu)?;
            cpu::device_tensor(post, [b * s, m], &self.device)
        } else if cfg.gated_mlp {
            activate(cfg.activation, up.clone().narrow(1, 0, m)) * up.narrow(1, m, m)
        } else {
            activate(cfg.activation, up)
        };
        let post = run.visit3(HookPoint::MlpPost(l), post.reshape([b, s, m]))?;
        let out = block
            .mlp
            .down
            .forward_on(post.reshape([b * s, m]), self.cpu_path)?;
        Ok(out.reshape([b, s, cfg.d_model]))
    }
}

/// `c·tanh(x/c)`: bounds `x` to `(−c, c)` smoothly (Gemma 2's attention and logit soft-caps).
fn softcap<const D: usize>(x: Tensor<D>, cap: f64) -> Tensor<D> {
    x.div_scalar(cap as f32).tanh().mul_scalar(cap as f32)
}

/// `x` through a pre-norm, or unchanged where the block has none.
fn normed(norm: &Option<Norm>, x: Tensor<2>) -> Tensor<2> {
    match norm {
        Some(n) => n.forward(x),
        None => x,
    }
}

/// A sublayer's `[batch, seq, d]` output through its post-norm, or unchanged.
fn post_normed(norm: &Option<Norm>, x: Tensor<3>) -> Tensor<3> {
    match norm {
        Some(n) => {
            let [b, s, d] = x.dims();
            n.forward(x.reshape([b * s, d])).reshape([b, s, d])
        }
        None => x,
    }
}
