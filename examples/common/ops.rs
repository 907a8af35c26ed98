//! Where a forward pass spends its time: each stage of one block, timed alone on the real batch's
//! hidden state (median of several runs), then multiplied by the block count; plus the final
//! norm and the unembedding. burn's ops stage by stage (`CpuPath::BurnOps`), and the fused CPU
//! kernels (`CpuPath::Fused`) timed with the projection that feeds them (they read its output in
//! place). Every stage ends by reading one value back, so a lazy backend finishes it inside the
//! timing.

use std::time::Instant;

use burn::tensor::{Bool, Tensor, activation};
use prism::core::Hooks;
use prism::models::cpu;
use prism::{Model, Result, TokenBatch};

fn finish<const D: usize>(t: &Tensor<D>) {
    let _ = t.clone().flatten::<1>(0, D - 1).narrow(0, 0, 1).into_data();
}

fn time<const D: usize>(reps: usize, mut f: impl FnMut() -> Tensor<D>) -> f64 {
    let mut v = Vec::new();
    for _ in 0..reps + 1 {
        let t0 = Instant::now();
        finish(&f());
        v.push(t0.elapsed().as_secs_f64());
    }
    super::timing::median(v.split_off(1))
}

/// Prints each stage's time in ms per pass and its share of the sum.
pub fn report(model: &Model, batch: &TokenBatch, reps: usize) -> Result<()> {
    let t = &model.transformer;
    let cfg = &t.config;
    let (b, s, d) = (batch.batch, batch.seq, cfg.d_model);
    let (h, kv, dh, m) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_mlp);
    let hook = prism::core::HookPoint::ResidPre(0);
    let x = model
        .forward(batch, &Hooks::new().capture(hook))?
        .take(hook)?
        .into_rank3()?;
    let x = x.reshape([b * s, d]);
    let blk = &t.blocks[0];
    let n = cfg.n_layers as f64;
    // (stage, seconds per pass, on burn's path, on the fused path)
    let mut rows: Vec<(String, f64, bool, bool)> = Vec::new();
    let mut add = |name: &str, secs: f64, times: f64| {
        let fused_only = name.contains("fused");
        let burn_only = [
            "rotary",
            "GQA",
            "scores",
            "softmax",
            "pattern·v",
            "SiLU(gate)",
        ]
        .iter()
        .any(|k| name.starts_with(k))
            || name == "qkv projection"
            || name == "gate|up projection";
        rows.push((name.to_string(), secs * times, !fused_only, !burn_only));
    };

    add(
        "norm (×2 per block)",
        time(reps, || blk.ln1.forward(x.clone())),
        2.0 * n,
    );
    let normed = blk.ln1.forward(x.clone());
    add(
        "qkv projection",
        time(reps, || blk.attn.qkv.forward(normed.clone())),
        n,
    );
    let qkv = blk.attn.qkv.forward(normed.clone());
    let heads = |t: Tensor<2>, n: usize| t.reshape([b, s, n, dh]).swap_dims(1, 2);
    let q = heads(qkv.clone().narrow(1, 0, h * dh), h);
    let k = heads(qkv.clone().narrow(1, h * dh, kv * dh), kv);
    let v = heads(qkv.narrow(1, (h + kv) * dh, kv * dh), kv);
    // The model's rotary tables (full-width ones if it has none, as a cost estimate).
    let (dims, theta) = match cfg.positions {
        prism::models::Positions::Rotary { dims, theta } => (dims, theta),
        _ => (dh, 10000.0),
    };
    let (cos, sin) = prism::models::rotary_tables(s, dims, theta, &t.device);
    add(
        "rotary (q and k)",
        time(reps, || {
            prism::models::apply_rotary(q.clone(), &cos, &sin)
                + prism::models::apply_rotary(k.clone(), &cos, &sin).narrow(1, 0, 1)
        }),
        n,
    );
    let rotary = cpu::Rotary::new(s, dims, theta);
    let shape = cpu::AttentionShape {
        batch: b,
        seq: s,
        heads: h,
        kv_heads: kv,
        d_head: dh,
    };
    add(
        "qkv projection + fused attention",
        time(reps, || {
            let qkv = blk.attn.qkv.forward(normed.clone());
            let z = cpu::on_host(qkv, |qkv| {
                cpu::causal_attention(qkv, &shape, Some(&rotary), &batch.lengths)
            })
            .unwrap();
            cpu::device_tensor(z, [b * s, h * dh], &t.device)
        }),
        n,
    );
    let rep = h / kv;
    let expand = |t: Tensor<4>| {
        t.unsqueeze_dim::<5>(2)
            .expand([b, kv, rep, s, dh])
            .reshape([b, h, s, dh])
    };
    add(
        "GQA expansion (k and v)",
        time(reps, || expand(k.clone()) + expand(v.clone())),
        n,
    );
    let (ke, ve) = (expand(k.clone()), expand(v.clone()));
    add(
        "scores q·kᵀ",
        time(reps, || {
            q.clone()
                .matmul(ke.clone().swap_dims(2, 3))
                .mul_scalar((dh as f64).powf(-0.5))
        }),
        n,
    );
    let scores = q.clone().matmul(ke.clone().swap_dims(2, 3));
    let causal = Tensor::<2, Bool>::tril_mask([s, s], 0, &t.device).reshape([1, 1, s, s]);
    add(
        "causal mask + softmax",
        time(reps, || {
            activation::softmax(
                scores
                    .clone()
                    .mask_fill(causal.clone().expand([b, h, s, s]), f32::NEG_INFINITY),
                3,
            )
        }),
        n,
    );
    let pattern = activation::softmax(scores, 3);
    add(
        "pattern·v, to [rows, h·dh]",
        time(reps, || {
            pattern
                .clone()
                .matmul(ve.clone())
                .swap_dims(1, 2)
                .reshape([b * s, h * dh])
        }),
        n,
    );
    let z = pattern.matmul(ve).swap_dims(1, 2).reshape([b * s, h * dh]);
    add(
        "out projection",
        time(reps, || blk.attn.out.forward(z.clone())),
        n,
    );
    add(
        "residual add (×2 per block)",
        time(reps, || x.clone() + normed.clone()),
        2.0 * n,
    );
    add(
        "gate|up projection",
        time(reps, || blk.mlp.up.forward(normed.clone())),
        n,
    );
    let up = blk.mlp.up.forward(normed.clone());
    add(
        "SiLU(gate)·up",
        time(reps, || {
            activation::silu(up.clone().narrow(1, 0, m)) * up.clone().narrow(1, m, m)
        }),
        n,
    );
    add(
        "gate|up projection + fused SiLU·up",
        time(reps, || {
            let up = blk.mlp.up.forward(normed.clone());
            let post = cpu::on_host(up, |up| cpu::silu_times_up(up, m)).unwrap();
            cpu::device_tensor(post, [b * s, m], &t.device)
        }),
        n,
    );
    let post = activation::silu(up.clone().narrow(1, 0, m)) * up.narrow(1, m, m);
    add(
        "down projection",
        time(reps, || blk.mlp.down.forward(post.clone())),
        n,
    );
    add(
        "final norm",
        time(reps, || t.ln_final.forward(x.clone())),
        1.0,
    );
    add(
        "unembedding",
        time(reps, || normed.clone().matmul(t.unembed.clone())),
        1.0,
    );

    let total = |fused: bool| -> f64 {
        rows.iter()
            .filter(|r| if fused { r.3 } else { r.2 })
            .map(|r| r.1)
            .sum()
    };
    let (burn_total, fused_total) = (total(false), total(true));
    println!(
        "{:<36} {:>14} {:>14}",
        "stage (whole pass, ms)", "burn ops", "fused kernels"
    );
    let cell = |on: bool, secs: f64, of: f64| {
        if on {
            format!("{:>7.1} {:>5.1}%", secs * 1e3, 100.0 * secs / of)
        } else {
            String::new()
        }
    };
    for (name, secs, burn, fused) in &rows {
        println!(
            "{name:<36} {:>14} {:>14}",
            cell(*burn, *secs, burn_total),
            cell(*fused, *secs, fused_total)
        );
    }
    println!(
        "{:<36} {:>7.1} {:>14.1}",
        "sum",
        burn_total * 1e3,
        fused_total * 1e3
    );
    Ok(())
}
