//! The standard recurrent training workloads B1–B4 of `docs/PERFORMANCE.md` (and DESIGN.md),
//! measured as PyTorch's reference script measures them: one step = forward, mean
//! cross-entropy over all tokens, backward, clip grad norm 5, optimizer step.
//!
//! ```text
//! cargo bench --bench workloads                      # all four, default threads
//! cargo bench --bench workloads -- --threads 1       # single-threaded GEMM
//! cargo bench --bench workloads -- --only B1,B3 --steps 50
//! cargo bench --bench workloads -- --only B1 --phases # also ms/step of forward, backward, the rest
//! cargo bench --bench workloads -- --generate 2000   # batch-1 sampling speed (B1 model)
//! cargo bench --bench workloads -- --soak 20000      # B1 with truncated BPTT, RSS every 1000 steps
//! cargo bench --bench workloads -- --gemm-peak       # GFLOP/s of a 1024^3 GEMM on this machine
//! cargo bench --bench workloads -- --fma-peak        # GFLOP/s of bare FMAs: the kernels' ceiling
//! ```
//! Output lines match `../shared/bench/pytorch_reference.py`: name, tokens/s, ms/step, loss; then
//! the GEMM rate and `min_ms`, the fastest step (steadier than the mean on a shared machine).

use std::time::Instant;

/// Large per-step buffers (B2's 16 MB logits) come and go every step; glibc returns them to the
/// OS and page-faults them back in (18% of a B2 profile). mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rand::{rngs::StdRng, Rng, SeedableRng};
use retrograd::core::{no_grad, Element, Error, Result, Tensor};
use retrograd::nn::{Embedding, Gru, Linear, Lstm, LstmState, Module, Rnn, RnnConfig};
use retrograd::optim::{clip_grad_norm, Adam, AdamConfig, NormType, Optimizer, Sgd, SgdConfig};

#[derive(Clone, Copy)]
enum Cell {
    Rnn,
    Lstm,
    Gru,
}

struct Workload {
    name: &'static str,
    cell: Cell,
    vocab: usize,
    embed: usize,
    hidden: usize,
    layers: usize,
    bidir: bool,
    batch: usize,
    seq: usize,
    adam: bool,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "B1-char-lstm",
        cell: Cell::Lstm,
        vocab: 65,
        embed: 64,
        hidden: 256,
        layers: 1,
        bidir: false,
        batch: 32,
        seq: 64,
        adam: true,
    },
    Workload {
        name: "B2-word-lstm",
        cell: Cell::Lstm,
        vocab: 10000,
        embed: 200,
        hidden: 200,
        layers: 2,
        bidir: false,
        batch: 20,
        seq: 20,
        adam: false,
    },
    Workload {
        name: "B3-tiny-rnn",
        cell: Cell::Rnn,
        vocab: 65,
        embed: 32,
        hidden: 100,
        layers: 1,
        bidir: false,
        batch: 1,
        seq: 25,
        adam: false,
    },
    Workload {
        name: "B4-bigru",
        cell: Cell::Gru,
        vocab: 65,
        embed: 64,
        hidden: 128,
        layers: 2,
        bidir: true,
        batch: 16,
        seq: 128,
        adam: true,
    },
];

enum Recurrent {
    Rnn(Rnn),
    Lstm(Lstm),
    Gru(Gru),
}

/// Embedding → recurrent stack (batch-first) → Linear, as in the PyTorch reference.
struct Lm {
    emb: Embedding,
    rnn: Recurrent,
    out: Linear,
}

impl Module for Lm {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &retrograd::Parameter)) {
        self.emb
            .visit_params(&retrograd::nn::join_name(prefix, "emb"), f);
        let p = retrograd::nn::join_name(prefix, "rnn");
        match &self.rnn {
            Recurrent::Rnn(m) => m.visit_params(&p, f),
            Recurrent::Lstm(m) => m.visit_params(&p, f),
            Recurrent::Gru(m) => m.visit_params(&p, f),
        }
        self.out
            .visit_params(&retrograd::nn::join_name(prefix, "out"), f);
    }
}

impl Lm {
    fn new(w: &Workload, rng: &mut impl Rng) -> Result<Lm> {
        let cfg = RnnConfig::new(w.embed, w.hidden)
            .num_layers(w.layers)
            .bidirectional(w.bidir)
            .batch_first(true);
        let rnn = match w.cell {
            Cell::Rnn => Recurrent::Rnn(Rnn::new(cfg, rng)?),
            Cell::Lstm => Recurrent::Lstm(Lstm::new(cfg, rng)?),
            Cell::Gru => Recurrent::Gru(Gru::new(cfg, rng)?),
        };
        let dirs = if w.bidir { 2 } else { 1 };
        Ok(Lm {
            emb: Embedding::new(w.vocab, w.embed, rng)?,
            rnn,
            out: Linear::new(w.hidden * dirs, w.vocab, true, rng)?,
        })
    }

