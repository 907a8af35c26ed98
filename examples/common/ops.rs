//! Where a forward pass spends its time: each stage of one block, timed alone on the real batch's
//! hidden state (median of several runs) and multiplied by the block count, plus the final norm
//! and the unembedding; once with burn's ops (`CpuPath::BurnOps`) and once with the fused CPU
//! path (`CpuPath::Fused`: host GEMMs, fused attention, fused SiLU·up), whose kernels read their
//! input in place, so each is timed together with the projection that produces it. Every stage
//! ends by reading one value back, so a lazy backend finishes it inside the timing.

use std::time::Instant;

use burn::tensor::{Bool, Tensor, activation};
use prism::core::Hooks;
use prism::models::{CpuPath, Positions, cpu};
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

/// One row of the table: seconds per pass on each path (`None`: not a stage of that path).
struct Stage {
    name: &'static str,
    burn: Option<f64>,
    fused: Option<f64>,
}

/// Prints each stage's time in ms per pass and its share of each path's sum.
pub fn report(model: &Model, batch: &TokenBatch, reps: usize) -> Result<()> {
    let t = &model.transformer;
    let cfg = &t.config;
    let (b, s, d) = (batch.batch, batch.seq, cfg.d_model);
    let (h, kv, dh, m) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_mlp);
    let hook = prism::core::HookPoint::ResidPre(0);
    let x = model
        .forward(batch, &Hooks::new().capture(hook))?
        .take(hook)?
        .into_rank3()?
        .reshape([b * s, d]);
    let blk = &t.blocks[0];
    let n = cfg.n_layers as f64;
    let fused = CpuPath::Fused;
    let normed = blk.ln1.as_ref().map_or(x.clone(), |n| n.forward(x.clone()));
    let mut stages = Vec::new();
    let mut both = |name, burn: f64, fused: f64, times: f64| {
        stages.push(Stage {
            name,
            burn: Some(burn * times),
            fused: Some(fused * times),
        })
    };

    let norm = time(reps, || {
        blk.ln1.as_ref().map_or(x.clone(), |n| n.forward(x.clone()))
    });
    both("norm (×2 per block)", norm, norm, 2.0 * n);
    let add = time(reps, || x.clone() + normed.clone());
    both("residual add (×2 per block)", add, add, 2.0 * n);
    both(
        "out projection",
        time(reps, || blk.attn.out.forward(normed.clone())),
        time(reps, || {
            blk.attn.out.forward_on(normed.clone(), fused).unwrap()
        }),
        n,
    );
    let up = blk.mlp.up.forward(normed.clone());
    let post = activation::silu(up.clone().narrow(1, 0, m)) * up.clone().narrow(1, m, m);
    both(
        "down projection",
        time(reps, || blk.mlp.down.forward(post.clone())),
        time(reps, || {
            blk.mlp.down.forward_on(post.clone(), fused).unwrap()
        }),
        n,
    );
    both(
        "final norm + unembedding",
        time(reps, || {
            t.ln_final.forward(x.clone()).matmul(t.unembed.clone())
        }),
        time(reps, || {
            prism::models::matmul_on(t.ln_final.forward(x.clone()), &t.unembed, fused).unwrap()
        }),
        1.0,
    );

    // Attention: burn's stages one by one, the fused path as one.
    let (dims, theta) = match &cfg.positions {
        Positions::Rotary { dims, frequencies } => (*dims, frequencies.theta),
        _ => (dh, 10000.0),
    };
    let mut burn_only = |name, secs: f64| {
        stages.push(Stage {
            name,
            burn: Some(secs * n),
            fused: None,
        })
    };
    burn_only(
        "qkv projection",
        time(reps, || blk.attn.qkv.forward(normed.clone())),
    );
    let qkv = blk.attn.qkv.forward(normed.clone());
    let heads = |t: Tensor<2>, n: usize| t.reshape([b, s, n, dh]).swap_dims(1, 2);
    let q = heads(qkv.clone().narrow(1, 0, h * dh), h);
    let k = heads(qkv.clone().narrow(1, h * dh, kv * dh), kv);
    let v = heads(qkv.narrow(1, (h + kv) * dh, kv * dh), kv);
    let rotary = cpu::Rotary::new(s, dims, theta);
    let (cos, sin) = prism::models::rotary_on_device(&rotary, &t.device);
    burn_only(
        "rotary (q and k)",
        time(reps, || {
            prism::models::apply_rotary(q.clone(), &cos, &sin)
                + prism::models::apply_rotary(k.clone(), &cos, &sin).narrow(1, 0, 1)
        }),
    );
    let rep = h / kv;
    let expand = |t: Tensor<4>| {
        t.unsqueeze_dim::<5>(2)
            .expand([b, kv, rep, s, dh])
            .reshape([b, h, s, dh])
    };
    burn_only(
        "GQA expansion (k and v)",
        time(reps, || expand(k.clone()) + expand(v.clone())),
    );
    let (ke, ve) = (expand(k.clone()), expand(v.clone()));
    burn_only(
        "scores q·kᵀ",
        time(reps, || {
            q.clone()
                .matmul(ke.clone().swap_dims(2, 3))
                .mul_scalar((dh as f64).powf(-0.5))
        }),
    );
    let scores = q.clone().matmul(ke.clone().swap_dims(2, 3));
    let causal = Tensor::<2, Bool>::tril_mask([s, s], 0, &t.device).reshape([1, 1, s, s]);
    burn_only(
        "causal mask + softmax",
        time(reps, || {
            let masked = scores
                .clone()
                .mask_fill(causal.clone().expand([b, h, s, s]), f32::NEG_INFINITY);
            activation::softmax(masked, 3)
        }),
    );
    let pattern = activation::softmax(scores, 3);
    burn_only(
        "pattern·v, to [rows, h·dh]",
        time(reps, || {
            pattern
                .clone()
                .matmul(ve.clone())
                .swap_dims(1, 2)
                .reshape([b * s, h * dh])
        }),
    );
    burn_only(
        "gate|up projection",
        time(reps, || blk.mlp.up.forward(normed.clone())),
    );
    burn_only(
        "SiLU(gate)·up",
        time(reps, || {
            activation::silu(up.clone().narrow(1, 0, m)) * up.clone().narrow(1, m, m)
        }),
    );

    let shape = cpu::AttentionShape {
        batch: b,
        seq: s,
        heads: h,
        kv_heads: kv,
        d_head: dh,
    };
    let mut fused_only = |name, secs: f64| {
        stages.push(Stage {
            name,
            burn: None,
            fused: Some(secs * n),
        })
    };
    fused_only(
        "qkv projection + fused attention",
        time(reps, || {
            let qkv = blk.attn.qkv.forward_on(normed.clone(), fused).unwrap();
            let z = cpu::on_host(qkv, |qkv| {
                cpu::causal_attention(
                    qkv,
                    &shape,
                    Some(&rotary),
                    &cpu::AttentionRule::plain(dh),
                    &batch.lengths,
                )
            })
            .unwrap();
            cpu::device_tensor(z, [b * s, h * dh], &t.device)
        }),
    );
    fused_only(
        "gate|up projection + fused SiLU·up",
        time(reps, || {
            let up = blk.mlp.up.forward_on(normed.clone(), fused).unwrap();
            let post = cpu::on_host(up, |up| cpu::silu_times_up(up, m)).unwrap();
            cpu::device_tensor(post, [b * s, m], &t.device)
        }),
    );

    let total = |pick: fn(&Stage) -> Option<f64>| stages.iter().filter_map(pick).sum::<f64>();
    let (burn_total, fused_total) = (total(|s| s.burn), total(|s| s.fused));
    let cell = |secs: Option<f64>, of: f64| match secs {
        Some(secs) => format!("{:>7.1} {:>5.1}%", secs * 1e3, 100.0 * secs / of),
        None => String::new(),
    };
    println!(
        "{:<36} {:>14} {:>14}",
        "stage (whole pass, ms)", "burn ops", "fused path"
    );
    for st in &stages {
        println!(
            "{:<36} {:>14} {:>14}",
            st.name,
            cell(st.burn, burn_total),
            cell(st.fused, fused_total)
        );
    }
    println!(
        "{:<36} {:>7.1} {:>14.1}",
        "sum",
        burn_total * 1e3,
        fused_total * 1e3
    );
    // GPT-NeoX models use the fused (erf) GELU in place of SiLU·up: timed on the same
    // [rows, d_mlp] values, per call.
    let gate = up.clone().narrow(1, 0, m);
    let burn_secs = time(reps, || activation::gelu(gate.clone()));
    let fused_secs = time(reps, || {
        let post = cpu::on_host(gate.clone(), cpu::gelu).unwrap();
        cpu::device_tensor(post, [b * s, m], &t.device)
    });
    println!(
        "GELU (erf) on [{}, {m}]: burn {:.2} ms, fused {:.2} ms ({:.1}×)",
        b * s,
        burn_secs * 1e3,
        fused_secs * 1e3,
        burn_secs / fused_secs
    );
    Ok(())
}
