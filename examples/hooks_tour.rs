//! # Reading and editing a model's activations
//!
//! **Method.** We load SmolLM2-135M-Instruct from its GGUF file and run it on one sentence.
//! At block 15 of 30 (the middle of the residual stream) we
//! 1. read `blocks.15.hook_mlp_out` and `blocks.15.hook_resid_post` and report their norms;
//! 2. zero-ablate the MLP output and measure the change in mean next-token loss;
//! 3. mean-ablate each attention head of the block in turn through `blocks.15.attn.hook_z`
//!    and rank the heads by how much loss their removal costs.
//!
//! ```text
//! cargo run --release --example hooks_tour -- [MODEL.gguf|HF_DIR] [TEXT]
//! ```

use prism::core::{Edit, HookPoint, Hooks, HostTensor, Intervention};
use prism::{Model, Result};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let model_path = args
        .next()
        .unwrap_or_else(|| "assets/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let text = args.next().unwrap_or_else(|| {
        "The capital of France is Paris, and the capital of Germany is Berlin.".into()
    });
    let device = prism::core::device("cpu")?;
    let model = Model::load(model_path.as_ref(), &device)?;
    let layer = model.config().n_layers / 2;
    let batch = model.batch(&[&text])?;

    // 1. Read activations.
    let hooks = Hooks::new()
        .capture(HookPoint::MlpOut(layer))
        .capture(HookPoint::ResidPost(layer));
    let mut out = model.forward(&batch, &hooks)?;
    for hook in [HookPoint::MlpOut(layer), HookPoint::ResidPost(layer)] {
        let act = HostTensor::from_burn(out.take(hook)?.into_rank3()?)?;
        let d = act.shape[2];
        let mean_norm = act
            .data
            .chunks(d)
            .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
            .sum::<f32>()
            / (act.len() / d) as f32;
        println!(
            "{hook:<28} shape {:?}, mean L2 norm per token {mean_norm:.2}",
            act.shape
        );
    }

    // 2. Zero-ablate the MLP.
    let clean = model.loss(&batch, &Hooks::new())?;
    let zero = Hooks::new().intervene(Intervention::new(HookPoint::MlpOut(layer), Edit::Zero));
    let ablated = model.loss(&batch, &zero)?;
    println!(
        "loss clean {clean:.4}; with blocks.{layer}.hook_mlp_out zeroed {ablated:.4} (Δ {:+.4})",
        ablated - clean
    );

    // 3. Mean-ablate each head.
    let mut by_head = Vec::new();
    for head in 0..model.config().n_heads {
        let iv = Intervention::new(HookPoint::AttnZ(layer), Edit::MeanOverBatch).at_heads([head]);
        by_head.push((
            head,
            model.loss(&batch, &Hooks::new().intervene(iv))? - clean,
        ));
    }
    by_head.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("heads of block {layer} by loss increase when mean-ablated:");
    for (head, delta) in by_head {
        println!("  head {head}: {delta:+.4}");
    }
    Ok(())
}