    fn logits(&self, ids: &[usize], batch: usize, seq: usize) -> Result<Tensor> {
        let x = self.emb.forward(ids, &[batch, seq])?;
        let h = match &self.rnn {
            Recurrent::Rnn(m) => m.forward(&x, None)?.0,
            Recurrent::Lstm(m) => m.forward(&x, None)?.0,
            Recurrent::Gru(m) => m.forward(&x, None)?.0,
        };
        let d = h.shape()[2];
        self.out.forward(&h.reshape(&[batch * seq, d])?)
    }
}

/// Runs `steps` timed training steps of `w` (after three warm-up steps) and prints its line;
/// with `phases`, also the milliseconds per step of forward (logits and loss), backward, and
/// the rest (graph drop, clipping, optimizer step).
fn run(w: &Workload, steps: usize, phases: bool) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(0);
    let model = Lm::new(w, &mut rng)?;
    let params = model.parameters();
    let mut opt: Box<dyn Optimizer<f32>> = if w.adam {
        Box::new(Adam::new(
            model.named_parameters(),
            AdamConfig::default().lr(2e-3),
        )?)
    } else {
        let lr = if w.vocab > 1000 { 1.0 } else { 0.1 };
        Box::new(Sgd::new(model.named_parameters(), SgdConfig::new(lr))?)
    };
    let n = w.batch * w.seq;
    let x: Vec<usize> = (0..n).map(|_| rng.random_range(0..w.vocab)).collect();
    let y: Vec<i64> = (0..n)
        .map(|_| rng.random_range(0..w.vocab) as i64)
        .collect();
    let mut spent = [0.0f64; 3];
    let mut step = |spent: &mut [f64; 3]| -> Result<f32> {
        let t0 = Instant::now();
        let loss = model.logits(&x, w.batch, w.seq)?.cross_entropy(&y)?;
        let t1 = Instant::now();
        let mut grads = loss.backward()?;
        let t2 = Instant::now();
        let value = loss.item()?;
        // free the graph first, so the optimizer updates the weights in place (no copy-on-write)
        drop(loss);
        clip_grad_norm(&mut grads, &params, 5.0, NormType::L2, false)?;
        opt.step(&grads)?;
        for (s, (a, b)) in spent
            .iter_mut()
            .zip([(t0, t1), (t1, t2), (t2, Instant::now())])
        {
            *s += (b - a).as_secs_f64();
        }
        Ok(value)
    };
    for _ in 0..3 {
        step(&mut spent)?;
    }
    spent = [0.0; 3];
    let t = Instant::now();
    let mut loss = 0.0;
    // the fastest step: steadier than the mean on a shared machine, where a neighbour's burst
    // slows some steps by 20% or more
    let mut fastest = f64::INFINITY;
    for _ in 0..steps {
        let s = Instant::now();
        loss = step(&mut spent)?;
        fastest = fastest.min(s.elapsed().as_secs_f64());
    }
    let dt = t.elapsed().as_secs_f64() / steps as f64;
    if phases {
        let ms = spent.map(|s| s / steps as f64 * 1e3);
        println!(
            "{}\tforward_ms={:.2}\tbackward_ms={:.2}\trest_ms={:.2}",
            w.name, ms[0], ms[1], ms[2]
        );
    }
    println!(
        "{}\ttokens/s={:.0}\tms/step={:.3}\tloss={:.4}\tgemm_gflops={:.1}\tmin_ms={:.3}",
        w.name,
        n as f64 / dt,
        dt * 1e3,
        loss,
        gemm_flops(w) / dt / 1e9,
        fastest * 1e3
    );
    Ok(())
}

