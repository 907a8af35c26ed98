//! `prism forward` and `prism hooks`.

use std::collections::HashMap;
use std::path::PathBuf;

use prism_core::{Hooks, HostTensor, Result, write_safetensors};
use prism_models::{Model, TokenBatch, next_token_loss};
use serde_json::json;

/// Options shared by commands that load a model.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// An HF model directory, a .gguf file, or a hub model `ORG/NAME[@REVISION]` (downloaded
    /// into the shared Hugging Face cache; a local path of that name wins).
    #[arg(long)]
    pub model: PathBuf,
    /// cpu (burn flex), or wgpu / ndarray / cuda in a build with that cargo feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Model> {
        let device = prism_core::device(&self.device)?;
        let t0 = std::time::Instant::now();
        let model = Model::load(&crate::hub::model(&self.model)?, &device)?;
        let c = model.config();
        eprintln!(
            "loaded {} ({:?}, {} layers, d_model {}, vocab {}) on {} in {:.1}s",
            self.model.display(),
            c.architecture,
            c.n_layers,
            c.d_model,
            c.vocab_size,
            self.device,
            t0.elapsed().as_secs_f32()
        );
        Ok(model)
    }
}

/// `prism forward` arguments.
#[derive(clap::Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The text to run.
    #[arg(long)]
    text: String,
    /// Write the logits (`logits`, f32 `[seq, vocab]`) to this safetensors file.
    #[arg(long)]
    dump_logits: Option<PathBuf>,
}

/// `prism hooks` arguments.
#[derive(clap::Args)]
pub struct HooksArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Sequence length to show shapes for.
    #[arg(long, default_value_t = 128)]
    seq: usize,
}

pub fn forward(args: &ForwardArgs) -> Result<()> {
    let model = args.model.load()?;
    let ids = model.encode(&args.text)?;
    let batch = TokenBatch::from_sequences(std::slice::from_ref(&ids), model.pad_id())?;
    let t0 = std::time::Instant::now();
    let logits = model.forward(&batch, &Hooks::new())?.logits()?;
    let elapsed = t0.elapsed().as_secs_f64();
    let vocab = model.config().vocab_size;
    let loss = if ids.len() >= 2 {
        Some(next_token_loss(logits.clone(), &batch)?)
    } else {
        None
    };
    let flat = HostTensor::from_burn(logits.reshape([ids.len(), vocab]))?;
    let last = &flat.data[(ids.len() - 1) * vocab..];
    let mut order: Vec<usize> = (0..vocab).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    let top: Vec<_> = order[..5]
        .iter()
        .map(|&i| json!({"id": i, "token": model.tokenizer.token_str(i as u32), "logit": last[i]}))
        .collect();
    if let Some(path) = &args.dump_logits {
        let meta = HashMap::from([("text".to_string(), args.text.clone())]);
        write_safetensors(
            path,
            &[("logits".into(), flat.clone())],
            prism_core::FloatDtype::F32,
            Some(meta),
        )?;
        eprintln!(
            "logits [{}, {vocab}] written to {}",
            ids.len(),
            path.display()
        );
    }
    let tokens: Vec<String> = ids.iter().map(|&i| model.tokenizer.token_str(i)).collect();
    if args.model.json {
        let out = json!({
            "model": args.model.model.display().to_string(),
            "device": args.model.device,
            "tokens": ids,
            "token_strs": tokens,
            "loss": loss,
            "top_next_tokens": top,
            "seconds": elapsed,
        });
        println!("{out}");
    } else {
        println!("tokens ({}): {:?}", ids.len(), tokens);
        match loss {
            Some(l) => println!("mean next-token loss: {l:.4}"),
            None => println!("mean next-token loss: n/a (one token)"),
        }
        println!("most likely next tokens:");
        for t in &top {
            println!(
                "  {:>8.3}  {:?}",
                t["logit"].as_f64().unwrap_or(0.0),
                t["token"].as_str().unwrap_or("")
            );
        }
        eprintln!("forward pass: {:.1} ms", elapsed * 1e3);
    }
    Ok(())
}

pub fn hooks(args: &HooksArgs) -> Result<()> {
    let model = args.model.load()?;
    let points = model.hook_points(args.seq);
    if args.model.json {
        let list: Vec<_> = points
            .iter()
            .map(|(h, s)| json!({"name": h.to_string(), "shape": s}))
            .collect();
        println!(
            "{}",
            json!({"model": args.model.model.display().to_string(), "seq": args.seq, "hooks": list})
        );
    } else {
        println!(
            "{} hook points (shapes for batch 1, seq {}):",
            points.len(),
            args.seq
        );
        for (h, s) in points {
            println!("  {:<36} {:?}", h.to_string(), s);
        }
    }
    Ok(())
}