/// GEMM floating-point operations of one training step (forward products times three, for
/// the forward pass and the two backward products), the basis of the achieved-GFLOP/s column.
/// The work actually done: when there are more tokens than vocabulary entries, the first
/// layer projects the embedding table, not every token (see `Prepared::project_sequence`).
fn gemm_flops(w: &Workload) -> f64 {
    let dirs = if w.bidir { 2 } else { 1 };
    let gates = match w.cell {
        Cell::Rnn => 1,
        Cell::Lstm => 4,
        Cell::Gru => 3,
    };
    let tokens = (w.batch * w.seq) as f64;
    let mut fwd = 0.0;
    for layer in 0..w.layers {
        let (input, rows) = if layer == 0 {
            (w.embed, tokens.min(w.vocab as f64))
        } else {
            (dirs * w.hidden, tokens)
        };
        let per_row = (gates * w.hidden) as f64 * 2.0;
        fwd += dirs as f64 * per_row * (rows * input as f64 + tokens * w.hidden as f64);
    }
    fwd += 2.0 * tokens * (dirs * w.hidden * w.vocab) as f64;
    3.0 * fwd
}

/// GFLOP/s of one large f32 GEMM (1024^3) through retrograd's matmul (split over the pool
/// like every large product): the machine's practical GEMM peak at the current thread setting.
fn gemm_peak() -> Result<()> {
    let n = 1024;
    let a = Tensor::<f32>::ones(&[n, n]);
    let b = Tensor::<f32>::ones(&[n, n]);
    a.matmul(&b)?;
    let reps = 10;
    let t = Instant::now();
    for _ in 0..reps {
        a.matmul(&b)?;
    }
    let dt = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "gemm-peak-1024\tgflops={:.1}",
        2.0 * (n * n * n) as f64 / dt / 1e9
    );
    Ok(())
}

/// Batch-1 sampling from the B1 model (embedding → LSTM step → linear → softmax → draw).
fn generate(tokens: usize) -> Result<()> {
    let w = &WORKLOADS[0];
    let mut rng = StdRng::seed_from_u64(0);
    let model = Lm::new(w, &mut rng)?;
    let Recurrent::Lstm(lstm) = &model.rnn else {
        unreachable!("B1 is an LSTM")
    };
    let _g = no_grad();
    let mut state: Option<LstmState> = None;
    let mut tok = 0usize;
    let t = Instant::now();
    for _ in 0..tokens {
        let x = model.emb.forward(&[tok], &[1, 1])?;
        let (h, s) = lstm.forward(&x, state.as_ref())?;
        state = Some(s);
        let p = model
            .out
            .forward(&h.reshape(&[1, w.hidden])?)?
            .softmax(1)?
            .to_vec();
        tok = sample(&p, &mut rng);
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "generate-B1\ttokens/s={:.0}\tus/token={:.1}",
        tokens as f64 / dt,
        dt / tokens as f64 * 1e6
    );
    Ok(())
}

fn sample<E: Element>(p: &[E], rng: &mut impl Rng) -> usize {
    let r = rng.random::<f64>();
    let mut acc = 0.0;
    for (i, v) in p.iter().enumerate() {
        acc += v.as_f64();
        if r < acc {
            return i;
        }
    }
    p.len() - 1
}

/// A memory figure of this process from /proc/self/status (`VmRSS`: resident now, `VmHWM`:
/// peak resident) in MiB, or 0 when unavailable (not Linux).
fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// B1 with stateful truncated BPTT over a long run: the state is carried (detached) between
/// windows; prints resident memory every 1000 steps (it must stay flat).
fn soak(steps: usize) -> Result<()> {
    let w = &WORKLOADS[0];
    let mut rng = StdRng::seed_from_u64(0);
    let model = Lm::new(w, &mut rng)?;
    let Recurrent::Lstm(lstm) = &model.rnn else {
        unreachable!("B1 is an LSTM")
    };
    let params = model.parameters();
    let mut opt = Adam::new(model.named_parameters(), AdamConfig::default().lr(2e-3))?;
    let n = w.batch * w.seq;
    let mut state: Option<LstmState> = None;
    let t = Instant::now();
    for s in 0..steps {
        let x: Vec<usize> = (0..n).map(|_| rng.random_range(0..w.vocab)).collect();
        let y: Vec<i64> = (0..n)
            .map(|_| rng.random_range(0..w.vocab) as i64)
            .collect();
        let e = model.emb.forward(&x, &[w.batch, w.seq])?;
        let (h, st) = lstm.forward(&e, state.as_ref())?;
        let loss = model
            .out
            .forward(&h.reshape(&[n, w.hidden])?)?
            .cross_entropy(&y)?;
        let mut grads = loss.backward()?;
        let value = loss.item()?;
        drop((loss, h));
        clip_grad_norm(&mut grads, &params, 5.0, NormType::L2, false)?;
        opt.step(&grads)?;
        state = Some(st.detach());
        if s % 1000 == 0 || s + 1 == steps {
            println!(
                "soak step {s}\trss_mib={:.1}\tloss={value:.4}\telapsed_s={:.0}",
                status_mib("VmRSS:"),
                t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// GFLOP/s of f32 fused multiply-adds with no memory traffic, on each of `threads` threads at
/// once: the ceiling every GEMM kernel works under. Twelve independent chains, each
/// `x = x * a + b`, two flops per lane: first of eight lanes (96 accumulators, the register
/// tile of an AVX2 kernel; with `target-cpu=native` on an FMA machine they compile to
/// `vfmadd` on 256-bit registers), then, where the CPU has AVX-512, of sixteen lanes through
/// `pulp` (the width of the packed-panel tiles, whose clock may differ).
fn fma_peak(threads: usize) {
    let rate = |wide: bool| {
        let rates: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(move || {
                        if wide {
                            fma_rate_512(FMA_REPS).unwrap_or(0.0)
                        } else {
                            fma_rate_256()
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0.0))
                .collect()
        });
        rates.iter().sum::<f64>()
    };
    let per = |r: f64| r / threads.max(1) as f64;
    let narrow = rate(false);
    println!(
        "fma-peak\tgflops={narrow:.1}\tper_thread={:.1}",
        per(narrow)
    );
    if fma_rate_512(1).is_some() {
        let wide = rate(true);
        println!(
            "fma-peak-512\tgflops={wide:.1}\tper_thread={:.1}",
            per(wide)
        );
    }
}

const FMA_REPS: usize = 50_000_000;

fn fma_rate_256() -> f64 {
    let (a, b) = (
        std::hint::black_box(1.000_000_1f32),
        std::hint::black_box(0.999_999_9f32),
    );
    let mut acc = [[0f32; 8]; 12];
    let t = Instant::now();
    for _ in 0..FMA_REPS {
        for row in acc.iter_mut() {
            for v in row.iter_mut() {
                *v = v.mul_add(a, b);
            }
        }
    }
    let dt = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    (FMA_REPS * 12 * 8 * 2) as f64 / dt / 1e9
}

/// `None` where the CPU (or the target) has no AVX-512.
fn fma_rate_512(reps: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let simd = pulp::x86::V4::try_new()?;
        let t = Instant::now();
        let (lanes, sum) = pulp::Simd::vectorize(simd, Fma16(reps));
        let dt = t.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        Some((reps * 12 * lanes * 2) as f64 / dt / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = reps;
        None
    }
}

/// `reps` rounds of twelve independent `x = x * a + b` chains of `S::F32_LANES` lanes; returns
/// the lanes and a sum that keeps the chains alive.
struct Fma16(usize);

impl pulp::WithSimd for Fma16 {
    type Output = (usize, f32);
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) -> (usize, f32) {
        let a = s.splat_f32s(std::hint::black_box(1.000_000_1));
        let b = s.splat_f32s(std::hint::black_box(0.999_999_9));
        let mut acc = [s.splat_f32s(0.0); 12];
        for _ in 0..self.0 {
            for v in acc.iter_mut() {
                *v = s.mul_add_f32s(*v, a, b);
            }
        }
        let sum = acc.iter().map(|&v| s.reduce_sum_f32s(v)).sum();
        (S::F32_LANES, sum)
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(t) = value("--threads") {
        let n = t
            .parse()
            .map_err(|_| Error::invalid("--threads", format!("not a count: {t}")))?;
        retrograd::core::set_num_threads(n)?;
    }
    println!(
        "retrograd {} threads={}",
        env!("CARGO_PKG_VERSION"),
        retrograd::core::num_threads()
    );
    if let Some(n) = value("--generate") {
        return generate(n.parse().unwrap_or(2000));
    }
    if args.iter().any(|a| a == "--gemm-peak") {
        return gemm_peak();
    }
    if args.iter().any(|a| a == "--fma-peak") {
        fma_peak(retrograd::core::num_threads());
        return Ok(());
    }
    if let Some(n) = value("--soak") {
        return soak(n.parse().unwrap_or(20000));
    }
    let steps: usize = value("--steps").and_then(|s| s.parse().ok()).unwrap_or(30);
    let only = value("--only").unwrap_or_default();
    let phases = args.iter().any(|a| a == "--phases");
    for w in &WORKLOADS {
        if !only.is_empty() && !only.split(',').any(|o| w.name.starts_with(o)) {
            continue;
        }
        run(w, if w.batch > 1 { steps } else { steps * 20 }, phases)?;
    }
    println!("peak_rss_mib={:.1}", status_mib("VmHWM:"));
    Ok(())
}
